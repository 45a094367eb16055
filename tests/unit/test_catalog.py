import pytest

from tests import samples
from topics.admin import plan_for
from topics.catalog import ALL_TOPICS, LEDGER_ENTRIES, PRIMARY_TOPICS, RESIDENTS, by_name

pytestmark = pytest.mark.unit


def test_topic_names_are_unique_and_versioned() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert all(n.endswith(".v1") for n in names)


def test_every_consumed_input_has_a_dead_letter_topic() -> None:
    for name in ("juki.resident-changes.v1", "institution.results.v1", "network.provision-requests.v1"):
        dlq = by_name(name).dlq
        assert dlq is not None
        assert dlq.name == name.replace(".v1", ".dlq.v1")
        assert dlq in ALL_TOPICS


def test_state_topics_are_compacted() -> None:
    assert RESIDENTS.cleanup_policy == "compact"
    assert LEDGER_ENTRIES.cleanup_policy == "compact"
    assert "retention.ms" not in RESIDENTS.configs()


def test_keys_start_with_the_tenant_and_follow_the_person() -> None:
    for event in samples.every_event():
        for topic in [t for t in PRIMARY_TOPICS if t.value_type is type(event)]:
            key = topic.key_of(event)
            assert key.split(":")[0] in {samples.TENANT, "011002"}, topic.name
    entry = next(e for e in samples.every_event() if type(e) is LEDGER_ENTRIES.value_type)
    assert LEDGER_ENTRIES.key_of(entry) == "012041:0000123456:STOMACH:2026"


@pytest.mark.parametrize(("brokers", "rf", "isr"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)])
def test_replication_is_lowered_to_what_the_cluster_holds(brokers: int, rf: int, isr: int) -> None:
    plan = plan_for(RESIDENTS, brokers)
    assert (plan.replication_factor, plan.min_insync_replicas) == (rf, isr)
    assert plan.configs()["min.insync.replicas"] == str(isr)
