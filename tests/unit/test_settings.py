import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.settings import Secret, Settings, SettingsError, load_settings, mask_url

pytestmark = pytest.mark.unit


def test_defaults_without_environment(tmp_path: Path) -> None:
    assert load_settings({}).state_dir == Settings().state_dir
    # Only the state directory is set: the default one holds the secured profile once `stack up` ran there.
    s = load_settings({"KENSHIN_STATE_DIR": str(tmp_path)})
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.tenant == "012041"
    assert s.kafka_config() == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "PLAINTEXT"}


def test_binds_kenshin_variables_and_ignores_others() -> None:
    s = load_settings(
        {
            "KENSHIN_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "KENSHIN_TENANT": "011002",
            "KENSHIN_STACK_KAFKA_PORT": "29092",
            "KENSHIN_STATE_DIR": "/tmp/x",
            "PATH": "/bin",
        }
    )
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.tenant == "011002"
    assert s.stack_kafka_port == 29092
    assert s.state_dir == Path("/tmp/x")


def test_unknown_key_is_an_error_with_a_hint() -> None:
    with pytest.raises(
        SettingsError, match=r"KENSHIN_KAFKA_BOOTSTRAP_SERVER \(did you mean KENSHIN_KAFKA_BOOTSTRAP_SERVERS"
    ):
        load_settings({"KENSHIN_KAFKA_BOOTSTRAP_SERVER": "x"})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("KENSHIN_TENANT", "012040", "not a valid 団体コード"),
        ("KENSHIN_STACK_KAFKA_PORT", "nine", "invalid value"),
        ("KENSHIN_STACK_KAFKA_PORT", "70000", "not a TCP port"),
        ("KENSHIN_KAFKA_SECURITY_PROTOCOL", "TLS", "not one of"),
        ("KENSHIN_LOG_LEVEL", "LOUD", "not one of"),
        ("KENSHIN_KAFKA_SSL_CAFILE", "/nonexistent/ca.pem", "does not exist"),
        ("KENSHIN_STREAM_BATCH_SIZE", "0", "between 1 and 100000"),
        ("KENSHIN_STREAM_BATCH_SIZE", "many", "invalid value"),
    ],
)
def test_invalid_values(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({key: value})


def test_sasl_needs_credentials() -> None:
    with pytest.raises(SettingsError, match="needs KENSHIN_KAFKA_SASL_MECHANISM"):
        load_settings({"KENSHIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})


def test_security_settings_reach_the_client_config(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    s = load_settings(
        {
            "KENSHIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KENSHIN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KENSHIN_KAFKA_SASL_USERNAME": "hub",
            "KENSHIN_KAFKA_SASL_PASSWORD": "s3cret-pw",
            "KENSHIN_KAFKA_SSL_CAFILE": str(ca),
        }
    )
    conf = s.kafka_config()
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == "s3cret-pw"
    assert conf["ssl.ca.location"] == str(ca)


def test_secrets_are_masked_when_printed() -> None:
    s = load_settings(
        {
            "KENSHIN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KENSHIN_KAFKA_SASL_MECHANISM": "PLAIN",
            "KENSHIN_KAFKA_SASL_USERNAME": "hub",
            "KENSHIN_KAFKA_SASL_PASSWORD": "s3cret-pw",
            "KENSHIN_DATABASE_URL": "postgresql+psycopg://kenshin:db-pw@localhost/kenshin",
            "KENSHIN_SCHEMA_REGISTRY_BASIC_AUTH": "u:reg-pw",
        }
    )
    printed = repr(s) + str(s) + "".join(f"{k}={v}" for k, v in s.describe())
    for secret in ("s3cret-pw", "db-pw", "reg-pw"):
        assert secret not in printed
    assert "postgresql+psycopg://kenshin:********@localhost/kenshin" in printed


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.tenant = "011002"  # type: ignore[misc]


def test_mask_url_and_secret() -> None:
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
    assert mask_url("postgresql://a:b@h:5432/d") == "postgresql://a:********@h:5432/d"
    assert str(Secret("x")) == "********"
    assert Secret("x").reveal() == "x"


def test_nothing_reads_the_environment_at_import() -> None:
    # In a fresh interpreter: reloading the module here would give later tests a second SettingsError class.
    env = {**os.environ, "KENSHIN_NOT_A_SETTING": "1"}
    run = subprocess.run([sys.executable, "-c", "import hub.settings, hub.cli"], env=env, capture_output=True,
                         text=True, check=False, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr  # validation happens only in load_settings


def test_client_addresses_follow_the_local_stack_ports_unless_set(tmp_path: Path) -> None:
    state = {"KENSHIN_STATE_DIR": str(tmp_path)}  # no secured stack profile there (see the defaults' test)
    s = load_settings({**state, "KENSHIN_STACK_KAFKA_PORT": "29092", "KENSHIN_STACK_REGISTRY_PORT": "28081"})
    assert s.kafka_bootstrap_servers == "127.0.0.1:29092"
    assert s.schema_registry_url == "http://127.0.0.1:28081/apis/ccompat/v7"
    explicit = load_settings({"KENSHIN_STACK_KAFKA_PORT": "29092", "KENSHIN_KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    assert explicit.kafka_bootstrap_servers == "k:9092"


def test_metrics_ports_per_process() -> None:
    import hub.settings

    error = hub.settings.SettingsError
    s = load_settings({"KENSHIN_METRICS_SINKS_PORT": "19402", "KENSHIN_METRICS_HOST": "0.0.0.0"})
    assert (s.metrics_port("processors"), s.metrics_port("sinks"), s.metrics_port("network")) == (9401, 19402, 9405)
    assert s.metrics_host == "0.0.0.0"
    both_any = load_settings({"KENSHIN_METRICS_PROCESSORS_PORT": "0", "KENSHIN_METRICS_SINKS_PORT": "0"})
    assert both_any.metrics_port("processors") == both_any.metrics_port("sinks") == 0  # 0: any free port, each
    with pytest.raises(error, match="KENSHIN_METRICS_SINKS_PORT=9401 is also KENSHIN_METRICS_PROCESSORS_PORT"):
        load_settings({"KENSHIN_METRICS_SINKS_PORT": "9401"})
    with pytest.raises(error, match="KENSHIN_METRICS_CHUKAN_PORT=70000 is not a TCP port"):
        load_settings({"KENSHIN_METRICS_CHUKAN_PORT": "70000"})
    with pytest.raises(error, match="did you mean KENSHIN_METRICS_SINKS_PORT"):
        load_settings({"KENSHIN_METRICS_SINK_PORT": "9999"})


def test_config_doc_lists_the_metrics_settings() -> None:
    from hub.settings import fields_doc

    documented = {name: default for name, default, _doc in fields_doc()}
    assert documented["KENSHIN_METRICS_HOST"] == "127.0.0.1"
    defaults = {"processors": 9401, "sinks": 9402, "connector": 9403, "chukan": 9404, "network": 9405}
    for process, port in defaults.items():
        assert documented[f"KENSHIN_METRICS_{process.upper()}_PORT"] == str(port)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in documented:
        assert f"`{name}`" in readme, f"{name} is missing from the README's configuration table"


def test_the_stream_processes_take_their_batch_size_from_the_settings(tmp_path: Path) -> None:
    from processors.runner import build
    from sinks.runner import build_runner

    settings = load_settings(
        {
            "KENSHIN_STATE_DIR": str(tmp_path),
            "KENSHIN_DATABASE_URL": f"sqlite:///{tmp_path / 'sinks.db'}",
            "KENSHIN_STREAM_BATCH_SIZE": "321",
            "KENSHIN_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # built, never polled: nothing is asked of a broker
            "KENSHIN_SCHEMA_REGISTRY_URL": "http://127.0.0.1:1",
        }
    )
    for make in (build, build_runner):
        runner = make(settings)
        try:
            assert runner.batch_size == 321
        finally:
            runner.close()


def test_the_processors_wait_for_the_clusters_metadata_instead_of_exiting(monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import KafkaError, KafkaException

    import processors.runner as processors_runner
    from hub.engine.retry import Backoff

    asked: list[float] = []

    class SlowCluster:  # times out twice (a broker of three down, the controller electing), then answers
        def __init__(self, conf: dict[str, str]) -> None:
            pass

        def list_topics(self, timeout: float) -> object:
            asked.append(timeout)
            if len(asked) < 3:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get metadata: Local: Timed out"))
            return type("Metadata", (), {"topics": {"juki.resident-changes.v1": None}})()

    monkeypatch.setattr(processors_runner, "AdminClient", SlowCluster)
    backoff = Backoff(initial_s=0.0, max_s=0.0)
    settings = load_settings({"KENSHIN_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert processors_runner.cluster_topics(settings, backoff) == {"juki.resident-changes.v1"}
    assert (len(asked), backoff.failures) == (3, 2)
