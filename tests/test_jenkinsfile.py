"""The Jenkinsfile: it lints clean, its stages are in order and guarded, and every `sh` step
runs (made harmless: dry-run flags) on a clone of this commit, with its parameters' defaults."""
import json
import os
import re
import shlex
import subprocess
import textwrap
from typing import NamedTuple

import pytest

from tests.helpers import REPO, git

GROOVY_LINT = REPO / ".tools" / "npm" / "node_modules" / ".bin" / "npm-groovy-lint"
JENKINSFILE = REPO / "Jenkinsfile"
STAGES = ["Setup", "Gates", "Plan", "Launch", "Deploy"]

# ----------------------------------------------------------------- a small Groovy scanner

_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "$": "$", "n": "\n", "t": "\t", "r": "\r",
            "b": "\b", "f": "\f", "\n": ""}
_IDENT = re.compile(r"[A-Za-z_$][\w$]*")


class ShStep(NamedTuple):
    """One `sh` step: the script text as the shell gets it, and whether Groovy interpolates
    it (a double-quoted GString holding `$`, which would put values, secrets too, in the script
    before the shell sees it)."""
    script: str
    interpolated: bool


def _read_literal(text, pos):
    """(value, quote, end) of the Groovy string literal opening at pos."""
    quote = next(q for q in ("'''", '"""', "'", '"') if text.startswith(q, pos))
    out, i = [], pos + len(quote)
    while not text.startswith(quote, i):
        if i >= len(text) or (len(quote) == 1 and text[i] == "\n"):
            raise ValueError(f"unterminated string literal at offset {pos}")
        if text[i] == "\\":
            char = text[i + 1:i + 2]
            if char not in _ESCAPES:
                raise ValueError(f"unsupported escape \\{char} at offset {i}")
            out.append(_ESCAPES[char])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out), quote, i + len(quote)


def _skip_comment(text, pos):
    """The offset after the comment opening at pos, or pos when none opens there."""
    if text.startswith("//", pos):
        end = text.find("\n", pos)
        return len(text) if end < 0 else end
    if text.startswith("/*", pos):
        end = text.find("*/", pos + 2)
        if end < 0:
            raise ValueError(f"unterminated comment at offset {pos}")
        return end + 2
    return pos


def _tokens(text):
    """[(start, end, kind, value)] for each identifier, string literal and other non-blank
    character of text; comments are skipped. kind is 'ident', 'string' (value: (text,
    quote)) or 'char'."""
    tokens, i = [], 0
    while i < len(text):
        after = _skip_comment(text, i)
        if after != i:
            i = after
        elif text[i] in "'\"":
            value, quote, end = _read_literal(text, i)
            tokens.append((i, end, "string", (value, quote)))
            i = end
        elif match := _IDENT.match(text, i):
            tokens.append((i, match.end(), "ident", match.group()))
            i = match.end()
        else:
            if not text[i].isspace():
                tokens.append((i, i + 1, "char", text[i]))
            i += 1
    return tokens


def _step(value, quote):
    return ShStep(value, quote.startswith('"') and "$" in value)


def _sh_call(text, tokens, index):
    """The ShStep of the `sh` at tokens[index]: `sh 'x'`, `sh('x')`, `sh(script: 'x', ...)`
    or `sh script: 'x', ...` (which ends at a line break not after a comma); anything else
    (a variable, no script) is a ValueError."""
    first = tokens[index + 1] if index + 1 < len(tokens) else None
    if first and first[2] == "string":
        return _step(*first[3])
    parens = bool(first and first[3] == "(")
    depth, key, found = 0, None, {}
    previous = tokens[index + 1] if parens else tokens[index]
    for token in tokens[index + (2 if parens else 1):]:
        start, _, kind, value = token
        if not parens and depth == 0 and previous[3] != "," \
                and "\n" in text[previous[1]:start]:
            break
        previous = token
        if kind == "char" and value in "([{":
            depth += 1
        elif kind == "char" and value in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and kind == "ident":
            key = value
        elif depth == 0 and kind == "string":
            found.setdefault(key, value)
        elif depth == 0 and kind == "char" and value == ",":
            key = None
    script = found.get("script") or found.get(None)
    if script is None:
        raise ValueError(f"sh step at offset {tokens[index][0]} has no literal script")
    return _step(*script)


