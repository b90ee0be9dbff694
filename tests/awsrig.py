"""Real-parts rig for EC2 launch tests: moto's server on loopback, a proxy, projects.

Every packet goes to 127.0.0.1: moto's instances have made-up addresses, so a launch
under test always runs with --no-wait. Fixtures are defined here; a test module imports
the ones it uses (pytest finds fixtures imported into a test module).
"""
import contextlib
import http.client
import http.server
import json
import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parent.parent
FAB = str(Path(sys.executable).with_name("fab"))
MOTO_SERVER = str(Path(sys.executable).with_name("moto_server"))
REGION = "us-east-1"
SSM_AMI = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
LIVE = ("pending", "running")
THROTTLED = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
             b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
             b"</Error></Errors><RequestID>%s</RequestID></Response>")
HOP_BY_HOP = ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "content-length", "server", "date")


def rig_env(endpoint, access_key="testing", secret_key="testing"):
    """The environment of a `fab` subprocess: this endpoint and keys, no other AWS_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SSH_"))}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=access_key,
               AWS_SECRET_ACCESS_KEY=secret_key, AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    return env


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Moto:
    """A moto server's endpoint, and the test's own view of it through boto3."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self._session = boto3.session.Session(aws_access_key_id="testing",
                                              aws_secret_access_key="testing",
                                              region_name=REGION)
        self.ec2 = self.client("ec2")

    def client(self, api):
        """A boto3 client of `api` talking to this server directly."""
        return self._session.client(api, endpoint_url=self.endpoint)

    def image_id(self):
        """An AMI that exists in moto."""
        return sorted(i["ImageId"] for i in self.ec2.describe_images(
            Owners=["amazon"])["Images"])[0]

    def instances(self, environment, service="hello", live=False):
        """The environment's instances (raw dicts; any state unless `live`), by our reading
        of their tags rather than by moto's filters."""
        found = []
        for page in self.ec2.get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for raw in reservation["Instances"]:
                    tags = tag_map(raw)
                    if (tags.get("fabship:service"), tags.get("fabship:env")) != (
                            service, environment):
                        continue
                    if not live or raw["State"]["Name"] in LIVE:
                        found.append(raw)
        return found

    def slots(self, environment, service="hello"):
        """{slot: instance id} of the live instances; fails on two live in one slot."""
        slots = {}
        for raw in self.instances(environment, service, live=True):
            slot = int(tag_map(raw)["fabship:slot"])
            assert slot not in slots, f"slot {slot} has two live instances"
            slots[slot] = raw["InstanceId"]
        return slots

    def group(self, name):
        """The security group named `name`, or None."""
        groups = self.ec2.describe_security_groups(Filters=[
            {"Name": "group-name", "Values": [name]}])["SecurityGroups"]
        assert len(groups) <= 1, f"{len(groups)} groups named {name}"
        return groups[0] if groups else None

    def key_pair(self, name):
        """The key pair named `name` (with its public key), or None."""
        pairs = self.ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]
        found = [pair for pair in pairs if pair["KeyName"] == name]
        return found[0] if found else None


def tag_map(raw):
    """{key: value} of a described resource's Tags."""
    return {tag["Key"]: tag["Value"] for tag in raw.get("Tags", ())}


def ingress_rules(group):
    """{(protocol, from port, to port, cidr)} of a described security group."""
    return {(perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"), cidr["CidrIp"])
            for perm in group.get("IpPermissions", ()) for cidr in perm.get("IpRanges", ())}


@contextlib.contextmanager
def threaded_moto():
    """moto's ThreadedMotoServer on 127.0.0.1 (a free port), stopped on exit."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield Moto(f"http://{host}:{port}")
    finally:
        server.stop()


@contextlib.contextmanager
def moto_process(**env):
    """A separate `moto_server` process (with extra environment), killed on exit."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with subprocess.Popen([MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
                          env={**environ, **env}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as proc:
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), timeout=1):
                    break
                assert proc.poll() is None, f"moto_server exited with {proc.returncode}"
                assert time.monotonic() < deadline, "moto_server did not listen within 30s"
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.kill()


