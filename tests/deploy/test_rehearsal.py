"""`make demo`'s rehearsal on a small project: gates -> launch -> deploy -> a page, twice.

Real parts throughout: sshd daemons on loopback, moto's server, supervisord, and
headless Chromium opening one of the printed URLs. `down` must leave no process.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from fabship.deploy.localhosts import read_pid
from tests.helpers import REPO, git

URL = re.compile(r"slot (\d) \((i-[0-9a-f]+) on h\d\): (http://127\.0\.0\.1:\d+/)")
GATES = """\
[ci]
packages = services/hello/hello
tests = checks
gates = unit

[tool:pytest]
testpaths = checks
"""


def rehearsal(project, action):
    """python -m deploy.rehearsal ACTION in the project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SSH_"))}
    return subprocess.run([sys.executable, "-m", "fabship.deploy.rehearsal", action, "--project",
                           str(project)], capture_output=True, text=True, timeout=600,
                          env={**env, "PYTHONPATH": str(REPO)}, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory, wheel_cache):
    """The repo's fabfile, hello service and rehearsal environment, with one quick gate."""
    root = tmp_path_factory.mktemp("rehearsed")
    shutil.copy(REPO / "fabfile.py", root / "fabfile.py")
    shutil.copytree(REPO / "services" / "hello", root / "services" / "hello",
                    ignore=shutil.ignore_patterns("__pycache__", "tests"))
    shutil.copytree(REPO / "templates" / "hello", root / "templates" / "hello")
    config = yaml.safe_load((REPO / "fabric.yaml").read_text())
    service = config["services"]["hello"]
    service["environments"] = {"rehearsal": service["environments"]["rehearsal"]}
    service["environments"]["rehearsal"]["ec2"]["count"] = 2
    (root / "fabric.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "setup.cfg").write_text(GATES)
    (root / "checks").mkdir()
    (root / "checks" / "test_ok.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    (root / ".gitignore").write_text("reports/\n.fabship/\n.rehearsal/\n")
    (root / ".fabship").symlink_to(wheel_cache)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "rehearse")
    try:
        yield root
    finally:
        rehearsal(root, "down")


def urls(proc):
    """{slot: (instance id, url)} printed by the demo."""
    return {int(s): (i, u) for s, i, u in URL.findall(proc.stdout)}


def page(url):
    """GET url -> (status, text)."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.read().decode()


def test_demo_twice_then_down(project):
    first = rehearsal(project, "demo")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr
    out = first.stdout
    assert "-m ci" in out and "launched slot 1" in out and "launched slot 2" in out
    assert "deployed on 2 host(s)" in out
    shown = urls(first)
    assert sorted(shown) == [1, 2]
    for _, url in shown.values():
        status, text = page(url)
        assert status == 200 and "<title>hello</title>" in text and "<h1>hi</h1>" in text
    assert re.search(r"health\s+lock", out) and out.count("  ok  ") >= 2

    second = rehearsal(project, "demo")
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr
    assert "already up" in second.stdout
    assert "gates already passed for clean commit" in second.stdout
    assert "0 to launch" in second.stdout and "launched slot" not in second.stdout
    assert urls(second) == shown  # the same instances serve

    state = project / ".rehearsal"
    pids = [read_pid(p) for p in [state / "emulator.pid", *state.rglob("sshd.pid"),
                                  *state.rglob("supervisord.pid")]]
    assert len(pids) == 1 + 2 + 2 and all(pids)
    pins = project / ".pins" / "instance_known_hosts"
    assert pins.read_text(encoding="utf-8").strip()  # the emulated instances are pinned
    down = rehearsal(project, "down")
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    assert pins.read_text(encoding="utf-8") == ""  # their pins went with them
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in open(
            f"/proc/{pid}/stat", encoding="utf-8").read().rsplit(")", 1)[1].split()[:1]
    leftover = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True,
                              check=False)
    assert leftover.stdout == "", leftover.stdout
    for _, url in shown.values():
        with pytest.raises(OSError):
            page(url)


def test_a_browser_opens_a_deployed_page(project):
    proc = rehearsal(project, "demo")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    _, url = urls(proc)[1]
    profile = tempfile.mkdtemp(prefix="rehearsal-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"),
                              options=options)
    try:
        driver.get(url)
        assert driver.title == "hello"
        driver.find_element(By.ID, "query").send_keys("rehearsed <ok>")
        driver.find_element(By.CSS_SELECTOR, "#query-form [type=submit]").click()
        answer = WebDriverWait(driver, 10).until(
            expected_conditions.presence_of_element_located((By.ID, "answer")))
        assert answer.text == "post returned: rehearsed <ok>"
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    health = json.loads(page(url.rstrip("/") + "/health")[1])
    assert health["commit"] == git(project, "rev-parse", "HEAD")
