"""The AWS transport: the only module that imports boto3 (and botocore).

Credentials, region, profile and endpoint come from boto3's own chain (AWS_PROFILE,
AWS_REGION, AWS_ENDPOINT_URL, ...). Clients retry in botocore's `standard` mode
(throttling, 5xx, dropped connections) up to `max_attempts`. Every botocore error
becomes a CloudError: one paragraph naming the call and the cause, never a traceback.
"""
import threading
import time

import boto3
import botocore.exceptions
from botocore.config import Config

from .errors import FabshipError
from .steps import Ref

INPUT_CODES = {  # error code prefix -> what to check
    "AuthFailure": "the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...)",
    "InvalidClientTokenId": "the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...)",
    "SignatureDoesNotMatch": "the AWS secret key",
    "UnrecognizedClient": "the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...)",
    "UnauthorizedOperation": "the IAM permissions of these credentials",
    "AccessDenied": "the IAM permissions of these credentials",
    "InvalidAMIID": "ec2.ami",
    "InvalidSubnet": "ec2.subnet",
    "InvalidInstanceType": "ec2.instance_type",
    "InvalidKeyPair": "ec2.key_name and ec2.public_key",
    "InvalidParameter": "the ec2 settings",
    "ParameterNotFound": "ec2.ami (the SSM parameter)",
}
THROTTLING = ("Throttling", "RequestLimitExceeded", "TooManyRequests")


class CloudError(FabshipError):
    """An AWS call failed; exit 2 when the input (credentials, settings) is at fault."""

    def __init__(self, message, exit_code=1, code=None):
        super().__init__(message)
        self.exit_code, self.code = exit_code, code


def _client_error(exc, call):
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "?"), error.get("Message", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    check = next((what for prefix, what in INPUT_CODES.items() if code.startswith(prefix)),
                 None)
    text = f"AWS call {call} failed: {code}: {message}".rstrip(": ")
    if check:
        return CloudError(f"{text}. Check {check}. Nothing was launched by this call.", 2, code)
    if code.startswith(THROTTLING) or status >= 500:
        return CloudError(f"{text} (still failing after botocore's retries; try again "
                          "later or raise ec2.max_attempts).", 1, code)
    return CloudError(f"{text}.", 2 if 400 <= status < 500 else 1, code)


CAUSES = (  # botocore exception -> (what to do, exit code)
    ((botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError,
      botocore.exceptions.ProfileNotFound),
     "Set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.", 2),
    ((botocore.exceptions.NoRegionError,), "Set ec2.region in fabric.yaml or AWS_REGION.", 2),
    ((botocore.exceptions.ParamValidationError,), "The request was refused before sending.", 2),
)


def explain(exc, call):
    """A CloudError for a botocore exception raised by `call` (e.g. 'ec2 RunInstances')."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return _client_error(exc, call)
    for kinds, advice, code in CAUSES:
        if isinstance(exc, kinds):
            return CloudError(f"AWS call {call} failed: {exc}. {advice}", code)
    return CloudError(f"AWS call {call} failed: {exc}")


def resolve(value, refs):
    """`value` with every Ref replaced by what an earlier call saved."""
    if isinstance(value, Ref):
        return refs[value.name]
    if isinstance(value, list):
        return [resolve(item, refs) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, refs) for key, item in value.items()}
    return value


class Aws:
    """Clients of one region; counts the requests it sends (not botocore's retries)."""

    def __init__(self, region=None, max_attempts=8):
        self.region, self.requests = region, 0
        self._config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                              connect_timeout=10, read_timeout=60, user_agent_extra="fabship")
        self._clients, self._lock = {}, threading.Lock()
        self.refs = {}

    def client(self, api):
        """The boto3 client of `api` (ec2, ssm), made once."""
        with self._lock:
            if api not in self._clients:
                try:
                    session = boto3.session.Session(region_name=self.region)
                    self._clients[api] = session.client(api, config=self._config)
                except botocore.exceptions.BotoCoreError as exc:
                    raise explain(exc, f"{api} (client setup)") from exc
            return self._clients[api]

    def call(self, step):
        """Run one Ec2Call; save what it `saves`; return the response."""
        params = resolve(step.kwargs, self.refs)
        response = self.request(step.api, step.op, **params)
        for name, key in step.saves:
            self.refs[name] = response[key]
        return response

    def request(self, api, op, **params):
        """One API operation by its AWS name (RunInstances), errors explained."""
        method = getattr(self.client(api), _snake(op))
        with self._lock:
            self.requests += 1
        try:
            return method(**params)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise explain(exc, f"{api} {op}") from exc

    def pages(self, api, op, key, **params):
        """Every item under `key` across the pages of a paginated call."""
        paginator = self.client(api).get_paginator(_snake(op))
        items = []
        try:
            for page in paginator.paginate(**params):
                with self._lock:
                    self.requests += 1
                items.extend(page.get(key, ()))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise explain(exc, f"{api} {op}") from exc
        return items

    def wait_running(self, ids, timeout):
        """Wait (at most `timeout` seconds) until every instance in `ids` is running."""
        delay = 2 if timeout < 120 else 5
        waiter = self.client("ec2").get_waiter("instance_running")
        started = time.monotonic()
        try:
            waiter.wait(InstanceIds=list(ids), WaiterConfig={
                "Delay": delay, "MaxAttempts": max(1, int(timeout // delay))})
        except botocore.exceptions.WaiterError as exc:
            last = exc.last_response or {}
            why = last.get("Error", {}).get("Message") or _states(last)
            raise CloudError(f"gave up after {time.monotonic() - started:.0f}s (ec2."
                             f"wait_timeout {timeout:g}s) waiting for instances "
                             f"{', '.join(ids)} to be running: {why}") from exc
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise explain(exc, "ec2 DescribeInstances (waiting for running)") from exc


def _states(response):
    states = [f"{i['InstanceId']} {i['State']['Name']}"
              for r in (response or {}).get("Reservations", ()) for i in r.get("Instances", ())]
    return "last states: " + (", ".join(states) or "unknown")


def _snake(op):
    out = []
    for index, char in enumerate(op):
        if char.isupper() and index:
            out.append("_")
        out.append(char.lower())
    return "".join(out)