def extract_sh_steps(text):
    """Every `sh` step in a Jenkinsfile's text, in order (comments ignored)."""
    tokens = _tokens(text)
    return [_sh_call(text, tokens, index) for index, (_, _, kind, value) in enumerate(tokens)
            if kind == "ident" and value == "sh"
            and not (index and tokens[index - 1][3] == ".")]


def _matching_block(text, start):
    """The text of the `{...}` block opening at the first `{` from start (strings and
    comments skipped)."""
    depth, opened = 0, None
    for offset, _, kind, value in _tokens(text[start:]):
        if kind != "char":
            continue
        if value == "{":
            depth += 1
            opened = offset if opened is None else opened
        elif value == "}" and opened is not None:
            depth -= 1
            if depth == 0:
                return text[start + opened:start + offset + 1]
    raise ValueError(f"no closed block after offset {start}")


def stage_blocks(text):
    """[(name, block text)] of the stages, in order."""
    return [(match.group(1), _matching_block(text, match.end()))
            for match in re.finditer(r"\bstage\(\s*'([^']*)'\s*\)", text)]


SAMPLE = r"""
// sh 'in a comment'
/* sh "in a block comment" */
pipeline { stages { stage('A') { steps {
    sh 'one \'quoted\''
    sh "two $HOME"
    sh '''
        three a
        three b
    '''
    sh(script: 'four', returnStatus: true)
    sh(returnStdout: true, script: QQQfiveQQQ)
    sh label: 'six label',
       script: 'six'
    sh('seven')
    echo 'sh is a word in here'
    sshagent(['x']) { sh 'eight' }
} } } }
""".replace("QQQ", '"' * 3)


def test_extractor_reads_every_form_of_sh_step():
    """Quote styles, sh(...) with script: or positional, bare named args; not comments."""
    steps = extract_sh_steps(SAMPLE)
    assert [step.script.strip() for step in steps] == [
        "one 'quoted'", "two $HOME", "three a\n        three b", "four", "five", "six",
        "seven", "eight"]
    assert [step.interpolated for step in steps] == [False, True] + [False] * 6


@pytest.mark.parametrize("text", [
    "sh script",                      # not a literal: cannot be checked, so refused
    "sh(returnStatus: true)",         # no script at all
    "sh 'unterminated\n'",
    "sh '''never closed",
    "sh 'bad \\d escape'",
])
def test_extractor_refuses_what_it_cannot_read(text):
    """A step the extractor cannot read is an error, never a step silently skipped."""
    with pytest.raises(ValueError):
        extract_sh_steps(text)


# ----------------------------------------------------------------- harmless forms

# The programs the pipeline may run, and how to run each without effect.
_HARMLESS = [
    (re.compile(r"(?<![^\s;&|(])make(?=\s)(?!\s+(-n|--dry-run)\b)"), "make -n"),
    (re.compile(r"(?<![^\s;&|(])\.venv/bin/python -m ci\b(?![^\n;&|]*--dry)"),
     ".venv/bin/python -m ci --dry"),
    (re.compile(r"(?<![^\s;&|(])\.venv/bin/fab\b(?![^\n;&|]*--dry)"), ".venv/bin/fab --dry"),
]
# What else a script may run, as is: shell built-ins and file utilities, nothing remote.
_INERT = {"mkdir", "cat", "exit", "echo", "set", "true", "test", "[", "tee", "ls"}
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", ";;"}


def command_words(script):
    """The program each simple command of script runs (assignments skipped)."""
    words = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        starting = True
        for token in lexer:
            if token in _SEPARATORS:
                starting = True
            elif starting and not re.fullmatch(r"[A-Za-z_]\w*=.*", token):
                words.append(token)
                starting = False
    return words


