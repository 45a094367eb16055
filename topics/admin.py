"""`kenshin-hub topics apply | list`: make the cluster match the catalog, idempotently, through the admin client."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.cimpl import NewPartitions, NewTopic

from topics.catalog import TopicSpec, cluster_topics

TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Plan:
    """What a topic needs on this cluster, after lowering replication to the broker count."""

    topic: TopicSpec
    replication_factor: int
    min_insync_replicas: int

    def configs(self) -> dict[str, str]:
        conf = self.topic.configs()
        conf["min.insync.replicas"] = str(self.min_insync_replicas)
        return conf


@dataclass(frozen=True)
class TopicState:
    name: str
    exists: bool
    partitions: int | None
    replication_factor: int | None
    configs: dict[str, str]


def plan_for(topic: TopicSpec, brokers: int) -> Plan:
    rf = min(topic.replication_factor, brokers)
    return Plan(topic=topic, replication_factor=rf, min_insync_replicas=min(topic.min_insync_replicas, max(rf - 1, 1)))


def _broker_count(admin: AdminClient) -> int:
    return len(admin.list_topics(timeout=TIMEOUT_S).brokers)


def network_topics(*tenants: str) -> tuple[TopicSpec, ...]:
    """The cluster's topics: the hub's own, and the tenant topics of every municipality of the simulated network
    (``connectors/data/network.toml``, whose 中間サーバー this cluster carries) and of ``tenants`` (the city's own).
    """
    from connectors.policy import network_tenants

    return cluster_topics({*network_tenants(), *tenants})


def describe(admin: AdminClient, topics: Iterable[TopicSpec] | None = None) -> list[TopicState]:
    metadata = admin.list_topics(timeout=TIMEOUT_S).topics
    wanted = list(topics) if topics is not None else list(network_topics())
    existing = [t for t in wanted if t.name in metadata and metadata[t.name].error is None]
    configs = _configs(admin, [t.name for t in existing])
    states = []
    for topic in wanted:
        meta = metadata.get(topic.name)
        if meta is None or meta.error is not None:
            states.append(TopicState(topic.name, False, None, None, {}))
            continue
        rf = min((len(p.replicas) for p in meta.partitions.values()), default=0)
        states.append(TopicState(topic.name, True, len(meta.partitions), rf, configs.get(topic.name, {})))
    return states


def _configs(admin: AdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """The topics' configurations. A topic just created may be unknown for a moment to the broker that is asked
    (on a cluster, metadata reaches each broker in its own time: a 3-node test failed on it): asked again, bounded.
    """
    configs: dict[str, dict[str, str]] = {}
    pending = list(names)
    deadline = time.monotonic() + TIMEOUT_S
    while pending:
        futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in pending])
        unknown: list[str] = []
        for resource, future in futures.items():
            try:
                entries: dict[str, Any] = future.result(timeout=TIMEOUT_S)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() >= deadline:
                    raise
                unknown.append(resource.name)
                continue
            configs[resource.name] = {k: str(v.value) for k, v in entries.items()}
        pending = unknown
        if pending:
            time.sleep(0.2)
    return configs


def _await_metadata(admin: AdminClient, names: set[str]) -> None:
    """Wait (bounded) until the metadata shows the new topics with leaders, so callers can produce.

    The answer comes from the one broker librdkafka asks: on a cluster another broker's copy of the KRaft metadata
    may still lag behind for a moment (a client asking it sees the topic a little later; producers retry).
    """
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=TIMEOUT_S).topics
        ready = {
            n
            for n in names
            if n in metadata
            and metadata[n].error is None
            and metadata[n].partitions
            and all(p.leader >= 0 for p in metadata[n].partitions.values())
        }
        if ready == names:
            return
        time.sleep(0.2)
    raise TimeoutError(f"topics not visible after {TIMEOUT_S:.0f}s: {sorted(names)}")


def apply(admin: AdminClient, topics: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create missing topics, add partitions, align configs; return one line per change (empty when none)."""
    wanted = list(topics) if topics is not None else list(network_topics())
    brokers = _broker_count(admin)
    plans = {t.name: plan_for(t, brokers) for t in wanted}
    states = {s.name: s for s in describe(admin, wanted)}
    changes: list[str] = []
    changed: list[str] = []

    missing = [plans[t.name] for t in wanted if not states[t.name].exists]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    p.topic.name,
                    num_partitions=p.topic.partitions,
                    replication_factor=p.replication_factor,
                    config=p.configs(),
                )
                for p in missing
            ],
            operation_timeout=TIMEOUT_S,
            request_timeout=TIMEOUT_S,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=TIMEOUT_S)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
            p = plans[name]
            changes.append(f"created {name} ({p.topic.partitions} partitions, replication {p.replication_factor})")
        _await_metadata(admin, {p.topic.name for p in missing})

    for topic in wanted:
        state = states[topic.name]
        if not state.exists:
            continue
        plan = plans[topic.name]
        if state.partitions is not None and state.partitions < topic.partitions:
            admin.create_partitions([NewPartitions(topic.name, topic.partitions)])[topic.name].result(timeout=TIMEOUT_S)
            changes.append(f"{topic.name}: partitions {state.partitions} -> {topic.partitions}")
            changed.append(topic.name)
        elif state.partitions is not None and state.partitions > topic.partitions:
            changes.append(
                f"{topic.name}: WARNING has {state.partitions} partitions, catalog says {topic.partitions} "
                "(Kafka cannot remove partitions; left as is)"
            )
        drift = {k: v for k, v in plan.configs().items() if state.configs.get(k) != v}
        if drift:
            resource = ConfigResource(
                ConfigResource.Type.TOPIC,
                topic.name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()
                ],
            )
            for future in admin.incremental_alter_configs([resource]).values():
                future.result(timeout=TIMEOUT_S)
            changes.append(
                f"{topic.name}: " + ", ".join(f"{k} {state.configs.get(k)} -> {v}" for k, v in sorted(drift.items()))
            )
            if topic.name not in changed:
                changed.append(topic.name)
        if state.replication_factor is not None and state.replication_factor != plan.replication_factor:
            changes.append(
                f"{topic.name}: WARNING replication {state.replication_factor}, wanted {plan.replication_factor} "
                "(reassign partitions to change it)"
            )
    _await_applied(admin, [plans[n] for n in changed])
    return changes


