"""The ``kenshin-hub`` command: the composition root that wires settings, clients and components.

Settings are read from the environment here, once, when a command runs — never at import time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from confluent_kafka import KafkaException

from hub.audit import add_parsers as audit_parsers
from hub.corrections import add_parsers as ledger_parsers
from hub.counter import add_parsers as counter_parsers
from hub.errors import CommandError
from hub.institutions import add_parsers as institution_parsers
from hub.notices import add_parsers as notice_parsers
from hub.office import add_parsers as office_parsers
from hub.review import add_parsers as review_parsers
from hub.runtime.errors import StackError
from hub.settings import Settings, SettingsError, load_settings
from schemas.serde import RegistryUnavailable

log = logging.getLogger("kenshin_hub")


def _table(rows: Sequence[dict[str, str]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


# --- stack ---------------------------------------------------------------------------------------------------


def cmd_stack(settings: Settings, args: argparse.Namespace) -> int:
    from hub.runtime.stack import LocalStack

    stack = LocalStack(settings)
    if args.action == "up":
        started = time.monotonic()
        info = stack.up(nodes=args.nodes)
        print(f"stack ready in {time.monotonic() - started:.1f}s")
        print(f"  KENSHIN_KAFKA_BOOTSTRAP_SERVERS={info.bootstrap}")
        print(f"  KENSHIN_SCHEMA_REGISTRY_URL={info.registry_url}")
        return 0
    if args.action == "down":
        stopped = stack.down(purge=args.purge)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        if args.purge:
            print(f"purged state under {settings.state_dir}")
        return 0
    status = stack.status()
    manifest = status["manifest"]
    processes = status["processes"]
    assert isinstance(processes, dict)
    print(f"state directory: {status['state_dir']}")
    if not isinstance(manifest, dict):
        print("no stack has been started here")
        return 1
    print(f"Kafka {manifest.get('kafka_version')} ({manifest.get('nodes')} node(s)): {manifest.get('bootstrap')}")
    print(f"{manifest.get('registry')}: {manifest.get('registry_url')}")
    for name, pid in sorted(processes.items()):
        print(f"  {name:<10} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0 if processes and all(processes.values()) else 1


# --- topics / schemas --------------------------------------------------------------------------------------


def _admin(settings: Settings) -> object:
    from confluent_kafka.admin import AdminClient

    conf: dict[str, str | int | float | bool] = dict(settings.kafka_config())
    conf["socket.timeout.ms"] = 10_000
    conf["log_level"] = 0
    admin = AdminClient(conf)
    try:
        admin.list_topics(timeout=15)
    except Exception as exc:  # noqa: BLE001 - shown to the user as a clear error
        raise CommandError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} ({exc}); is the stack up? "
            "(`kenshin-hub stack up`)"
        ) from None
    return admin


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from topics.admin import apply, listing, network_topics

    admin = _admin(settings)
    topics = network_topics(settings.tenant)  # the city's own tenant topics too, if it is not on the network
    if args.action == "apply":
        changes = apply(admin, topics)  # type: ignore[arg-type]
        print("\n".join(changes) if changes else "topics already match the catalog")
        return 0
    rows = listing(admin, topics)  # type: ignore[arg-type]
    print(_table(rows))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def cmd_schemas(settings: Settings, args: argparse.Namespace) -> int:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    from schemas.registry import check, packaged_schema, register, schemas_from_dir
    from schemas.serde import registry_client

    source = schemas_from_dir(args.schemas_dir) if args.schemas_dir else packaged_schema
    action: Callable[..., list] = register if args.action == "register" else check  # type: ignore[type-arg]
    try:
        with registry_client(settings.schema_registry_config()) as client:
            results = action(client, source=source)
    except (SchemaRegistryError, OSError) as exc:
        raise CommandError(f"schema registry at {settings.schema_registry_url}: {exc}") from None
    except Exception as exc:
        if "Connection" in type(exc).__name__ or "connect" in str(exc).lower():
            raise CommandError(
                f"cannot reach the schema registry at {settings.schema_registry_url}; is the stack up?"
            ) from None
        raise
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.subject}: {r.detail}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} subject(s) failed", file=sys.stderr)
        return 1
    return 0


def cmd_setup(settings: Settings, args: argparse.Namespace) -> int:
    """Topics and schemas in one idempotent step (what a deployment runs before the processes start)."""
    topics_rc = cmd_topics(settings, argparse.Namespace(action="apply"))
    schemas_rc = cmd_schemas(settings, argparse.Namespace(action="register", schemas_dir=None))
    from hub.runtime.stack import grant_local_tenant

    acls = grant_local_tenant(settings, settings.tenant)
    if acls is not None:
        print(f"access: {acls} ACLs for tenant {settings.tenant}")
    return topics_rc or schemas_rc


def cmd_access(settings: Settings, args: argparse.Namespace) -> int:
    """topics/access.toml on a cluster the operator runs: each principal of the city's tenant as a SCRAM user, with
    its password from ``KENSHIN_KAFKA_CREDENTIALS_DIR``, and the ACLs of every principal (the shared services' for
    every body of the network). The local stack does this itself; docker-compose's ``hub-init`` runs it.
    """
    from hub import access
    from hub.runtime.pki import Passwords

    if settings.kafka_credentials_dir is None:
        raise CommandError("`access apply` needs KENSHIN_KAFKA_CREDENTIALS_DIR: the principals' password files")
    passwords = Passwords(settings.kafka_credentials_dir)
    users: dict[str, str] = {}
    for grant in access.load_access().values():
        user = grant.principal(settings.tenant)
        try:
            users[user] = passwords.read(user)
        except OSError:
            raise CommandError(f"no password for {user} in {settings.kafka_credentials_dir}") from None
    count = access.grant(_admin(settings), settings.tenant, users)  # type: ignore[arg-type]
    print(f"access: {len(users)} principals and {count} ACLs for tenant {settings.tenant}")
    return 0


def cmd_compose(settings: Settings, args: argparse.Namespace) -> int:
    from hub.runtime.compose import write

    files = write(Path(args.dir), Path(args.data), settings.tenant, Path(".env"))
    print(f"compose: TLS, passwords and configuration for tenant {settings.tenant} in {files.root}/ and the data "
          f"folders in {files.data}/ (0600 files, 0700 folders); .env: the containers' user and the database's and "
          "Grafana's passwords. Then: docker compose up -d")  # fmt: skip
    return 0


def _on_local_stack(settings: Settings, args: argparse.Namespace) -> tuple[int, Settings]:
    """`stack up`, then `setup`, with the settings loaded again in between: a secured stack's client profile (its
    TLS CA and credentials) exists only once it is up, and the settings loaded before it would still be plaintext.
    """
    rc = cmd_stack(settings, argparse.Namespace(action="up", nodes=1))
    if rc:
        return rc, settings
    settings = load_settings(os.environ)
    return cmd_setup(settings, args), settings


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from hub.demo import cmd_demo as demo

    rc, settings = _on_local_stack(settings, args)
    if rc:
        return rc
    return demo(settings, args, lambda: 0, lambda year: _start_year(settings, year))


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "serde":
        from schemas.bench import format_figures, serde_benchmark

        print(format_figures(serde_benchmark(args.messages), args.messages))
        return 0
    if args.action == "runtime":
        from hub.bench_runtime import main as runtime_main

        argv = ["--messages", str(args.messages), "--rounds", str(args.rounds)]
        return runtime_main([*argv, "--report", str(args.report)] if args.report else argv)
    rc, settings = _on_local_stack(settings, args)
    if rc:
        return rc
    if args.action == "provision":
        from hub.bench_provision import cmd_bench_provision

        return cmd_bench_provision(settings, args, lambda: 0)
    from hub.bench import cmd_bench_ingest as bench

    return bench(settings, args, lambda: 0)


PROVISION_PROCESSES = ("connector", "chukan", "network")
PROCESSES = ("processors", "sinks", *PROVISION_PROCESSES)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Start a long-running process (processors, sinks, connector, chukan, network), or all five (supervised).

    Each connects as its own principal of topics/access.toml (when the settings carry per-principal credentials).
    """
    if args.what != "all":
        settings = settings.as_identity(args.what)
    if args.what == "processors":
        from processors.runner import run_processors

        return run_processors(settings)
    if args.what == "sinks":
        from sinks.runner import run_sinks

        return run_sinks(settings)
    if args.what in PROVISION_PROCESSES:
        from connectors.runner import run_service

        return run_service(settings, args.what)
    return _run_all(settings)


