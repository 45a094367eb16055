"""Who may do what on the cluster: ``topics/access.toml`` as SCRAM users and Kafka ACLs.

The file names one principal per process (per tenant for the city's own processes) with the topics it reads and
writes and the groups it joins. :func:`load_access` checks it against the topic catalog on load; :func:`bindings`
turns it into ACLs (literal topic and group names: nothing is granted by prefix that the file does not name), and
:func:`apply` creates the users and the ACLs through the admin API, idempotently. KRaft's StandardAuthorizer,
with ``allow.everyone.if.no.acl.found=false``, refuses everything else: a principal that is not granted a topic
gets ``TOPIC_AUTHORIZATION_FAILED`` at once, not a timeout.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

# The typed definitions live in these modules (the package re-exports them without declaring it).
from confluent_kafka.admin._acl import AclBinding, AclBindingFilter, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from connectors.policy import network_tenants
from hub.validation import is_valid_tenant_code
from topics import catalog
from topics.catalog import ALL_TOPICS

ADMIN = "admin"
BROKER = "broker"
SCRAM_ITERATIONS = 8192
PROCESSES = ("processors", "sinks", "connector", "staff", "upstream", "chukan", "network")


class AccessError(ValueError):
    """``access.toml`` is not valid."""


@dataclass(frozen=True)
class Grant:
    """What one principal may do."""

    process: str
    name_template: str
    doc: str
    read: tuple[str, ...]
    write: tuple[str, ...]
    groups: tuple[str, ...]
    dead_letters: str | None
    describe_groups: tuple[str, ...] = ()

    def principal(self, tenant: str) -> str:
        return self.name_template.replace("{tenant}", tenant)

    def writes(self) -> tuple[str, ...]:
        """The topics it writes, the dead-letter topics of those it reads included."""
        dlqs = {t.name: t.dlq.name for t in ALL_TOPICS if t.dlq is not None}
        out = list(self.write) + [dlqs[t] for t in self.read if t in dlqs]
        if self.dead_letters:
            out.append(self.dead_letters)
        return tuple(dict.fromkeys(out))


def _strings(where: str, entry: Mapping[str, Any], key: str, topics: set[str] | None) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AccessError(f"{where}.{key} must be a list of names")
    if topics is not None:
        unknown = sorted(set(value) - topics)
        if unknown:
            raise AccessError(f"{where}.{key}: not topics of the catalog: {', '.join(unknown)}")
    if len(set(value)) != len(value):
        raise AccessError(f"{where}.{key} names a topic twice")
    return tuple(value)


def load_access(path: Path | None = None) -> dict[str, Grant]:
    """The grants of ``path`` (default: the packaged ``topics/access.toml``), checked against the catalog."""
    try:
        if path is None:
            text = resources.files("topics").joinpath("access.toml").read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AccessError(f"access.toml: {exc}") from None
    principals = data.get("principals")
    if not isinstance(principals, dict) or not principals:
        raise AccessError("access.toml: no [principals.*] tables")
    topics = {t.name for t in ALL_TOPICS}
    grants: dict[str, Grant] = {}
    names: set[str] = set()
    for process, entry in principals.items():
        where = f"principals.{process}"
        if process not in PROCESSES:
            raise AccessError(f"{where}: not a process of the hub ({', '.join(PROCESSES)})")
        if not isinstance(entry, dict):
            raise AccessError(f"{where} must be a table")
        template = entry.get("name")
        if not isinstance(template, str) or not template or any(c in template for c in ",=; "):
            raise AccessError(f"{where}.name must be a user name without ',', '=', ';' or spaces")
        if template.replace("{tenant}", "") in (ADMIN, BROKER) or template in names:
            raise AccessError(f"{where}.name {template!r} is taken")
        names.add(template)
        dead = entry.get("dead_letters")
        if dead is not None and (not isinstance(dead, str) or dead not in topics):
            raise AccessError(f"{where}.dead_letters must be a topic of the catalog")
        doc = entry.get("doc", "")
        grants[process] = Grant(
            process=process,
            name_template=template,
            doc=doc if isinstance(doc, str) else "",
            read=_strings(where, entry, "read", topics),
            write=_strings(where, entry, "write", topics),
            groups=_strings(where, entry, "groups", None),
            dead_letters=dead,
            describe_groups=_strings(where, entry, "describe_groups", None),
        )
    return grants


def principal_of(process: str, tenant: str, grants: Mapping[str, Grant] | None = None) -> str:
    """The user name ``process`` runs as for ``tenant`` (``admin`` for the operator's tooling)."""
    if process == ADMIN:
        return ADMIN
    grant = (grants if grants is not None else load_access()).get(process)
    if grant is None:
        raise AccessError(f"no principal for process {process!r} in access.toml")
    return grant.principal(tenant)


def bindings(
    tenant: str,
    grants: Mapping[str, Grant] | None = None,
    *,
    network: Iterable[str] = (),
    group_name: Callable[[str], str] = lambda name: name,
) -> list[AclBinding]:
    """The ACLs of every grant for ``tenant``; the shared services' (a name without ``{tenant}``) for ``tenant`` and
    each municipality of ``network``, whose tenant topics they serve. A template of ``catalog.TENANT_SCOPED`` in
    access.toml stands for that municipality's own topic (``{団体コード}.{name}``): each ACL names one topic
    (LITERAL), so a principal of one municipality is never granted another's, and never more of its own than its
    role. ``group_name`` maps group names (tests suffix them).
    """
    for code in (tenant, *network):
        if not is_valid_tenant_code(code):
            raise AccessError(f"{code!r} is not a 団体コード")
    out: dict[tuple[object, ...], AclBinding] = {}
    for grant in (grants if grants is not None else load_access()).values():
        shared = "{tenant}" not in grant.name_template
        for code in dict.fromkeys((tenant, *network)) if shared else (tenant,):
            for b in _grant_bindings(grant, code, group_name):  # a shared service's own topics and groups: once
                out.setdefault((b.restype, b.name, b.principal, b.operation), b)
    return list(out.values())


def topic_for(name: str, tenant: str) -> str:
    """The topic access.toml's ``name`` means for ``tenant``: its tenant topic when ``name`` is a template."""
    return catalog.own(catalog.by_name(name), tenant).name


def _grant_bindings(grant: Grant, tenant: str, group_name: Callable[[str], str]) -> list[AclBinding]:
    user = f"User:{grant.principal(tenant)}"

    def allow(kind: ResourceType, name: str, op: AclOperation) -> AclBinding:
        return AclBinding(kind, name, ResourcePatternType.LITERAL, user, "*", op, AclPermissionType.ALLOW)

    out: list[AclBinding] = []
    for topic in grant.read:
        out.append(allow(ResourceType.TOPIC, topic_for(topic, tenant), AclOperation.READ))
    for topic in grant.writes():
        out.append(allow(ResourceType.TOPIC, topic_for(topic, tenant), AclOperation.WRITE))
        out.append(allow(ResourceType.TOPIC, topic_for(topic, tenant), AclOperation.DESCRIBE))
    for group in grant.groups:
        out.append(allow(ResourceType.GROUP, group_name(group), AclOperation.READ))
    for group in grant.describe_groups:
        out.append(allow(ResourceType.GROUP, group_name(group), AclOperation.DESCRIBE))
    return out


def ensure_users(admin: AdminClient, passwords: Mapping[str, str], timeout_s: float = 30.0) -> None:
    """Create (or reset) the SCRAM-SHA-512 credential of every user of ``passwords``."""
    if not passwords:
        return
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, pw.encode()) for user, pw in sorted(passwords.items())
    ]
    for user, future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            raise AccessError(f"could not set the SCRAM credential of {user}: {exc}") from exc


def grant(admin: AdminClient, tenant: str, users: Mapping[str, str]) -> int:
    """``users`` (principal → password) as SCRAM users, and the ACLs of every grant for ``tenant`` (the shared
    services' for every member of the network, whose tenant topics they serve); the ACL count.
    """
    ensure_users(admin, users)
    return apply(admin, bindings(tenant, network=network_tenants()))


def apply(admin: AdminClient, acls: Sequence[AclBinding], timeout_s: float = 30.0) -> int:
    """Create the ACLs (creating an existing one again is a no-op); the number of bindings."""
    if not acls:
        return 0
    for binding, future in admin.create_acls(list(acls), request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            raise AccessError(f"could not create the ACL {binding}: {exc}") from exc
    return len(acls)


def granted(admin: AdminClient, principal: str, timeout_s: float = 30.0) -> list[AclBinding]:
    """The ACLs the cluster holds for ``principal`` (``User:...``)."""
    flt = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]  # None matches any name (confluent-kafka's stubs say str)
        ResourcePatternType.ANY,
        principal,
        None,  # type: ignore[arg-type]  # any host
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    found: Iterable[AclBinding] = admin.describe_acls(flt, request_timeout=timeout_s).result(timeout=timeout_s)
    return list(found)