def request_action(headers, body):
    """(action, params) of an AWS request: EC2's form body, or a JSON API's target."""
    target = headers.get("X-Amz-Target")
    if target:
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        return target.rsplit(".", 1)[-1], params
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    params = {key: values[0] for key, values in form.items()}
    return params.get("Action", "?"), params


def client_gone(sock):
    """True when the client closed its end (a killed process) before we answered."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # pylint: disable=invalid-name
        """Every request goes to the proxy's policy."""
        self.server.proxy.handle(self)

    do_GET = do_POST

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        """Quiet."""


class Proxy:  # pylint: disable=too-many-instance-attributes
    """A counting HTTP proxy on 127.0.0.1 in front of moto, with faults on demand.

    `throttle`: answer the first K requests 503 RequestLimitExceeded (EC2's XML body).
    `drop_before(action)`: close the next such request's connection without forwarding.
    `drop_after(action)`: forward it (moto acts), then close without answering.
    `delay`: seconds to hold each request; with `one_at_a_time` requests are forwarded
    one by one, and one whose client went away meanwhile is not forwarded.
    """

    def __init__(self, upstream, throttle=0, delay=0.0, one_at_a_time=False):
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.throttle_left, self.delay, self.one_at_a_time = throttle, delay, one_at_a_time
        self.lock, self.gate = threading.Lock(), threading.Lock()
        self.requests = self.throttled = self.inflight = 0
        self.actions, self.forwarded, self.dropped = [], [], []
        self._drops = {"before": {}, "after": {}}
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.proxy = self
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self):
        """The URL to give boto3 (AWS_ENDPOINT_URL)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def drop_before(self, action, times=1):
        """Close the next `times` `action` connections without forwarding them."""
        self._drops["before"][action] = times

    def drop_after(self, action, times=1):
        """Forward the next `times` `action` requests, then close without answering."""
        self._drops["after"][action] = times

    def count(self, action):
        """How many `action` requests arrived (answered or not)."""
        with self.lock:
            return self.actions.count(action)

    def sent(self, action):
        """The params of every `action` request moto received, in order."""
        with self.lock:
            return [params for name, params in self.forwarded if name == action]

    def reset(self):
        """Forget what was counted (the faults stay as they are)."""
        with self.lock:
            self.requests = self.throttled = 0
            self.actions, self.forwarded, self.dropped = [], [], []

    def wait_idle(self, timeout=30):
        """Wait until no request is being handled."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if not self.inflight:
                    return
            assert time.monotonic() < deadline, "the proxy stayed busy"
            time.sleep(0.05)

    def close(self):
        """Stop serving and close the listening socket."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _take(self, when, action):
        left = self._drops[when].get(action, 0)
        if left:
            self._drops[when][action] = left - 1
        return bool(left)

    def handle(self, request):
        """Count, then throttle, drop or forward one request."""
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        action, params = request_action(request.headers, body)
        with self.lock:
            self.requests += 1
            self.inflight += 1
            self.actions.append(action)
            throttle = self.throttle_left > 0
            if throttle:
                self.throttle_left -= 1
                self.throttled += 1
            drop_before, drop_after = self._take("before", action), self._take("after", action)
        try:
            if throttle:
                self._answer(request, 503, [("Content-Type", "text/xml")],
                             THROTTLED % f"throttled-{self.throttled}".encode())
            elif drop_before:
                self._drop(request, action)
            else:
                self._pass(request, action, params, body, drop_after)
        finally:
            with self.lock:
                self.inflight -= 1

    def _pass(self, request, action, params, body, drop_after):
        with self.gate if self.one_at_a_time else contextlib.nullcontext():
            if self.delay:
                time.sleep(self.delay)
                if client_gone(request.connection):
                    self._drop(request, action)
                    return
            status, headers, data = self._forward(request, body)
            with self.lock:
                self.forwarded.append((action, params))
        if drop_after:
            self._drop(request, action)
        else:
            self._answer(request, status, headers, data)

    def _forward(self, request, body):
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in HOP_BY_HOP}
            connection.request(request.command, request.path, body, headers)
            answer = connection.getresponse()
            data = answer.read()
            kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP]
            return answer.status, kept, data
        finally:
            connection.close()

    def _drop(self, request, action):
        with self.lock:
            self.dropped.append(action)
        request.close_connection = True
        with contextlib.suppress(OSError):
            request.connection.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _answer(request, status, headers, data):
        request.send_response(status)
        for key, value in headers:
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def ec2_block(environment, image, count):
    """A complete `ec2:` block whose AWS names are unique to `environment`."""
    return {
        "region": REGION, "count": count, "instance_type": "t3.micro", "ami": image,
        "key_name": f"fabship-{environment}", "public_key": "deploy_key.pub",
        "security_group": {"name": f"hello-{environment}", "ingress": [
            {"port": 22, "cidr": "10.0.0.0/8"}, {"port": 8080, "cidr": "0.0.0.0/0"}]},
        "tags": {"team": "web", "purpose": environment},
        "user_data": "hello/cloud-init.yaml.j2", "address": "private_ip",
        "wait_timeout": 30,
    }


class LaunchProject:
    """A throwaway project: fabfile, templates, a key, fabric.yaml with one EC2 env."""

    def __init__(self, root, environment, endpoint, ec2):
        self.root, self.environment, self.endpoint = Path(root), environment, endpoint
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "fabfile.py", self.root / "fabfile.py")
        shutil.copytree(REPO / "templates", self.root / "templates")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fabship-test",
                        "-f", str(self.root / "deploy_key")], check=True)
        self.ec2 = ec2
        self.write()

    @property
    def public_key(self):
        """The text of the project's public key."""
        return (self.root / "deploy_key.pub").read_text(encoding="utf-8").strip()

    @property
    def key_path(self):
        """The config key path of the environment's `ec2:` block."""
        return f"services.hello.environments.{self.environment}.ec2"

    def write(self, **changes):
        """fabric.yaml with the `ec2:` block updated by `changes`."""
        self.ec2 = {**self.ec2, **changes}
        config = {"services": {"hello": {
            "source": "services/hello", "run": "python -m hello",
            "environments": {self.environment: {"ec2": self.ec2}}}}}
        (self.root / "fabric.yaml").write_text(yaml.safe_dump(config, sort_keys=False),
                                               encoding="utf-8")

    def argv(self, *task, dry=False):
        """fab [--dry] service --env ENV TASK..."""
        return [FAB, *(["--dry"] if dry else []), "service", "--env", self.environment, *task]

    def fab(self, *task, dry=False, endpoint=None, env=None, timeout=120):
        """Run `fab ... service --env ENV TASK` here; return the CompletedProcess."""
        return subprocess.run(self.argv(*task, dry=dry), cwd=self.root, capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env=env or rig_env(endpoint or self.endpoint))

    def popen(self, *task, endpoint=None):
        """Start `fab service --env ENV TASK` without waiting (output to pipes)."""
        return subprocess.Popen(  # pylint: disable=consider-using-with
            self.argv(*task), cwd=self.root, env=rig_env(endpoint or self.endpoint),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def moto():
    """One ThreadedMotoServer per test module; tests keep apart by environment name."""
    with threaded_moto() as server:
        yield server


@pytest.fixture
def proxy(moto):  # pylint: disable=redefined-outer-name
    """A counting proxy in front of the module's moto (no faults until a test adds some)."""
    with Proxy(moto.endpoint) as made:
        yield made


@pytest.fixture(scope="module")
def ami(moto):  # pylint: disable=redefined-outer-name
    """An AMI id moto knows."""
    return moto.image_id()


@pytest.fixture
def make_project(tmp_path, moto, ami):  # pylint: disable=redefined-outer-name
    """Factory: a LaunchProject for environment NAME (count N), pointed at moto."""
    def make(environment, count=3, **changes):
        block = {**ec2_block(environment, ami, count), **changes}
        return LaunchProject(tmp_path / environment, environment, moto.endpoint, block)
    return make
