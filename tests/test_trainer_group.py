"""Two trainer processes split the model_ids of one group; one is SIGKILLed, the other takes its
partitions over and every window is still published exactly once, each version chaining on the last.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from producers.publisher import EventPublisher
from schemas.events import AdapterUpdate
from schemas.process import Part, PartProcess, start_part
from schemas.storage import MANIFEST_FILE, adapter_prefix, s3_client
from schemas.topics import TopicKey
from tests.test_trainer_fixtures import example, trainer_env

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.slow]

WINDOW = 4
Proc = PartProcess
ROOT = Path(__file__).resolve().parents[1]


def _versions(client, bucket: str, mid: str) -> list[int]:
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"adapters/{mid}/").get("Contents", [])]
    return sorted(int(k.split("/")[2][1:]) for k in keys if k.endswith(MANIFEST_FILE))


def _trained(client, bucket: str, mid: str) -> dict[int, list[str]]:
    """Version -> the example ids it was trained on (its examples.json)."""
    out = {}
    for v in _versions(client, bucket, mid):
        body = client.get_object(Bucket=bucket, Key=adapter_prefix(mid, v) + "examples.json")["Body"].read()
        out[v] = json.loads(body)
    return out


def _wait_trained(client, bucket: str, want: dict[str, int], procs: list[Proc], log: Path) -> None:
    """Until each model's versions together were trained on ``want[model]`` examples."""
    deadline = time.monotonic() + 240
    while any(sum(map(len, _trained(client, bucket, m).values())) < n for m, n in want.items()):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        assert all(p.running() for p in procs), log.read_text()[-3000:]
        time.sleep(0.5)


def _wait_for(client, bucket: str, want: dict[str, int], procs: list[Proc], log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while any(len(_versions(client, bucket, m)) < n for m, n in want.items()):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        assert all(p.running() for p in procs), log.read_text()[-3000:]
        time.sleep(0.5)


def _wait_for_members(bootstrap: str, group: str, n: int, procs: list[Proc], log: Path, timeout: float = 180) -> None:
    """Until the group has ``n`` members that each own partitions (both trainers loaded and joined)."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        assert all(p.running() for p in procs), log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            desc = admin.describe_consumer_groups([group])[group].result(10)
            stable = desc.state == ConsumerGroupState.STABLE and len(desc.members) == n
            if stable and all(m.assignment.topic_partitions for m in desc.members):
                return
        except Exception:  # the group does not exist yet, or the broker is restarting
            pass
        time.sleep(1)


def test_two_trainers_split_models_and_one_is_killed(topics, bucket, model_id, group_id, s3, tmp_path) -> None:
    settings = topics()
    client = s3_client(s3)
    env = trainer_env(
        settings.topic_prefix,
        bucket,
        group_id(),
        s3,
        WINDOW,
        MC_TRAINER_SESSION_TIMEOUT_MS="6000",
        MC_TRAINER_CPUS="all",
    )
    # two model_ids on different partitions: with 6 partitions and 2 members, the range assignor gives
    # partitions 0-2 to one trainer and 3-5 to the other
    by_half: dict[bool, str] = {}
    with EventPublisher(settings) as pub:
        while len(by_half) < 2:
            mid = model_id()
            probe = pub.publish(TopicKey.TRAINING_EXAMPLES, example(mid, 0)).result(30)
            by_half.setdefault(probe.partition < 3, mid)
    # the probes were one example each of some model_ids: only our two models matter below
    models = list(by_half.values())
    sent: dict[str, list[str]] = {m: [] for m in models}

    def publish(windows: int) -> None:
        with EventPublisher(settings) as pub:
            for m in models:
                for i in range(windows * WINDOW):
                    ex = example(m, len(sent[m]) + i + 1)
                    pub.publish(TopicKey.TRAINING_EXAMPLES, ex)
                    sent[m].append(ex.example_id)

    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_part(Part.TRAINER, env=env, log=log, cwd=ROOT) for log in logs]
    try:
        _wait_for_members(settings.kafka_bootstrap, env["MC_TRAINER_GROUP_ID"], 2, procs, logs[0])
        publish(1)  # with each model's probe example: a window of 4 per model, and one example over
        _wait_for(client, bucket, dict.fromkeys(models, 1), procs, logs[0])
        owners = [{m for m in models if f"{m} v1 published" in log.read_text()} for log in logs]
        assert all(owners) and not owners[0] & owners[1], owners  # they split the models
        assert procs[0].kill() == -signal.SIGKILL
        publish(2)  # the survivor takes the dead one's partitions over after its session expires
        # Windows follow the read order and drop what a published version already holds: if the kill
        # came between v1's publication and its offset commit, the survivor re-reads v1's examples and
        # its first window shrinks (to the one example v1 did not hold). So wait for examples, not for
        # a count of versions: the probe and 12 more, of which at most WINDOW - 1 may wait for a window.
        _wait_trained(client, bucket, dict.fromkeys(models, 3 * WINDOW + 1 - (WINDOW - 1)), procs[1:], logs[1])
    finally:
        for proc in procs:
            if proc.running():
                proc.signal(signal.SIGTERM)  # both at once: each may be busy with a window
        for proc in procs:
            proc.stop(120)
    for m in models:
        by_version = _trained(client, bucket, m)
        versions = sorted(by_version)
        assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 3, versions
        for v in versions:
            raw = client.get_object(Bucket=bucket, Key=adapter_prefix(m, v) + MANIFEST_FILE)["Body"].read()
            assert AdapterUpdate.model_validate_json(raw).parent_version == v - 1
        trained = [x for v in versions for x in by_version[v]]
        assert len(trained) == len(set(trained))  # nothing trained twice
        # nothing lost: every example sent is trained, but for a tail shorter than a window
        untrained = [x for x in sent[m] if x not in set(trained)]
        assert len(untrained) < WINDOW and untrained == sent[m][len(sent[m]) - len(untrained) :], untrained
