"""Which release this code runs from: `release.json` beside the package, else "dev"."""
import json
from pathlib import Path

RELEASE_FILE = Path(__file__).resolve().parent.parent / "release.json"


def release_info(path=RELEASE_FILE):
    """Return {"release": ..., "commit": ...}; "dev" for both outside a release."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"release": "dev", "commit": "dev"}
    if not isinstance(data, dict):
        return {"release": "dev", "commit": "dev"}
    return {
        "release": str(data.get("release", "dev")),
        "commit": str(data.get("commit", "dev")),
    }
