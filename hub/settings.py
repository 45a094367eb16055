"""Typed, frozen, validated settings bound from ``KENSHIN_*`` environment variables.

This is the only module that knows the environment-variable names. Nothing here runs at import time:
call :func:`load_settings` (usually once, in the CLI composition root) with a mapping, normally
``os.environ``. Unknown ``KENSHIN_*`` keys are errors, as in confluent-kafka's "Unrecognized properties".
Secrets are held in :class:`Secret`, which never prints its value.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, cast, get_args

from hub.validation import is_valid_tenant_code

PREFIX = "KENSHIN_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
# The long-running processes; each serves /metrics and /health/* on its own port (``metrics_<name>_port``).
ProcessName = Literal["processors", "sinks", "connector", "chukan", "network"]
PROCESS_NAMES: tuple[ProcessName, ...] = get_args(ProcessName)


class SettingsError(ValueError):
    """Raised when the environment holds an unknown key or an invalid value."""


@dataclass(frozen=True)
class Secret:
    """A string that is never shown by ``repr``/``str``; call :meth:`reveal` where it is really needed."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kenshin-hub"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kenshin-hub"


def _meta(doc: str, *, secret: bool = False) -> dict[str, Any]:
    return {"doc": doc, "secret": secret}


@dataclass(frozen=True)
class Settings:
    """Every setting of the hub. Field ``foo_bar`` binds to ``KENSHIN_FOO_BAR``."""

    kafka_bootstrap_servers: str = field(
        default="127.0.0.1:9092", metadata=_meta("Kafka bootstrap servers, comma-separated host:port")
    )
    schema_registry_url: str = field(
        default="http://127.0.0.1:8081/apis/ccompat/v7",
        metadata=_meta("Confluent-compatible schema registry URL (Apicurio: .../apis/ccompat/v7)"),
    )
    schema_registry_basic_auth: Secret | None = field(
        default=None, metadata=_meta("Registry basic auth as user:password", secret=True)
    )
    database_url: Secret = field(
        default=Secret("sqlite:///kenshin-hub.db"),
        metadata=_meta("SQLAlchemy database URL (SQLite default, PostgreSQL supported)", secret=True),
    )
    tenant: str = field(default="012041", metadata=_meta("This city's 団体コード (6 digits with check digit)"))
    kafka_security_protocol: SecurityProtocol = field(
        default="PLAINTEXT", metadata=_meta("PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    )
    kafka_sasl_mechanism: SaslMechanism | None = field(
        default=None, metadata=_meta("PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER")
    )
    kafka_sasl_username: str | None = field(default=None, metadata=_meta("SASL user name"))
    kafka_sasl_password: Secret | None = field(default=None, metadata=_meta("SASL password", secret=True))
    kafka_ssl_cafile: Path | None = field(default=None, metadata=_meta("CA certificate file (PEM)"))
    kafka_ssl_certfile: Path | None = field(default=None, metadata=_meta("Client certificate file (PEM)"))
    kafka_ssl_keyfile: Path | None = field(default=None, metadata=_meta("Client private key file (PEM)"))
    kafka_ssl_key_password: Secret | None = field(
        default=None, metadata=_meta("Password of the client private key", secret=True)
    )
    kafka_credentials_dir: Path | None = field(
        default=None,
        metadata=_meta("Folder of <principal>.password files: each process connects to Kafka and the registry as its "
                       "own principal of topics/access.toml (ignored when KENSHIN_KAFKA_SASL_USERNAME is set)"),
    )  # fmt: skip
    kafka_identity: str = field(
        default="admin",
        metadata=_meta("Whose credentials of KENSHIN_KAFKA_CREDENTIALS_DIR the clients use: a process of "
                       "topics/access.toml, or admin (the operator's tooling); `run <process>` sets its own"),
    )  # fmt: skip
    schema_registry_cafile: Path | None = field(
        default=None, metadata=_meta("CA certificate (PEM) the registry's TLS certificate is checked against")
    )
    retention_schedule: Literal["on", "off"] = field(
        default="on",
        metadata=_meta("Daily retention (connectors/data/retention.toml) inside the long-running processes; off: "
                       "only `kenshin-hub retention run` (the test tiers, whose seeded data is old on purpose)"),
    )  # fmt: skip
    stack_security: Literal["sasl_ssl", "plaintext"] = field(
        default="sasl_ssl",
        metadata=_meta("Local stack: sasl_ssl (TLS, SCRAM users, ACLs, registry behind TLS and basic auth) or "
                       "plaintext (no authentication at all: tooling only)"),
    )  # fmt: skip
    state_dir: Path = field(
        default_factory=_default_state_dir,
        metadata=_meta("Local stack state: data, logs, pid files (default ~/.local/state/kenshin-hub)"),
    )
    cache_dir: Path = field(
        default_factory=_default_cache_dir,
        metadata=_meta("Cache of resolved jars, reused across runs (default ~/.cache/kenshin-hub)"),
    )
    stack_kafka_port: int = field(default=9092, metadata=_meta("Local stack: first broker port"))
    stack_controller_port: int = field(default=19093, metadata=_meta("Local stack: first KRaft controller port"))
    stack_registry_port: int = field(default=8081, metadata=_meta("Local stack: schema registry port"))
    stack_kafka_heap: str = field(default="768m", metadata=_meta("Local stack: JVM max heap of each broker"))
    processors_database_url: Secret | None = field(
        default=None,
        metadata=_meta("Processors' state store URL (default: sqlite under KENSHIN_STATE_DIR)", secret=True),
    )
    chukan_database_url: Secret | None = field(
        default=None,
        metadata=_meta("中間サーバー store URL (default: sqlite under KENSHIN_STATE_DIR)", secret=True),
    )
    network_database_url: Secret | None = field(
        default=None,
        metadata=_meta("National-network simulator store URL (default sqlite under KENSHIN_STATE_DIR)", secret=True),
    )
    pii_key_file: Path | None = field(
        default=None,
        metadata=_meta("個人番号 encryption key file (0600; default <KENSHIN_STATE_DIR>/keys/pii.key; see hub/pii.py)"),
    )
    connector_mode: Literal["online", "offline"] = field(
        default="online",
        metadata=_meta("コネクタ: online forwards 副本; offline queues them for `connector export-offline`"),
    )
    connector_move_in_since: str | None = field(
        default=None,
        metadata=_meta("コネクタ: query the previous municipality for 転入 on or after this date (YYYY-MM-DD; "
                       "default: moves of the last recent_days of connector.toml)"),
    )  # fmt: skip
    stream_batch_size: int = field(
        default=2000,
        metadata=_meta(
            "Most messages the processors and the sinks act on in one batch (one SQL transaction); a batch never waits"
            " to fill. The provision services keep small batches for latency"
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = field(default="INFO", metadata=_meta("Log level"))
    metrics_host: str = field(
        default="127.0.0.1",
        metadata=_meta("Address the processes serve /metrics and /health/* on (0.0.0.0 in a container)"),
    )
    metrics_processors_port: int = field(
        default=9401, metadata=_meta("Metrics and health port of `run processors` (0: any free port)")
    )
    metrics_sinks_port: int = field(default=9402, metadata=_meta("Metrics and health port of `run sinks`"))
    metrics_connector_port: int = field(default=9403, metadata=_meta("Metrics and health port of `run connector`"))
    metrics_chukan_port: int = field(default=9404, metadata=_meta("Metrics and health port of `run chukan`"))
    metrics_network_port: int = field(default=9405, metadata=_meta("Metrics and health port of `run network`"))

    def __post_init__(self) -> None:
        if not is_valid_tenant_code(self.tenant):
            raise SettingsError(f"KENSHIN_TENANT={self.tenant!r} is not a valid 団体コード (6 digits, check digit)")
        explicit = self.kafka_sasl_username is not None and self.kafka_sasl_password is not None
        if self.kafka_security_protocol.startswith("SASL") and (
            self.kafka_sasl_mechanism is None or not (explicit or self.kafka_credentials_dir is not None)
        ):
            raise SettingsError(
                f"KENSHIN_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KENSHIN_KAFKA_SASL_MECHANISM, "
                "and KENSHIN_KAFKA_SASL_USERNAME with KENSHIN_KAFKA_SASL_PASSWORD (or KENSHIN_KAFKA_CREDENTIALS_DIR)"
            )
        if self.kafka_credentials_dir is not None and not self.kafka_credentials_dir.is_dir():
            raise SettingsError(f"KENSHIN_KAFKA_CREDENTIALS_DIR={self.kafka_credentials_dir} is not a folder")
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "schema_registry_cafile"):
            path = cast("Path | None", getattr(self, name))
            if path is not None and not path.is_file():
                raise SettingsError(f"{env_name(name)}={path} does not exist or is not a file")
        for name in ("stack_kafka_port", "stack_controller_port", "stack_registry_port"):
            port = cast(int, getattr(self, name))
            if not 1 <= port <= 65535:
                raise SettingsError(f"{env_name(name)}={port} is not a TCP port")
        if self.connector_move_in_since is not None:
            try:
                date.fromisoformat(self.connector_move_in_since)
            except ValueError:
                raise SettingsError(
                    f"KENSHIN_CONNECTOR_MOVE_IN_SINCE={self.connector_move_in_since!r} is not a date (YYYY-MM-DD)"
                ) from None
        seen: dict[int, str] = {}
        for process in PROCESS_NAMES:
            port, name = self.metrics_port(process), env_name(f"metrics_{process}_port")
            if not 0 <= port <= 65535:
                raise SettingsError(f"{name}={port} is not a TCP port (0: any free port)")
            if port and port in seen:
                raise SettingsError(f"{name}={port} is also {seen[port]}: every process needs its own metrics port")
            seen[port] = name
        if not 1 <= self.stream_batch_size <= 100_000:
            raise SettingsError(f"KENSHIN_STREAM_BATCH_SIZE={self.stream_batch_size} must be between 1 and 100000")
        if not re.fullmatch(r"\d+[kmg]", self.stack_kafka_heap):
            raise SettingsError(f"KENSHIN_STACK_KAFKA_HEAP={self.stack_kafka_heap!r} must look like 768m or 1g")

    def metrics_port(self, process: ProcessName) -> int:
        """The port ``process`` serves /metrics and /health/* on (0: any free port)."""
        return cast(int, getattr(self, f"metrics_{process}_port"))

    # --- derived client configurations -------------------------------------------------------------------------

    def processors_url(self) -> str:
        if self.processors_database_url is not None:
            return self.processors_database_url.reveal()
        return f"sqlite:///{self.state_dir / 'processors.db'}"

    def chukan_url(self) -> str:
        if self.chukan_database_url is not None:
            return self.chukan_database_url.reveal()
        return f"sqlite:///{self.state_dir / 'chukan.db'}"

    def network_url(self) -> str:
        if self.network_database_url is not None:
            return self.network_database_url.reveal()
        return f"sqlite:///{self.state_dir / 'network.db'}"

    def kafka_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection properties, secrets included: never log the result."""
        conf: dict[str, str] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        identity = self.sasl_identity()
        if identity is not None:
            conf["sasl.username"], conf["sasl.password"] = identity
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile:
            conf["ssl.certificate.location"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile:
            conf["ssl.key.location"] = str(self.kafka_ssl_keyfile)
        if self.kafka_ssl_key_password:
            conf["ssl.key.password"] = self.kafka_ssl_key_password.reveal()
        return conf

    def sasl_identity(self) -> tuple[str, str] | None:
        """(user, password) the clients authenticate as: the explicit ones, else ``kafka_identity``'s principal and
        its password file in ``kafka_credentials_dir``; None without either.
        """
        if self.kafka_sasl_username:
            password = self.kafka_sasl_password.reveal() if self.kafka_sasl_password else ""
            return self.kafka_sasl_username, password
        if self.kafka_credentials_dir is None:
            return None
        from hub.access import principal_of  # the access file is read only when credentials are in use

        user = principal_of(self.kafka_identity, self.tenant)
        path = self.kafka_credentials_dir / f"{user}.password"
        try:
            return user, path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"no password for {user} in {self.kafka_credentials_dir}: {exc.strerror}") from None

    def as_identity(self, process: str) -> Settings:
        """These settings for clients that run as ``process`` (a principal of topics/access.toml)."""
        return dataclasses.replace(self, kafka_identity=process)

    def schema_registry_config(self) -> dict[str, str]:
        conf = {"url": self.schema_registry_url}
        if self.schema_registry_basic_auth:
            conf["basic.auth.user.info"] = self.schema_registry_basic_auth.reveal()
        elif self.kafka_credentials_dir is not None and self.kafka_sasl_username is None:
            identity = self.sasl_identity()  # the registry gate knows the same principals and passwords
            if identity is not None:
                conf["basic.auth.user.info"] = ":".join(identity)
        if self.schema_registry_cafile:
            conf["ssl.ca.location"] = str(self.schema_registry_cafile)
        return conf

    def describe(self) -> list[tuple[str, str]]:
        """(environment variable, printable value) pairs; secrets are masked."""
        rows = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url":
                shown = mask_url(cast(Secret, value).reveal())
            elif isinstance(value, Secret):
                shown = "********"
            else:
                shown = "" if value is None else str(value)
            rows.append((env_name(f.name), shown))
        return rows


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def mask_url(url: str) -> str:
    """Hide the password of a ``scheme://user:password@host`` URL."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1********@", url)


def _parser_for(annotation: Any) -> Callable[[str], Any]:
    text = str(annotation)
    if text.startswith("Literal"):
        raise AssertionError("literal handled by caller")
    if "Secret" in text:
        return Secret
    if "Path" in text:
        return lambda raw: Path(raw).expanduser()
    if text.startswith("int"):
        return int
    return str


def _literal_choices(annotation: str) -> tuple[str, ...] | None:
    match = re.match(r"(\w+)( \| None)?$", annotation)
    if match and match.group(1) in {"SecurityProtocol", "SaslMechanism"}:
        return cast(tuple[str, ...], get_args(globals()[match.group(1)]))
    lit = re.match(r"Literal\[(.*)\]", annotation)
    if lit:
        return tuple(part.strip().strip("'\"") for part in lit.group(1).split(","))
    return None


def fields_doc() -> list[tuple[str, str, str]]:
    """(variable, default, description) for the README configuration table."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default if f.default is not dataclasses.MISSING else "(see description)"
        if isinstance(default, Secret):
            default = mask_url(default.reveal())
        rows.append((env_name(f.name), "" if default is None else str(default), str(f.metadata["doc"])))
    return rows


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``KENSHIN_*`` keys of ``environ``; unknown keys are errors."""
    by_env = {env_name(f.name): f for f in dataclasses.fields(Settings)}
    unknown = sorted(k for k in environ if k.startswith(PREFIX) and k not in by_env)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(by_env), n=1, cutoff=0.8)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise SettingsError("Unrecognized settings: " + ", ".join(hints))
    values: dict[str, Any] = {}
    for key, f in by_env.items():
        raw = environ.get(key)
        if raw is None or raw == "":
            continue
        annotation = str(f.type)
        choices = _literal_choices(annotation)
        if choices is not None:
            if raw not in choices:
                raise SettingsError(f"{key}={raw!r} is not one of {', '.join(choices)}")
            values[f.name] = raw
            continue
        try:
            values[f.name] = _parser_for(annotation)(raw)
        except ValueError as exc:
            raise SettingsError(f"{key}: invalid value ({exc})") from None
    # With no explicit addresses, the clients follow the local stack: its ports (so KENSHIN_STACK_*_PORT is enough)
    # and, when it is secured, its client profile (TLS CA, SCRAM credentials, the registry gate).
    local_kafka = "kafka_bootstrap_servers" not in values
    local_registry = "schema_registry_url" not in values
    if local_kafka and "stack_kafka_port" in values:
        values["kafka_bootstrap_servers"] = f"127.0.0.1:{values['stack_kafka_port']}"
    if local_registry and "stack_registry_port" in values:
        values["schema_registry_url"] = f"http://127.0.0.1:{values['stack_registry_port']}/apis/ccompat/v7"
    settings = Settings(**values)
    profile = local_profile(settings.state_dir)
    if profile is None:
        return settings
    secured: dict[str, Any] = {}
    if local_kafka and "kafka_security_protocol" not in values:
        secured.update(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_ssl_cafile=profile.ca_file,
        )
        if "kafka_credentials_dir" not in values and "kafka_sasl_username" not in values:
            secured["kafka_credentials_dir"] = profile.credentials_dir
    if local_registry:
        secured["schema_registry_url"] = settings.schema_registry_url.replace("http://", "https://", 1)
        secured.setdefault("schema_registry_cafile", values.get("schema_registry_cafile", profile.ca_file))
        if "kafka_credentials_dir" not in values and "kafka_sasl_username" not in values:
            secured["kafka_credentials_dir"] = profile.credentials_dir
    return dataclasses.replace(settings, **secured) if secured else settings


@dataclass(frozen=True)
class LocalProfile:
    """What a secured local stack tells its clients (``<state dir>/client.json``, written by `stack up`)."""

    ca_file: Path
    credentials_dir: Path


CLIENT_PROFILE = "client.json"


def local_profile(state_dir: Path) -> LocalProfile | None:
    """The client profile of the secured local stack in ``state_dir``; None for a plaintext or absent stack."""
    try:
        data = json.loads((state_dir / CLIENT_PROFILE).read_text(encoding="utf-8"))
        return LocalProfile(Path(data["ca_file"]), Path(data["credentials_dir"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
