"""Hosts connect from several threads: none may write into the config they share.

Fabric's Connection writes the key files it resolves (the config's, then ssh_config's
IdentityFile) back into the config it is given. Shared by every host, that config was
re-merged under the feet of the other threads, one of which could then see no key at all
("No authentication methods available", seen once in a full run).
"""
from concurrent.futures import ThreadPoolExecutor

import paramiko
from fabric import Config

from fabship.deploy.config import SshSettings
from fabship.deploy.hosts import parse_host
from fabship.deploy.knownhosts import KnownHosts
from fabship.deploy.ssh import SshHost


def shared_config(tmp_path):
    """`fab -i KEY` with an ssh_config naming another IdentityFile for every host."""
    ssh_config = paramiko.SSHConfig.from_text(f"Host *\n  IdentityFile {tmp_path}/other\n")
    return Config(ssh_config=ssh_config,
                  overrides={"connect_kwargs": {"key_filename": [f"{tmp_path}/key"]}})


def test_each_host_resolves_its_keys_in_a_config_of_its_own(tmp_path):
    """The shared config keeps the one key; every host gets the key and the IdentityFile."""
    config = shared_config(tmp_path)
    known = KnownHosts(tmp_path / "absent")

    def make(index):
        return SshHost(parse_host(f"u@127.0.0.{index % 250 + 1}:2222"), config, known,
                       SshSettings())
    with ThreadPoolExecutor(max_workers=8) as pool:
        hosts = list(pool.map(make, range(64)))
    assert list(config.connect_kwargs["key_filename"]) == [f"{tmp_path}/key"]
    for host in hosts:
        assert host.conn.connect_kwargs["key_filename"] == [f"{tmp_path}/key",
                                                            f"{tmp_path}/other"]