def harmless(script):
    """script with every program the pipeline runs made a dry run; ValueError when it runs
    something this test does not know how to make harmless."""
    known = {"make", ".venv/bin/python", ".venv/bin/fab"}
    unknown = [word for word in command_words(script) if word not in known | _INERT]
    if unknown:
        raise ValueError(f"no harmless form known for {unknown} in {script!r}")
    if not set(command_words(script)) & known:
        raise ValueError(f"runs none of {sorted(known)}: {script!r}")
    for pattern, replacement in _HARMLESS:
        script = pattern.sub(replacement, script)
    return script


def test_harmless_forms():
    """Each known program gets its dry-run flag once; an unknown program is refused."""
    assert harmless("make setup") == "make -n setup"
    assert harmless("make -n setup") == "make -n setup"
    assert harmless(".venv/bin/python -m ci") == ".venv/bin/python -m ci --dry"
    assert harmless('.venv/bin/fab -i "$K" service deploy') == \
        '.venv/bin/fab --dry -i "$K" service deploy'
    plan = ('status=0\n.venv/bin/fab --dry service launch > p.txt 2>&1 || status=$?\n'
            'cat p.txt\nexit $status')
    assert harmless(plan) == plan
    for script in ("aws ec2 run-instances", "ssh deploy@host", "mkdir -p reports",
                   ".venv/bin/fab deploy; curl http://example.com"):
        with pytest.raises(ValueError):
            harmless(script)


# ----------------------------------------------------------------- the Jenkinsfile


def jenkinsfile():
    """The Jenkinsfile's text."""
    return JENKINSFILE.read_text(encoding="utf-8")


def parameter_default(text, name):
    """The defaultValue of the pipeline parameter name."""
    match = re.search(rf"\b\w+\(\s*name:\s*'{name}',\s*defaultValue:\s*('[^']*'|\w+)", text)
    assert match, f"no parameter {name} with a defaultValue"
    return match.group(1).strip("'")


