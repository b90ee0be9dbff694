"""`fab service launch | hosts | terminate` against moto's real HTTP server.

Real parts: fab runs as a subprocess, boto3 speaks HTTP to moto on 127.0.0.1 (directly
or through the rig's counting, fault-injecting proxy), and every check reads EC2 back
through the API. Launches run with --no-wait: moto's instance addresses are made up and
must never be contacted.
"""
import hashlib
import re
import signal
import time

from cryptography.hazmat.primitives import serialization

from tests.awsrig import SSM_AMI, Proxy, ingress_rules, make_project, moto_process, moto, \
    ami, proxy, tag_map  # pylint: disable=unused-import

LAUNCH = ("launch", "--no-wait")
ROW = re.compile(r"^(\d+)\s+(i-[0-9a-f]+)\s+(\w[\w-]*)\s+(\S+)\s+(\S+)$", re.M)
WRITES = {"RunInstances", "ImportKeyPair", "CreateSecurityGroup", "TerminateInstances",
          "AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress", "CreateTags"}


def table(stdout):
    """{slot: (instance id, state, address)} of the instance table fab printed."""
    assert any(line.split() == ["slot", "instance", "state", "address", "age"]
               for line in stdout.splitlines()), stdout
    return {int(slot): (iid, state, address) for slot, iid, state, address, _
            in ROW.findall(stdout)}


