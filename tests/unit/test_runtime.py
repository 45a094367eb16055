from pathlib import Path

import pytest

from hub.cli import main
from hub.runtime import kafka, maven
from hub.runtime.errors import StackError

pytestmark = pytest.mark.unit


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maven.shutil, "which", lambda _name: None)
    with pytest.raises(StackError, match="Java is not installed"):
        maven.require_java()
    with pytest.raises(StackError, match=r"Maven \(mvn\) is not installed"):
        maven.require_maven()


def test_stack_up_without_java_prints_an_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KENSHIN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("KENSHIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(maven.shutil, "which", lambda _name: None)
    assert main(["stack", "up"]) == 1
    err = capsys.readouterr().err
    assert "kenshin-hub: error: Java is not installed" in err
    assert "Traceback" not in err


def test_configuration_error_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KENSHIN_BOOTSTRAP", "x")
    assert main(["stack", "status"]) == 2
    assert "Unrecognized settings: KENSHIN_BOOTSTRAP" in capsys.readouterr().err


def test_three_node_cluster_configuration(tmp_path: Path) -> None:
    nodes = kafka.cluster_nodes(tmp_path, size=3, broker_port=29092, controller_port=29192)
    assert [n.bootstrap for n in nodes] == ["127.0.0.1:29092", "127.0.0.1:29093", "127.0.0.1:29094"]
    props = dict(line.split("=", 1) for line in nodes[1].properties().splitlines())
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29192,2@127.0.0.1:29193,3@127.0.0.1:29194"
    assert props["transaction.state.log.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:29093")
    single = dict(
        line.split("=", 1)
        for line in kafka.cluster_nodes(tmp_path, size=1, broker_port=1, controller_port=2)[0].properties().splitlines()
    )
    assert single["offsets.topic.replication.factor"] == "1"
    assert single["auto.create.topics.enable"] == "false"


def test_cluster_id_never_looks_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    # 0xFB... encodes to a leading '-': such ids are drawn again (a real failure: argparse took one for an option).
    draws = iter([uuid.UUID(bytes=b"\xfb" + bytes(15)), uuid.UUID(int=1)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    assert not kafka.new_cluster_id().startswith("-")


def test_cluster_id_format() -> None:
    cid = kafka.new_cluster_id()
    assert len(cid) == 22
    assert "=" not in cid