def _run_all(settings: Settings) -> int:
    """All five as supervised children, logging to ``<state>/logs/<what>.log``, until SIGTERM/SIGHUP (exit 0),
    Ctrl-C (130), or one of them exits: then its log's tail, the others stopped, one error line, exit 1.
    """
    from hub.supervise import Child, Stopped, Supervisor, hub_command

    def started(child: Child) -> None:
        print(f"{child.name}: pid {child.pid}, log {child.log}", flush=True)

    commands = {what: hub_command(what) for what in PROCESSES}
    try:
        with Supervisor(commands, log_dir=settings.state_dir / "logs", on_start=started) as children:
            children.wait()
    except Stopped as stopped:
        print(f"{stopped}: stopped all {len(PROCESSES)} processes", flush=True)
    return 0


def cmd_fiscal_year(settings: Settings, args: argparse.Namespace) -> int:
    """`fiscal-year start`: needs a login with the health role; recorded (FISCAL_YEAR_START) with its outcome."""
    from hub.office import office
    from hub.review import staff_operation
    from schemas.models import StaffOperationType

    operation = StaffOperationType.FISCAL_YEAR_START
    with office(settings) as o, staff_operation(o, "health", operation, f"fiscal year {args.year}"):
        _start_year(settings, args.year)
    return 0


