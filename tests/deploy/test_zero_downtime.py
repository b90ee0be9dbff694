"""Zero downtime (issue 12) on real sshd hosts: supervisord holds each host's socket and a
deploy replaces the two processes one at a time. A load generator sends requests all
along, a new connection each, and counts refusals, resets and non-2xx answers.
"""
import time

from tests.deploy.fleetstate import break_health, change_code, deploy_fails, release_of
from tests.deploy.loadgen import Load, answers, deploy_under_load, rollback_under_load

SICK = 'self.set_status(503)\n        self.write({"status": "sick"})'


def test_a_steady_deploy_and_a_rollback_fail_no_request(build):
    """Under continuous load, a deploy and then `fab service rollback` each leave 0 failed
    requests; a 2-second request in flight across the switch ends with 200."""
    project, (first,) = build.deployed(1, drain=10)
    change_code(project, "zero downtime")
    deploy_under_load(project, first)
    rollback_under_load(project, first)


def test_a_failing_release_takes_one_process_share_then_every_process_is_old(build):
    """The new release answers 503: its first process fails its check, the host goes back.
    Only that process's answers failed (no refusal, no reset), fewer than the requests
    made meanwhile, and every process serves the old release at the end."""
    project, (first,) = build.deployed(1, drain=10)
    break_health(project, SICK)
    with Load(project) as load:
        started = time.monotonic()
        proc = deploy_fails(project)
        took = time.monotonic() - started
    failed = release_of(proc)
    assert "hello:hello_0: unhealthy after" in proc.stdout, proc.stdout
    kinds = set(load.kinds)
    assert kinds <= {"503 b'{\"status\": \"sick\"}'"}, load.kinds  # never refused or reset
    assert load.failed < load.sent / 2, (load.failed, load.sent, took)
    for index in range(3):
        assert answers(project, index) == {first} != {failed}
