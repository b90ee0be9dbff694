"""Fixtures: a session-wide fleet of real sshd hosts and throwaway projects."""
import pytest

from tests.fleet import app_port, start_fleet
from tests.deploy.fleetstate import Builder
from tests.project import Project, fleet_hosts, hello_service


@pytest.fixture(scope="session")
def fleet():
    """Six OpenSSH servers on loopback; supervisords they end up running die with them."""
    hosts = start_fleet(6)
    try:
        yield hosts
    finally:
        hosts.stop()


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory):
    """One .fabship cache for every project, so wheels are built once per session."""
    return tmp_path_factory.mktemp("fabship-cache")


@pytest.fixture(scope="session")
def make_project(fleet, wheel_cache):
    """Factory: a committed project deploying hello to the fleet, under its own roots."""
    counter = iter(range(1000))

    def make(name=None, **service_overrides):
        name = name or f"p{next(counter)}"
        project = Project(fleet.base / name, fleet, wheel_cache)
        project.hosts = fleet_hosts(fleet, [(s, app_port()) for s in fleet.servers[:3]])
        service = hello_service(f"{fleet.base}/{name}-hosts", **service_overrides)
        service["environments"] = {"test": {"hosts": project.hosts}}
        project.service = service
        project.write_config({"hello": service})
        project.commit("first")
        return project
    return make


@pytest.fixture(name="build")
def build_fixture(make_project):
    """This test's projects; their supervisords stop and their ports are freed after it."""
    builder = Builder(make_project)
    yield builder
    builder.close()