def _start_year(settings: Settings, year: int) -> None:
    """年度開始: one command per partition, so every partition's residents get their notices."""
    from confluent_kafka import Producer

    from hub.kafka import producer_config
    from hub.scenario import year_start_commands
    from schemas.models import HubCommand
    from schemas.serde import TopicSerde, registry_client
    from topics.catalog import HUB_COMMANDS

    with registry_client(settings.schema_registry_config()) as registry:
        serde: TopicSerde[HubCommand] = TopicSerde(HUB_COMMANDS, registry)
        producer = Producer(producer_config(settings))
        for command in year_start_commands(settings.tenant, year, "kenshin-hub.cli"):
            producer.produce(
                HUB_COMMANDS.name, key=serde.key(command), value=serde.value(command), partition=command.partition
            )
        if producer.flush(30):
            raise CommandError("the fiscal-year command was not delivered")
    print(f"fiscal year {year} started for {settings.tenant} ({HUB_COMMANDS.partitions} partitions)")


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    from hub.settings import fields_doc

    if args.action == "show":
        for name, value in settings.describe():
            print(f"{name}={value}")
    else:
        print("| variable | default | meaning |\n|---|---|---|")
        for name, default, doc in fields_doc():
            print(f"| `{name}` | `{default}` | {doc} |" if default else f"| `{name}` | | {doc} |")
    return 0


def demo_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="THE MAIN JOB: local stack, topics, schemas, a synthetic city's year, summary")
    demo.add_argument("--size", type=int, default=10_000, help="residents (default 10000)")
    demo.add_argument("--seed", type=int, default=2025)
    demo.add_argument("--year", type=int, default=2025, help="fiscal year")
    demo.add_argument("--dirty", type=float, default=0.05, help="share of dirty results (default 0.05)")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="action", required=True)
    ingest = bench_sub.add_parser("ingest", help="events/s publish → SQL, against a raw passthrough, same run")
    ingest.add_argument("--size", type=int, default=5_000, help="residents of the synthetic city")
    ingest.add_argument("--seed", type=int, default=1)
    ingest.add_argument("--report", type=Path, default=Path("BENCHMARKS.md"), help="append the figures here")
    ingest.add_argument("--profile", type=Path, default=None, help="py-spy both processes, raw stacks into this dir")
    provision = bench_sub.add_parser(
        "provision", help="a provision's latency at a steady request rate during an ingest"
    )
    provision.add_argument("--rate", type=float, default=50.0, help="provision requests per second (default 50)")
    provision.add_argument("--seconds", type=float, default=60.0, help="how long the requests go on (default 60)")
    provision.add_argument(
        "--size", type=int, default=3_000, help="residents of the background ingest's synthetic city"
    )
    provision.add_argument("--provider-size", type=int, default=1_000, help="residents of the providing city")
    provision.add_argument("--seed", type=int, default=1)
    provision.add_argument("--report", type=Path, default=None, help="append the figures here (Markdown)")
    provision.add_argument("--profile", type=Path, default=None, help="py-spy the 中間サーバー, network and connector")
    serde = bench_sub.add_parser("serde", help="the hub's Avro serde against confluent-kafka's wrappers, same records")
    serde.add_argument("--messages", type=int, default=20_000)
    runtime = bench_sub.add_parser("runtime", help="the hub runtime against Quix Streams (own venv), same broker")
    runtime.add_argument("--messages", type=int, default=100_000)
    runtime.add_argument("--rounds", type=int, default=3)
    runtime.add_argument("--report", type=Path, default=None, help="append the figures here")
    bench.set_defaults(func=cmd_bench)