def _shows(state: TopicState, plan: Plan) -> bool:
    return (
        state.exists
        and (state.partitions or 0) >= plan.topic.partitions
        and all(state.configs.get(k) == v for k, v in plan.configs().items())
    )


def _await_applied(admin: AdminClient, plans: list[Plan]) -> None:
    """Wait (bounded) until describes show the partitions and configs just set, so `apply` then `list` agree.

    KRaft acknowledges a change once the controller has committed it; the broker that answers a describe applies
    the record in its own time, and CI once read the old `retention.ms` right after an apply.
    """
    deadline = time.monotonic() + TIMEOUT_S
    pending = plans
    while pending:
        states = {s.name: s for s in describe(admin, [p.topic for p in pending])}
        pending = [p for p in pending if not _shows(states[p.topic.name], p)]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"the cluster does not show the changes after {TIMEOUT_S:.0f}s: {sorted(p.topic.name for p in pending)}"
            )
        time.sleep(0.2)


def listing(admin: AdminClient, topics: Iterable[TopicSpec] | None = None) -> list[dict[str, str]]:
    """One row per catalog topic: declared figures against the cluster's."""
    wanted = list(topics) if topics is not None else list(network_topics())
    brokers = _broker_count(admin)
    rows = []
    for topic, state in zip(wanted, describe(admin, wanted), strict=True):
        plan = plan_for(topic, brokers)
        if not state.exists:
            status = "missing"
        elif (
            state.partitions != topic.partitions
            or state.replication_factor != plan.replication_factor
            or any(state.configs.get(k) != v for k, v in plan.configs().items())
        ):
            status = "differs"
        else:
            status = "ok"
        retention = "forever" if topic.cleanup_policy == "compact" else f"{topic.retention_ms // 86_400_000}d"
        rows.append(
            {
                "topic": topic.name,
                "value": topic.value_format,
                "key": "+".join(topic.key_fields),
                "partitions": f"{state.partitions if state.exists else '-'}/{topic.partitions}",
                "replication": f"{state.replication_factor if state.exists else '-'}/{plan.replication_factor}",
                "cleanup": topic.cleanup_policy,
                "retention": retention,
                "min_isr": str(plan.min_insync_replicas),
                "status": status,
            }
        )
    return rows
