"""The Jenkinsfile passes npm-groovy-lint@15 (installed by `make setup`) with zero errors."""
import json
import subprocess

from tests.helpers import REPO

GROOVY_LINT = REPO / ".tools" / "npm" / "node_modules" / ".bin" / "npm-groovy-lint"


def test_jenkinsfile_has_no_lint_errors():
    assert GROOVY_LINT.exists(), "npm-groovy-lint is missing: run `make setup`"
    proc = subprocess.run([str(GROOVY_LINT), "--output", "json", "--noserver", "Jenkinsfile"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    summary = json.loads(proc.stdout)["summary"]
    assert summary["totalFilesLinted"] == 1
    assert summary["totalFoundErrorNumber"] == 0, proc.stdout


def test_jenkinsfile_publishes_every_report():
    text = (REPO / "Jenkinsfile").read_text()
    for needle in ("stage('Setup')", "sh 'make setup'", "stage('Gates')", "python -m ci",
                   "junit testResults: 'reports/junit.xml'", "recordCoverage",
                   "parser: 'COBERTURA', pattern: 'reports/coverage.xml'",
                   "pyLint(pattern: 'reports/pylint.txt')", "reports/htmlcov/**"):
        assert needle in text, needle