# --- parser --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kenshin-hub",
        description="Kafka integration hub for municipal cancer screening (がん検診). Settings: KENSHIN_* variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="local Kafka + schema registry without Docker")
    stack_sub = stack.add_subparsers(dest="action", required=True)
    up = stack_sub.add_parser("up", help="resolve jars (cached), start Kafka (KRaft) and the registry; idempotent")
    up.add_argument("--nodes", type=int, default=1, help="number of Kafka nodes (3 for fault tests)")
    down = stack_sub.add_parser("down", help="stop what `up` started")
    down.add_argument("--purge", action="store_true", help="also delete the stack's data and logs")
    stack_sub.add_parser("status", help="print the addresses and process states")
    stack.set_defaults(func=cmd_stack)

    topics = sub.add_parser("topics", help="the topic catalog")
    topics_sub = topics.add_subparsers(dest="action", required=True)
    topics_sub.add_parser("apply", help="create or update the catalog's topics (idempotent)")
    topics_sub.add_parser("list", help="the catalog against the cluster")
    topics.set_defaults(func=cmd_topics)

    schemas = sub.add_parser("schemas", help="the Avro contracts in the schema registry")
    schemas_sub = schemas.add_subparsers(dest="action", required=True)
    for name, text in (
        ("register", "register every topic's value schema (BACKWARD)"),
        ("check", "exit non-zero if a schema is not BACKWARD compatible with the registry"),
    ):
        p = schemas_sub.add_parser(name, help=text)
        p.add_argument("--schemas-dir", type=Path, default=None, help="read .avsc files from here instead")
    schemas.set_defaults(func=cmd_schemas)

    demo_parsers(sub)

    run = sub.add_parser("run", help="run the long-running processes: all, or one of them (until stopped)")
    run.add_argument("what", nargs="?", choices=["all", *PROCESSES], default="all")
    run.set_defaults(func=cmd_run)

    fy = sub.add_parser("fiscal-year", help="年度開始: invitations and carry-over notices for the year")
    fy_sub = fy.add_subparsers(dest="action", required=True)
    fy_start = fy_sub.add_parser("start", help="start a fiscal year (April–March); needs a health-role login")
    fy_start.add_argument("year", type=int, help="the fiscal year, e.g. 2025 for 令和7年度")
    fy.set_defaults(func=cmd_fiscal_year)

    setup = sub.add_parser("setup", help="topics apply + schemas register (idempotent)")
    setup.set_defaults(func=cmd_setup)

    acl = sub.add_parser("access", help="topics/access.toml as SCRAM users and ACLs on a cluster you operate")
    acl_sub = acl.add_subparsers(dest="action", required=True)
    acl_sub.add_parser("apply", help="the city's principals (passwords from KENSHIN_KAFKA_CREDENTIALS_DIR) and ACLs")
    acl.set_defaults(func=cmd_access)

    compose = sub.add_parser("compose", help="the secured docker-compose stack's TLS, passwords and configuration")
    compose_sub = compose.add_subparsers(dest="action", required=True)
    init = compose_sub.add_parser("init", help="write them (idempotent: existing keys and passwords are kept)")
    init.add_argument("--dir", default="compose-secrets", help="where (default: ./compose-secrets)")
    init.add_argument("--data", default="compose-data", help="the data folders (default: ./compose-data)")
    compose.set_defaults(func=cmd_compose)

    office_parsers(sub)
    counter_parsers(sub)
    notice_parsers(sub)
    institution_parsers(sub)
    ledger_parsers(sub)
    audit_parsers(sub)
    review_parsers(sub)

    config = sub.add_parser("config", help="settings")
    config_sub = config.add_subparsers(dest="action", required=True)
    config_sub.add_parser("show", help="print the effective settings (secrets masked)")
    config_sub.add_parser("doc", help="print the settings as a Markdown table")
    config.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything the hub and the stack it starts create (SQLite stores, logs, Kafka segments, sessions, keys) holds
    # personal data or secrets: owner-only, 0600 files and 0700 folders, whatever the caller's umask.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"kenshin-hub: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(settings, args))
    except SettingsError as exc:  # found late, e.g. a process's password file is missing
        print(f"kenshin-hub: configuration error: {exc}", file=sys.stderr)
        return 2
    except (StackError, CommandError) as exc:
        print(f"kenshin-hub: error: {exc}", file=sys.stderr)
        return 1
    except (RegistryUnavailable, KafkaException) as exc:  # an outage, not the command's fault
        print(f"kenshin-hub: error: the schema registry or the broker did not answer ({exc}); what the command "
              "recorded in SQL stays: run the command again once they are back", file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kenshin-hub errors list | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
