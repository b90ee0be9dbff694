"""fabship's tasks: glue only. `fab -l` lists them; the logic lives in ci/ and deploy/."""
from fabric import task
from invoke.exceptions import Exit

from ci.cli import main as run_gates


@task(name="ci", help={"only": "comma list of gates to run (unit, coverage, lint, metrics)"})
def gates(c, only=None):
    """Run the quality gates (python -m ci); `fab --dry ci` prints their commands."""
    argv = ["--only", only] if only else []
    if c.config.run.dry:
        argv.append("--dry")
    code = run_gates(argv)
    if code:
        raise Exit(code=code)
