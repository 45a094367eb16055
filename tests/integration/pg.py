"""A throw-away PostgreSQL server for the integration tier.

:func:`temporary_postgres` yields a ``postgresql+psycopg://`` URL of an empty database:

1. with ``KENSHIN_TEST_POSTGRES_URL`` set, a fresh database is created on that server (its user needs CREATEDB)
   and dropped afterwards;
2. otherwise a private cluster is made with the server binaries under ``/usr/lib/postgresql/*/bin`` (or on PATH):
   ``initdb`` in a temporary directory, started on a free loopback port with its unix socket in that directory,
   and stopped and removed at the end. PostgreSQL refuses to run as root, so as root the cluster belongs to the
   ``postgres`` OS user and the binaries run through ``runuser -u postgres --``.
No system service is used or started.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

ENV_URL = "KENSHIN_TEST_POSTGRES_URL"
SUPERUSER = "kenshin"
DATABASE = "kenshin_test"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries and no KENSHIN_TEST_POSTGRES_URL."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found: install the Debian package `postgresql` (.ci/run does) "
        f"or set {ENV_URL} to a server where the user may CREATE DATABASE"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy URL (psycopg.connect does not take the ``+psycopg`` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def _database_on(url: str) -> Iterator[str]:
    name = f"kenshin_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def _private_cluster() -> Iterator[str]:
    bin_dir = _bin_dir()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="kenshin-pg-"))
    data, log_file = base / "data", base / "server.log"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, timeout=120)

    started = False
    try:
        if as_root:
            shutil.chown(base, user="postgres", group="postgres")
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]
        run(*initdb, "--no-locale", "--no-sync")
        port = 0
        for _attempt in range(5):
            port = _free_port()
            options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
            try:
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-o", options, "-w", "start")
            except subprocess.CalledProcessError:
                continue  # most likely the port was taken between the probe and the start
            started = True
            break
        if not started:
            tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise PostgresUnavailable(f"the temporary PostgreSQL cluster did not start:\n{tail}")
        admin = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def temporary_postgres() -> Iterator[str]:
    """A ``postgresql+psycopg://`` URL of an empty database that exists for the duration of the block."""
    url = os.environ.get(ENV_URL)
    if url:
        with _database_on(url) as database_url:
            yield database_url
        return
    with _private_cluster() as database_url:
        yield database_url