def test_jenkinsfile_has_no_lint_errors():
    """npm-groovy-lint@15 (installed by `make setup`) finds no error."""
    assert GROOVY_LINT.exists(), "npm-groovy-lint is missing: run `make setup`"
    proc = subprocess.run([str(GROOVY_LINT), "--output", "json", "--noserver", "Jenkinsfile"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    summary = json.loads(proc.stdout)["summary"]
    assert summary["totalFilesLinted"] == 1
    assert summary["totalFoundErrorNumber"] == 0, proc.stdout


def test_jenkinsfile_publishes_every_report():
    """Gates publishes tests, coverage, pylint and the record; Plan archives its plans;
    Deploy keeps the deploy's event log (written to reports/deploys/<release>.jsonl)."""
    text = jenkinsfile()
    for needle in ("junit testResults: 'reports/junit.xml'", "recordCoverage",
                   "parser: 'COBERTURA', pattern: 'reports/coverage.xml'",
                   "sourceCodeRetention: 'EVERY_BUILD'", "pyLint(pattern: 'reports/pylint.txt')",
                   "reports/htmlcov/**, reports/gates.json",
                   "reports/plan-launch.txt, reports/plan-deploy.txt",
                   "archiveArtifacts artifacts: 'reports/deploys/*.jsonl'"):
        assert needle in text, needle


def test_parameters_and_options():
    """ENV defaults to production, DRY_RUN to false; build options are set."""
    text = jenkinsfile()
    assert parameter_default(text, "ENV") == "production"
    assert parameter_default(text, "DRY_RUN") == "false"
    for needle in ("timestamps()", "timeout(time: 60, unit: 'MINUTES')",
                   "buildDiscarder(logRotator(numToKeepStr: '30'))"):
        assert needle in text, needle


def test_stages_are_in_order_and_launch_and_deploy_are_guarded():
    """Launch and Deploy: main only, not on DRY_RUN, locked per env, with credentials bound."""
    blocks = dict(stage_blocks(jenkinsfile()))
    assert [name for name, _ in stage_blocks(jenkinsfile())] == STAGES
    for name in ("Launch", "Deploy"):
        block = blocks[name]
        when = _matching_block(block, block.index("when"))
        assert "branch 'main'" in when and "!params.DRY_RUN" in when, when
        lock = _matching_block(block, block.index("lock(resource: \"fabship-${params.ENV}\")"))
        credentials = _matching_block(lock, lock.index("withCredentials(["))
        binding = lock[lock.index("withCredentials(["):lock.index("{", lock.index("])"))]
        for needle in ("$class: 'AmazonWebServicesCredentialsBinding'",
                       "credentialsId: 'fabship-aws'", "accessKeyVariable: 'AWS_ACCESS_KEY_ID'",
                       "secretKeyVariable: 'AWS_SECRET_ACCESS_KEY'",
                       "sshUserPrivateKey(credentialsId: 'fabship-deploy-ssh', "
                       "keyFileVariable: 'SSH_KEY')"):
            assert needle in binding, needle
        assert [step.script for step in extract_sh_steps(block)] == \
            [f'.venv/bin/fab -i "$SSH_KEY" service --env "$ENV" {name.lower()}']
        assert extract_sh_steps(credentials) == extract_sh_steps(block)
    for name in STAGES[:3]:
        assert "lock(" not in blocks[name] and "withCredentials" not in blocks[name], name


def test_every_sh_step_is_single_quoted():
    """No sh step is a GString with `$`: Groovy must not put secrets in scripts."""
    interpolated = [step.script for step in extract_sh_steps(jenkinsfile()) if step.interpolated]
    assert not interpolated, "Groovy would interpolate these; use single quotes"


# ----------------------------------------------------------------- run each step, harmless


@pytest.fixture(scope="module", name="clone")
def fixture_clone(tmp_path_factory):
    """A clone of HEAD using this repo's venv, with a passing gate record for its commit."""
    root = tmp_path_factory.mktemp("jenkins")
    checkout = root / "checkout"
    git(root, "clone", "-q", str(REPO), str(checkout))
    (checkout / ".venv").symlink_to(REPO / ".venv")
    with open(checkout / ".git" / "info" / "exclude", "a", encoding="utf-8") as exclude:
        exclude.write("\n/.venv\n")        # a symlink is not the directory .gitignore names
    (checkout / "reports").mkdir(exist_ok=True)
    record = {"version": 1, "commit": git(checkout, "rev-parse", "HEAD"), "dirty": False,
              "passed": True, "gates": {"unit": {"status": "passed"}}}
    (checkout / "reports" / "gates.json").write_text(json.dumps(record), encoding="utf-8")
    key = root / "ssh_key"
    key.write_text("not a key\n", encoding="utf-8")
    key.chmod(0o600)
    return checkout, key


def sandbox_env(key, env_name):
    """The environment for a harmless step: no real AWS or SSH settings, no proxy, fake AWS
    credentials and an endpoint on a loopback port nothing listens on."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("AWS_", "SSH_", "COVERAGE_"))
           and "proxy" not in name.lower()}    # COVERAGE_: the clone's code is not ours
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_ENDPOINT_URL="http://127.0.0.1:9",
               AWS_CONFIG_FILE=str(key.parent / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(key.parent / "no-aws-credentials"),
               NO_PROXY="*", ENV=env_name, SSH_KEY=str(key))
    return env


def test_jenkinsfile_runs_the_fab_tasks():
    """The extraction is not vacuous: it finds the fab plan, launch and deploy steps."""
    scripts = [step.script for step in extract_sh_steps(jenkinsfile())]
    assert scripts
    for task in ("launch", "deploy"):
        assert f'.venv/bin/fab -i "$SSH_KEY" service --env "$ENV" {task}' in scripts, task
        assert any(f'.venv/bin/fab --dry service --env "$ENV" {task} > reports/plan-{task}.txt'
                   in script for script in scripts), task


def test_every_sh_step_runs_on_a_clone(clone):
    """Each sh step, made a dry run, exits 0 in a clone of HEAD with the ENV default."""
    checkout, key = clone
    text = jenkinsfile()
    env = sandbox_env(key, parameter_default(text, "ENV"))
    failures, ran = [], 0
    for step in extract_sh_steps(text):
        script = harmless(step.script)
        proc = subprocess.run(["sh", "-xe", "-c", script], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        ran += 1
        if proc.returncode != 0:
            failures.append(f"$ {textwrap.dedent(script).strip()}\nexit {proc.returncode}\n"
                            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    assert ran >= 6
    assert not failures, "\n\n".join(failures)
