"""An `ec2:` environment is the inventory of deploy, status, history and rollback.

Real parts: moto's EC2 server over HTTP, and OpenSSH hosts on loopback. The emulator's
instances have made-up addresses that are never contacted: the rehearsal's pairer
tags each instance with the address of a loopback host (`address: tag:...`), its own
root and its own application port (`var_tags`), exactly as `make demo` does.
"""
import json
import os
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from fabship.deploy.emulator import Pairer
from tests.fleet import start_fleet
from tests.project import Project

ENV = "cloud"
ADDRESS_TAG, VAR_PREFIX = "test:host", "test:var:"


@pytest.fixture(scope="module")
def moto_env():
    """moto's server on loopback; the environment that points boto3 (and fab) at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the pairer (in this process) talks to the same server
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture(scope="module")
def cloud(moto_env, wheel_cache, tmp_path_factory):
    """Two loopback hosts, a project whose `cloud` environment is EC2, and a pairer."""
    fleet = start_fleet(2)
    state = tmp_path_factory.mktemp("pairs")
    (state / "hosts.json").write_text(json.dumps(
        [{"name": s.name, "address": s.address, "pidfile": ""} for s in fleet.servers]))
    pairer = Pairer(state, [{"region": "us-east-1", "environment": ENV,
                             "address_tag": ADDRESS_TAG, "var_tags": VAR_PREFIX}])
    stop = threading.Event()

    def pair():
        while not stop.wait(0.2):
            pairer.round()
    thread = threading.Thread(target=pair, daemon=True)
    thread.start()
    project = Project(fleet.base / "cloud-project", fleet, wheel_cache)
    project.service = {
        "source": "services/hello", "requirements": "services/hello/requirements.txt",
        "run": "{{ venv }}/bin/python -m hello --config {{ release_dir }}/hello.conf",
        "templates": [{"src": "hello/hello.conf.j2", "dest": "hello.conf"}],
        "health": {"path": "/health", "port": "{{ port }}", "timeout": 20},
        "keep_releases": 3, "vars": {"bind": "127.0.0.1", "greeting": "hello"},
        "boot": "none",  # this machine's crontab stays as it was
        "environments": {ENV: {"root": "{{ rehearsal_root }}",
                               "vars": {"rehearsal_root": "/srv/default", "port": 1},
                               "ec2": {
            "region": "us-east-1", "count": 2, "instance_type": "t3.micro",
            "ami": "resolve:ssm:/aws/service/ami-amazon-linux-latest/"
                   "al2023-ami-kernel-default-x86_64",
            "address": f"tag:{ADDRESS_TAG}", "var_tags": VAR_PREFIX, "wait_timeout": 30}}}}
    project.write_config({"hello": project.service})
    project.commit("cloud")
    project.env, project.state = moto_env, state
    try:
        yield project
    finally:
        stop.set()
        thread.join()
        for pidfile in state.rglob("supervisord.pid"):
            subprocess.run(["kill", pidfile.read_text().strip()], check=False)
        fleet.stop()


def fab(project, *args):
    """`fab service --env cloud ARGS` with the emulator's environment."""
    return project.fab("service", "--env", ENV, *args, env=project.env)


def pins(project):
    """{instance id: [key types]} pinned in the project's instance known_hosts."""
    path = project.root / ".pins" / "instance_known_hosts"
    found = {}
    for line in path.read_text().splitlines() if path.exists() else ():
        owner, kind = line.split()[:2]
        found.setdefault(owner, []).append(kind)
    return found


def live_instances():
    """{slot: instance id} of the cloud environment's running instances."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    found = {}
    for reservation in ec2.describe_instances(Filters=[
            {"Name": "tag:fabship:env", "Values": [ENV]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
            found[int(tags["fabship:slot"])] = instance["InstanceId"]
    return found


def health(project, instance_id):
    """/health of an instance, through the port the pairer gave it."""
    pair = json.loads((project.state / "pairs.json").read_text())[instance_id]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{pair['port']}/health",
                                    timeout=5) as answer:
            return json.load(answer)
    except OSError:
        return None


def test_launch_waits_for_ssh_then_deploy_status_history_act_on_the_instances(cloud):
    launched = fab(cloud, "launch")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    slots = live_instances()
    assert sorted(slots) == [1, 2]
    for instance_id in slots.values():
        assert f"{instance_id} answers on SSH at" in launched.stdout
        assert pins(cloud)[instance_id] == ["ssh-ed25519"]  # pinned at first contact
    deployed = fab(cloud, "deploy")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr
    release = deployed.stdout.split("release ", 1)[1].split()[0]
    for instance_id in slots.values():
        assert health(cloud, instance_id)["release"] == release
    status = fab(cloud, "status")
    assert status.returncode == 0 and status.stdout.count(" ok ") == 2, status.stdout
    history = fab(cloud, "history")
    assert history.returncode == 0 and history.stdout.count("deployed") == 2


def test_dry_deploy_shows_each_slot_and_makes_no_request(cloud):
    proc = cloud.fab("--dry", "service", "--env", ENV, "deploy",
                     env={**cloud.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr
    assert "[<cloud slot 1>]" in proc.stdout and "[<cloud slot 2>]" in proc.stdout
    assert "/srv/default/releases" in proc.stdout
    assert "shown with the environment's defaults" in proc.stdout
    assert "no connection made" in proc.stdout
    for task in ("status", "history"):
        read = cloud.fab("--dry", "service", "--env", ENV, task,
                         env={**cloud.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
        assert read.returncode == 0, read.stderr
        assert "[<cloud slot 2>] would run: sh -c" in read.stdout
        assert "nothing was run, no connection made" in read.stdout
        if task == "status":  # the command the real run sends: supervisord is asked too
            assert read.stdout.count("/health supervisor hello\n") == \
                read.stdout.count("would run: ") >= 2, read.stdout


def test_new_instance_on_an_old_address_is_not_a_changed_key(cloud):
    old = live_instances()[1]
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2.terminate_instances(InstanceIds=[old])
    relaunched = fab(cloud, "launch")
    assert relaunched.returncode == 0, relaunched.stdout + relaunched.stderr
    new = live_instances()[1]
    assert new != old and "launched slot 1" in relaunched.stdout
    # The pairer put the new instance on the same loopback host as the old one.
    pairs = json.loads((cloud.state / "pairs.json").read_text())
    assert pairs[new]["host"] == pairs[old]["host"]
    assert new in pins(cloud)
    deployed = fab(cloud, "deploy")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr
    assert "HOST KEY" not in deployed.stdout + deployed.stderr


def test_changed_key_of_a_pinned_instance_is_refused_and_nothing_changes(cloud):
    server = cloud.fleet.servers[1]
    instance_id = live_instances()[2]
    before = health(cloud, instance_id)
    key = Path(server.host_key)
    saved = key.with_suffix(".saved")
    shutil.copy(key, saved)
    shutil.copy(f"{key}.pub", f"{saved}.pub")
    try:
        server.proc.terminate()
        server.proc.wait(timeout=10)
        key.unlink()
        Path(f"{key}.pub").unlink()
        cloud.fleet.start(server)  # a new host key: someone else answers at that address
        proc = fab(cloud, "deploy")
        assert proc.returncode == 1
        assert "HOST KEY CHANGED" in proc.stderr and instance_id in proc.stderr
        assert "nothing was changed" in proc.stderr and "Traceback" not in proc.stderr
        assert health(cloud, instance_id) == before
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=10)
        shutil.move(saved, key)
        shutil.move(f"{saved}.pub", f"{key}.pub")
        cloud.fleet.start(server)
