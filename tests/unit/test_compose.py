"""docker-compose.yml: the same secured stack for machines with a Docker engine (docker-compose.plaintext.yml: the
plaintext variant for tooling). What `compose init` writes for it runs for real in
tests/integration/test_compose_config.py.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import needed

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0


@pytest.fixture
def compose() -> None:
    """The docker client's compose plugin (.ci/deps builds it when the docker client lacks it)."""
    needed("the docker compose client", _compose_available(), "make deps builds the plugin with Go")


COMPOSE_FILES = ("docker-compose.yml", "docker-compose.plaintext.yml")
ENV = {"KENSHIN_UID": "1000", "KENSHIN_GID": "1000", "KENSHIN_DB_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y"}


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_declares_the_whole_stack(name: str) -> None:
    compose = yaml.safe_load((ROOT / name).read_text())
    services = compose["services"]
    assert {"kafka", "registry", "postgres", "prometheus", "grafana", "hub-init"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume
    assert services["hub-init"]["command"] == ["setup"]


def test_the_default_compose_stack_is_the_secured_one() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    kafka = services["kafka"]
    assert kafka["command"] == ["sh", "/etc/kenshin/kafka/start.sh"]  # compose init's SASL_SSL-only broker
    assert "environment" not in kafka  # none of the image's PLAINTEXT defaults
    assert "./compose-secrets/kafka:/etc/kenshin/kafka:ro" in kafka["volumes"]
    assert "ports" not in services["registry"]  # only the gate reaches it
    assert services["registry-gate"]["ports"] == ["127.0.0.1:8443:8443"]
    assert services["hub-access"]["command"] == ["access", "apply"]
    hub = [s for n, s in services.items() if n.startswith("hub-")]
    for service in hub:
        env = service["environment"]
        assert env["KENSHIN_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KENSHIN_SCHEMA_REGISTRY_URL"].startswith("https://registry-gate:")
        assert "./compose-secrets/clients:/etc/kenshin/clients:ro" in service["volumes"]
    for name, service in services.items():  # whoever mounts a secret runs as the user who wrote it
        if any("compose-secrets" in v for v in service.get("volumes", [])):
            assert service["user"].startswith("${KENSHIN_UID"), name
        assert not any("compose-secrets/ca" in v for v in service.get("volumes", [])), name  # the CA key stays


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_docker_compose_config_accepts_it(name: str, compose: None) -> None:
    env = {**os.environ, **ENV}
    run = subprocess.run(["docker", "compose", "-f", name, "config", "-q"], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr


def test_the_secured_compose_stack_asks_for_compose_init_first(compose: None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    run = subprocess.run(
        ["docker", "compose", "--env-file", os.devnull, "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip  (a .env of `compose init` ignored)
    assert run.returncode != 0
    assert "run `kenshin-hub compose init` first" in run.stderr