def error_of(proc):
    """The one error paragraph fab printed; no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fabship: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def states(moto_server, environment):  # pylint: disable=redefined-outer-name
    """{instance id: state} of every instance of the environment, any state."""
    return {raw["InstanceId"]: raw["State"]["Name"]
            for raw in moto_server.instances(environment)}


def test_lifecycle_launch_grow_shrink_terminate_relaunch(make_project, moto):
    """The whole life of an environment, read back through the EC2 API at each step."""
    # pylint: disable=redefined-outer-name,too-many-locals,too-many-statements
    project = make_project("life", 3, ami=SSM_AMI)
    image = moto.client("ssm").get_parameter(Name=SSM_AMI.split(":", 2)[2])["Parameter"]["Value"]
    first = project.fab(*LAUNCH)
    assert first.returncode == 0, first.stderr
    slots = moto.slots("life")
    assert sorted(slots) == [1, 2, 3]
    for raw in moto.instances("life", live=True):
        tags = tag_map(raw)
        slot = tags["fabship:slot"]
        assert tags == {"fabship:service": "hello", "fabship:env": "life",
                        "fabship:slot": slot, "managed-by": "fabship",
                        "Name": f"hello-life-{slot}", "team": "web", "purpose": "life"}
        assert (raw["ImageId"], raw["InstanceType"], raw["KeyName"]) == (
            image, "t3.micro", "fabship-life")
    printed = table(first.stdout)
    by_id = {raw["InstanceId"]: raw for raw in moto.instances("life")}
    assert {slot: row[0] for slot, row in printed.items()} == slots
    for slot, (iid, state, address) in printed.items():
        assert (state, address) == (by_id[iid]["State"]["Name"],
                                    by_id[iid]["PrivateIpAddress"]), slot
    assert "(3 launched" in first.stdout

    again = project.fab(*LAUNCH)
    assert again.returncode == 0, again.stderr
    assert "(0 launched" in again.stdout
    assert moto.slots("life") == slots and len(states(moto, "life")) == 3

    project.write(count=5)
    grown = project.fab(*LAUNCH)
    assert grown.returncode == 0, grown.stderr
    five = moto.slots("life")
    assert sorted(five) == [1, 2, 3, 4, 5] and "(2 launched" in grown.stdout
    assert {slot: five[slot] for slot in (1, 2, 3)} == slots

    project.write(count=2)
    kept = project.fab(*LAUNCH)
    assert kept.returncode == 1, kept.stdout + kept.stderr
    assert "slots 5, 4, 3" in kept.stdout and "--allow-terminate" in kept.stdout
    assert moto.slots("life") == five

    shrunk = project.fab(*LAUNCH, "--allow-terminate")
    assert shrunk.returncode == 0, shrunk.stderr
    line = next(line for line in shrunk.stdout.splitlines() if "terminate surplus" in line)
    assert line.endswith(": " + ", ".join(five[slot] for slot in (5, 4, 3))), line
    assert moto.slots("life") == {1: five[1], 2: five[2]}
    now = states(moto, "life")
    assert all(now[five[slot]] in ("shutting-down", "terminated") for slot in (3, 4, 5))

    listed = project.fab("hosts")
    assert listed.returncode == 0, listed.stderr
    assert {slot: row[0] for slot, row in table(listed.stdout).items()} == {
        1: five[1], 2: five[2]}

    refused = project.fab("terminate")
    assert refused.returncode == 1
    assert "refusing" in refused.stdout and "--yes" in refused.stdout
    assert {slot: row[0] for slot, row in table(refused.stdout).items()} == {
        1: five[1], 2: five[2]}
    assert moto.slots("life") == {1: five[1], 2: five[2]}

    done = project.fab("terminate", "--yes")
    assert done.returncode == 0, done.stderr
    assert "terminated 2 instance(s)" in done.stdout
    assert not moto.slots("life")
    assert states(moto, "life")[five[1]] in ("shutting-down", "terminated")

    tokens = {raw["InstanceId"]: raw.get("ClientToken") for raw in moto.instances("life")}
    back = project.fab(*LAUNCH)
    assert back.returncode == 0, back.stderr
    fresh = moto.slots("life")
    assert sorted(fresh) == [1, 2] and not set(fresh.values()) & set(tokens)
    new_tokens = {raw["InstanceId"]: raw["ClientToken"] for raw in moto.instances("life")}
    for slot in (1, 2):
        assert new_tokens[fresh[slot]] != tokens[five[slot]], slot
        assert new_tokens[fresh[slot]].startswith("fabship-")


def test_security_group_and_key_pair_are_reconciled(make_project, moto, proxy):
    """The group holds exactly the configured ingress; the key pair is imported once."""
    # pylint: disable=redefined-outer-name
    project = make_project("guard", 1)
    first = project.fab(*LAUNCH, endpoint=proxy.endpoint)
    assert first.returncode == 0, first.stderr
    group = moto.group("hello-guard")
    assert ingress_rules(group) == {("tcp", 22, 22, "10.0.0.0/8"),
                                    ("tcp", 8080, 8080, "0.0.0.0/0")}
    (instance,) = moto.instances("guard", live=True)
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group["GroupId"]]

    pair = moto.key_pair("fabship-guard")
    assert pair is not None
    assert pair["PublicKey"].split()[:2] == project.public_key.split()[:2]
    der = serialization.load_ssh_public_key(project.public_key.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pair["KeyFingerprint"] == ":".join(re.findall("..", hashlib.sha256(der).hexdigest()))
    assert proxy.count("ImportKeyPair") == 1 and proxy.count("CreateSecurityGroup") == 1

    proxy.reset()
    project.write(security_group={"name": "hello-guard", "ingress": [
        {"port": 22, "cidr": "10.0.0.0/8"}, {"port": 443, "cidr": "192.168.0.0/16"},
        {"port": 53, "cidr": "10.1.0.0/16", "protocol": "udp"}]})
    changed = project.fab(*LAUNCH, endpoint=proxy.endpoint)
    assert changed.returncode == 0, changed.stderr
    wanted = {("tcp", 22, 22, "10.0.0.0/8"), ("tcp", 443, 443, "192.168.0.0/16"),
              ("udp", 53, 53, "10.1.0.0/16")}
    assert moto.group("hello-guard")["GroupId"] == group["GroupId"]
    assert ingress_rules(moto.group("hello-guard")) == wanted
    assert proxy.count("ImportKeyPair") == 0 and proxy.count("CreateSecurityGroup") == 0
    assert proxy.count("RunInstances") == 0
    assert [raw["InstanceId"] for raw in moto.instances("guard")] == [instance["InstanceId"]]

    moto.ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306,
         "IpRanges": [{"CidrIp": "172.16.0.0/12"}]}])
    assert ("tcp", 3306, 3306, "172.16.0.0/12") in ingress_rules(moto.group("hello-guard"))
    proxy.reset()
    third = project.fab(*LAUNCH, endpoint=proxy.endpoint)
    assert third.returncode == 0, third.stderr
    assert "revoke tcp/3306 from 172.16.0.0/12" in third.stdout
    assert ingress_rules(moto.group("hello-guard")) == wanted
    assert proxy.count("RevokeSecurityGroupIngress") == 1
    assert proxy.count("ImportKeyPair") == 0


def test_throttling_and_a_lost_run_instances_answer_end_with_count(make_project, moto):
    """503s first, then a RunInstances moto carried out but whose answer never came."""
    # pylint: disable=redefined-outer-name
    project = make_project("storm", 3, max_attempts=10)
    with Proxy(moto.endpoint, throttle=4) as faulty:
        faulty.drop_after("RunInstances")
        proc = project.fab(*LAUNCH, endpoint=faulty.endpoint)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert faulty.throttled == 4 and faulty.actions[:5] == ["DescribeInstances"] * 5
        assert faulty.dropped == ["RunInstances"]
        assert len(faulty.sent("RunInstances")) == 4  # one slot was launched twice
    assert sorted(moto.slots("storm")) == [1, 2, 3]
    every = moto.instances("storm")
    assert len(every) == 4
    (gone,) = [raw for raw in every if raw["State"]["Name"] not in ("pending", "running")]
    assert f"terminated duplicate instance(s) of a slot: {gone['InstanceId']}" in proc.stdout
    twin = moto.slots("storm")[int(tag_map(gone)["fabship:slot"])]
    (kept,) = [raw for raw in every if raw["InstanceId"] == twin]
    assert kept["ClientToken"] == gone["ClientToken"]  # botocore's retry of the same call


def test_throttling_beyond_max_attempts_is_one_clear_error(make_project, moto):
    """More 503s than ec2.max_attempts: exit 1, the code named, the way out suggested."""
    # pylint: disable=redefined-outer-name
    project = make_project("choked", 1, max_attempts=2)
    with Proxy(moto.endpoint, throttle=5) as faulty:
        proc = project.fab(*LAUNCH, endpoint=faulty.endpoint)
        assert faulty.actions == ["DescribeInstances"] * 2
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = error_of(proc)
    assert "ec2 DescribeInstances" in error and "RequestLimitExceeded" in error
    assert "ec2.max_attempts" in error
    assert not moto.instances("choked")


def test_dry_run_prints_the_calls_and_sends_nothing(make_project, moto, proxy):
    """`fab --dry service launch` shows each call with its parameters; zero requests."""
    # pylint: disable=redefined-outer-name
    project = make_project("dry", 2)
    # --no-wait as a safety belt: a broken dry-run must not try SSH on made-up addresses
    proc = project.fab(*LAUNCH, dry=True, endpoint=proxy.endpoint)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert 'ec2 ImportKeyPair KeyName="fabship-dry" PublicKeyMaterial="' \
        f'{project.public_key}"' in out
    assert 'ec2 CreateSecurityGroup GroupName="hello-dry"' in out
    runs = [line for line in out.splitlines() if "ec2 RunInstances " in line]
    assert len(runs) == 2
    assert all('InstanceType="t3.micro"' in line and "ClientToken=" in line and
               '"fabship:slot", "Value": "' in line for line in runs)
    assert "no request was made" in out
    assert proxy.requests == 0
    assert not moto.instances("dry") and moto.group("hello-dry") is None
    assert moto.key_pair("fabship-dry") is None


def test_killed_launch_then_rerun_gives_one_instance_per_slot(make_project, moto):
    """SIGKILL while RunInstances calls are under way; the rerun fills only the gaps."""
    # pylint: disable=redefined-outer-name
    project = make_project("killed", 3)
    with Proxy(moto.endpoint, delay=0.4, one_at_a_time=True) as slow:
        proc = project.popen(*LAUNCH, endpoint=slow.endpoint)
        try:
            deadline = time.monotonic() + 60
            while not slow.sent("RunInstances"):
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "no RunInstances within 60s"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(10)
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        slow.wait_idle()
    before = moto.slots("killed")
    assert 1 <= len(before) < 3, before
    rerun = project.fab(*LAUNCH)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"({3 - len(before)} launched" in rerun.stdout
    after = moto.slots("killed")
    assert sorted(after) == [1, 2, 3]
    assert {slot: after[slot] for slot in before} == before
    assert len(moto.instances("killed")) == 3


def test_bad_credentials_fail_once_clearly(make_project):
    """moto checking access keys: the first call fails, exit 2, nothing else is sent."""
    # pylint: disable=redefined-outer-name
    with moto_process(INITIAL_NO_AUTH_ACTION_COUNT="0") as endpoint, Proxy(endpoint) as spy:
        project = make_project("creds", 2)
        proc = project.fab(*LAUNCH, endpoint=spy.endpoint)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        error = error_of(proc)
        assert "ec2 DescribeInstances" in error
        assert "AuthFailure" in error or "InvalidClientTokenId" in error
        assert set(spy.actions) == {"DescribeInstances"}


def test_unknown_ami_stops_before_anything_is_created(make_project, moto, proxy):
    """An AMI moto does not know: exit 2 naming DescribeImages; no write was sent."""
    # pylint: disable=redefined-outer-name
    project = make_project("noami", 2, ami="ami-00000000deadbeef")
    proc = project.fab(*LAUNCH, endpoint=proxy.endpoint)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = error_of(proc)
    assert "ec2 DescribeImages" in error and "InvalidAMIID" in error and "ec2.ami" in error
    assert not WRITES & set(proxy.actions), proxy.actions
    assert not moto.instances("noami") and moto.key_pair("fabship-noami") is None


def test_unknown_instance_type_exits_2(make_project, moto):
    """An instance type moto does not know: exit 2 naming the call; nothing launched."""
    # pylint: disable=redefined-outer-name
    project = make_project("notype", 1, instance_type="zz9.huge")
    proc = project.fab(*LAUNCH)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = error_of(proc)
    assert "ec2 DescribeInstanceTypes" in error and "InvalidInstanceType" in error
    assert not moto.instances("notype") and moto.group("hello-notype") is None


def test_config_error_names_file_and_key_and_sends_nothing(make_project, proxy):
    """count: many -> exit 2 naming fabric.yaml and the key path; zero requests."""
    # pylint: disable=redefined-outer-name
    project = make_project("badcount", 1)
    project.write(count="many")
    proc = project.fab(*LAUNCH, endpoint=proxy.endpoint)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = error_of(proc)
    assert "fabric.yaml" in error and f"{project.key_path}.count" in error
    assert proxy.requests == 0


def test_bad_public_key_file_stops_before_any_launch(make_project, moto, proxy):
    """Not an OpenSSH key: exit 2 before any request; missing file: only reads were sent."""
    # pylint: disable=redefined-outer-name
    project = make_project("badkey", 1)
    (project.root / "deploy_key.pub").write_text("this is not a key\n")
    proc = project.fab(*LAUNCH, endpoint=proxy.endpoint)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = error_of(proc)
    assert f"{project.key_path}.public_key" in error and "not an OpenSSH public key" in error
    assert proxy.requests == 0

    (project.root / "deploy_key.pub").unlink()
    missing = project.fab(*LAUNCH, endpoint=proxy.endpoint)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    error = error_of(missing)
    assert f"{project.key_path}.public_key" in error and "'fabship-badkey'" in error
    assert proxy.requests > 0 and not WRITES & set(proxy.actions), proxy.actions
    assert not moto.instances("badkey") and moto.key_pair("fabship-badkey") is None
    assert moto.group("hello-badkey") is None


def test_instances_fabship_did_not_launch_are_never_touched(make_project, moto):
    """Copied or forged tags do not make an instance fabship's: no slot, no terminate."""
    # pylint: disable=redefined-outer-name
    project = make_project("strangers", 1)
    ec2 = moto.client("ec2")
    tags = [{"Key": "fabship:service", "Value": "hello"},
            {"Key": "fabship:env", "Value": "strangers"}, {"Key": "fabship:slot", "Value": "1"},
            {"Key": "managed-by", "Value": "fabship"}]
    stranger = ec2.run_instances(ImageId=moto.image_id(), MinCount=1, MaxCount=1,
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
                                 )["Instances"][0]["InstanceId"]
    launched = project.fab(*LAUNCH)
    assert launched.returncode == 0, launched.stderr
    assert "(1 launched" in launched.stdout
    assert f"were not launched by fabship (no fabship ClientToken): {stranger}" in launched.stdout
    assert stranger not in table(launched.stdout)[1]
    listed = project.fab("hosts")
    assert stranger in listed.stdout and "not launched by fabship" in listed.stdout
    gone = project.fab("terminate", "--yes")
    assert gone.returncode == 0 and "terminated 1 instance(s)" in gone.stdout
    assert states(moto, "strangers")[stranger] == "running"


def test_a_security_group_fabship_does_not_own_is_left_alone(make_project, moto, proxy):
    """A group of that name made by someone else: exit 2, its rules untouched."""
    # pylint: disable=redefined-outer-name
    project = make_project("theirs", 1)
    ec2 = moto.client("ec2")
    group = ec2.create_security_group(GroupName="hello-theirs", Description="not fabship's")
    ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "IpRanges": [{"CidrIp": "10.1.0.0/16"}]}])
    proc = project.fab(*LAUNCH, endpoint=proxy.endpoint)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = error_of(proc)
    assert "security_group.name" in error and group["GroupId"] in error
    assert "not fabship's" in error
    assert not WRITES & set(proxy.actions) and not moto.instances("theirs")
    rules = ec2.describe_security_groups(GroupIds=[group["GroupId"]])["SecurityGroups"][0]
    assert [p["FromPort"] for p in rules["IpPermissions"]] == [5432]
