"""The schema registry's gate on a secured local stack: Debian's nginx for TLS and HTTP basic authentication.

Apicurio Registry 2.x authenticates only through an OpenID Connect server, which these machines do not run, so the
registry listens on a loopback port of its own (``registry_backend_port`` in ``stack.json``) and nginx, on the
registry port the clients know, terminates TLS with the stack's server certificate and asks every request for a
user of ``topics/access.toml`` (the same principals and passwords as Kafka's SCRAM users). Reading schemas is open
to every principal; registering, changing configuration and deleting (``POST …/versions``, ``PUT``, ``DELETE``) only
to ``admin``. Schemas hold no personal data; what the gate protects is their integrity (a forged schema would make
every consumer dead-letter), and who may see which topics exist.

The backend port is still reachable from this host's loopback: on a single-machine dev stack, the gate keeps the
network out, not a local user. In docker-compose the registry has no published port at all.

The ``htpasswd`` file uses nginx's ``{SSHA}`` (salted SHA-1) format: the passwords are 256-bit random tokens, so
the hash's speed does not matter; the file is 0600 like every secret of the stack.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

from hub.runtime.errors import StackError
from hub.runtime.pki import Pki, private_dir, write_private


def nginx_binary() -> str:
    """nginx from Debian's package (``.ci/deps`` installs ``nginx-light``)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        raise StackError(
            "nginx is missing: the secured stack puts it in front of the schema registry. Install it with "
            "`make deps` (Debian: apt-get install nginx-light), or run the stack with KENSHIN_STACK_SECURITY=plaintext"
        )
    return found


def ssha(password: str) -> str:
    """``password`` in nginx's ``{SSHA}`` form (salted SHA-1, base64)."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def write_htpasswd(root: Path, users: Mapping[str, str]) -> Path:
    """The gate's users (nginx reads the file at every request: a new tenant's principals count at once)."""
    htpasswd = root / "htpasswd"
    write_private(htpasswd, "".join(f"{user}:{ssha(pw)}\n" for user, pw in sorted(users.items())).encode())
    return htpasswd


def write_config(root: Path, *, port: int, backend_port: int, pki: Pki, users: Mapping[str, str], admin: str) -> Path:
    """Write the gate's ``nginx.conf`` and ``htpasswd`` under ``root``; the configuration file."""
    private_dir(root)
    for sub in ("tmp", "logs"):
        private_dir(root / sub)
    htpasswd = write_htpasswd(root, users)
    # As root, nginx's workers would otherwise run as nobody, who cannot read the 0600 htpasswd.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    conf = render(
        listen=f"127.0.0.1:{port}",
        backend=f"127.0.0.1:{backend_port}",
        cert=pki.server_cert,
        key=pki.server_key,
        htpasswd=htpasswd,
        run_dir=root,
        error_log=root / "logs" / "error.log",
        admin=admin,
        preamble=f"# Written by `kenshin-hub stack up` (hub/runtime/gate.py).\n{user}",
    )
    path = root / "nginx.conf"
    write_private(path, conf.encode())
    return path


def render(
    *,
    listen: str,
    backend: str,
    cert: Path,
    key: Path,
    htpasswd: Path,
    run_dir: Path,
    error_log: Path | str,
    admin: str,
    preamble: str = "",
    temp_dir: Path | None = None,
) -> str:
    """The gate's nginx configuration: TLS and basic auth in front of the registry at ``backend``; writing
    (registering, configuring, deleting) for ``admin`` only. ``run_dir`` holds the pid file, ``temp_dir`` (default
    ``run_dir/tmp``, which must exist) the temp folders.
    """
    temp = temp_dir or run_dir / "tmp"
    return f"""\
{preamble}daemon off;
worker_processes 1;
pid {run_dir / "nginx.pid"};
error_log {error_log} warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    client_max_body_size 4m;
    map $remote_user $kh_admin {{ default 0; "{admin}" 1; }}
    map "$request_method $uri" $kh_write {{
        default 0;
        "~^POST .*/versions(/[^/]*)?$" 1;
        "~^(PUT|DELETE|PATCH) " 1;
    }}
    map "$kh_write$kh_admin" $kh_denied {{ default 0; "10" 1; }}
    server {{
        listen {listen} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        auth_basic "kenshin-hub schema registry";
        auth_basic_user_file {htpasswd};
        location / {{
            if ($kh_denied) {{ return 403; }}
            proxy_pass http://{backend};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


def command(config: Path) -> list[str]:
    return [nginx_binary(), "-p", str(config.parent), "-c", str(config)]
