"""fabship's tasks, the collection a project's fabfile imports (`fab -l` lists them):

    from fabship.tasks import *  # noqa: F401,F403

Glue only: the logic lives in fabship.ci and fabship.deploy.
"""
from fabric import task
from invoke.exceptions import Exit

# Installed, ci and deploy are subpackages; in fabship's checkout fabship/__init__.py finds
# them at the top, which pylint's static import check cannot follow.
# pylint: disable=import-error
from .ci.cli import main as run_gates
from .deploy import deployment, ec2hosts, launch as ec2, operations
from .deploy.cli import guard_fab_config, remember_selection, run_command
# pylint: enable=import-error

__all__ = ["gates", "service", "deploy", "rollback", "status", "history", "launch",
           "list_hosts", "terminate"]

guard_fab_config()  # a bad fabric.yaml, -f file or FABRIC_* variable: one error, exit 2


@task(name="ci", help={"only": "comma list of gates to run (unit, coverage, lint, metrics)"})
def gates(c, only=None):
    """Run the quality gates (as fabship-ci does); `fab --dry ci` prints their commands."""
    argv = ["--only", only] if only else []
    if c.config.run.dry:
        argv.append("--dry")
    code = run_gates(argv)
    if code:
        raise Exit(code=code)


@task(help={"name": "service to act on (when fabric.yaml declares several)",
            "env": "environment to act on (when the service declares several)",
            "hosts": "comma list of user@addr[:port]: exactly these hosts, base settings"})
def service(c, name=None, env=None, hosts=None):
    """Choose the service/environment/hosts for the next task: `fab service deploy`."""
    remember_selection(c, name, env, hosts)


@task(help={"skip_gates": "ship even without a passing gate record (recorded)",
            "break_lock": "take over a stale deploy lock",
            "canary": "hosts deployed first, alone (default: rollout.canary, 1)",
            "batch": "hosts per batch after the canary: N or N% (default: rollout.batch, 25%)",
            "max_fail": "failed hosts tolerated before a fleet rollback: N or N% "
                        "(default: rollout.max_fail, 0)",
            "limit": "comma list of hosts: deploy to these of the environment only",
            "json": "print the event stream (JSON lines) instead of the human output",
            "verbose": "also show each command as it runs"})
def deploy(c, skip_gates=False, break_lock=False,  # pylint: disable=R0913,R0917
           canary=None, batch=None, max_fail=None, limit=None, json=False, verbose=False):
    """Roll a release out: canary, batches; switch, restart, health-check, roll back."""
    run_command(c, deployment.deploy, skip_gates=skip_gates, break_lock=break_lock,
                canary=canary, batch=batch, max_fail=max_fail, limit=limit, json=json,
                verbose=verbose)


@task(help={"to": "release id to go back to (default: the one before current)",
            "break_lock": "take over a stale deploy lock"})
def rollback(c, to=None, break_lock=False):
    """Switch every host back to the previous release (or --to), restart, health-check."""
    run_command(c, operations.rollback, to=to, break_lock=break_lock)


@task
def status(c):
    """Per host: current release, commit, health, lock holder."""
    run_command(c, operations.status)


@task(help={"limit": "entries per host (default 20)"})
def history(c, limit=None):
    """The deploy history recorded on each host (deploys.jsonl)."""
    run_command(c, operations.history, limit=limit)


@task(help={"no_wait": "return once the instances run, without waiting for SSH",
            "allow_terminate": "terminate the instances of slots above `count`"})
def launch(c, no_wait=False, allow_terminate=False):
    """Launch the EC2 environment's missing instances (if needed); wait for SSH; table."""
    run_command(c, ec2.launch, inventory=False, no_wait=no_wait,
                allow_terminate=allow_terminate)


@task(name="hosts")
def list_hosts(c):
    """List the EC2 environment's instances: slot, id, state, address, age."""
    run_command(c, ec2hosts.hosts, inventory=False)


@task(help={"yes": "really terminate (without it: say what would be terminated)"})
def terminate(c, yes=False):
    """Terminate every instance of the EC2 environment (asks for --yes)."""
    run_command(c, ec2hosts.terminate, inventory=False, yes=yes)
