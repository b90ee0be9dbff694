"""Source lines of code per package: lines holding code, not comments or blanks."""
import tokenize
from pathlib import Path

NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
            tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}


def sloc_of_file(path):
    """Count the lines of one Python file that hold a code token."""
    lines = set()
    with open(path, "rb") as handle:
        try:
            for token in tokenize.tokenize(handle.readline):
                if token.type not in NOT_CODE:
                    lines.update(range(token.start[0], token.end[0] + 1))
        except (tokenize.TokenError, SyntaxError):
            return 0
    return len(lines)


def python_files(path):
    """The .py files of a package directory, or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def sloc_by_package(root, packages):
    """{package: source lines} for each package path under root."""
    return {package: sum(sloc_of_file(f) for f in python_files(Path(root) / package))
            for package in packages}
