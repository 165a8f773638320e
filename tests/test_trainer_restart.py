"""Kill-and-restart: the trainer runs as its own OS process (``python -m trainer``) and is SIGKILLed
at the dangerous points of publication, then restarted; in the end every window is published exactly
once, no version ever names two different adapters, and every offset is committed.

Kills: after v2's manifest (not announced, not committed), after v4's files (no manifest: nothing
ever replaces them, so the restart, whose weights differ, gives the number 4 up and publishes
window 4 as v5), and an outside SIGKILL as soon as v5's manifest shows up in S3. Static group
membership lets each restarted process take its partition back without waiting for the dead one's
session to expire.
The failpoints are installed by a test wrapper (tests/test_trainer_failpoint.py), not by a setting.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
import uuid
from pathlib import Path

import pytest

from producers.consumer import EventConsumer
from producers.publisher import EventPublisher
from schemas.events import AdapterUpdate
from schemas.process import Part, PartProcess, start_part
from schemas.storage import ADAPTER_FILES, MANIFEST_FILE, adapter_prefix, s3_client
from schemas.topics import TopicKey, topic_name
from tests.test_trainer_fixtures import example, patiently, trainer_env

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.slow]

WINDOW, WINDOWS = 4, 5
ROOT = Path(__file__).resolve().parents[1]


def _start(env: dict[str, str], log: Path, *extra: str) -> PartProcess:
    # the failpoint wrapper runs the trainer's own main under another module name
    part = "tests.test_trainer_failpoint" if "MC_TEST_FAILPOINT" in env else Part.TRAINER
    return start_part(part, *extra, env=env, log=log, cwd=ROOT, name="trainer")


def _wait(proc: PartProcess, log: Path, timeout: float = 150) -> int:
    code = proc.wait(timeout)
    if code is None:
        proc.kill()
        pytest.fail(f"the trainer did not finish in {timeout} s; log:\n{log.read_text()[-3000:]}")
    return code


def test_sigkill_at_any_step_publishes_each_window_once(topics, bucket, model_id, group_id, s3, tmp_path) -> None:
    settings = topics()
    mid = model_id()
    client = s3_client(s3)
    env = trainer_env(
        settings.topic_prefix,
        bucket,
        group_id(),
        s3,
        WINDOW,
        MC_TRAINER_GROUP_INSTANCE_ID="trainer-0",
        MC_TRAINER_SESSION_TIMEOUT_MS="10000",
        MC_TRAINER_WORK_DIR=str(tmp_path / "work"),
        MC_TRAINER_STEPS_PER_WINDOW="1",
        MC_TRAINER_CLAIM_WAIT_S="2",
    )
    examples = [example(mid, i) for i in range(WINDOW * WINDOWS)]
    with EventPublisher(settings) as pub:
        for ex in examples:
            pub.publish(TopicKey.TRAINING_EXAMPLES, ex)
    log = tmp_path / "trainer.log"

    # 1: v1 published; dies right after v2's manifest (v2 neither announced nor committed)
    assert _wait(_start({**env, "MC_TEST_FAILPOINT": "after_manifest@2"}, log), log) == -signal.SIGKILL
    # 2: announces v2 on start, skips window 2's examples, publishes v3, dies with v4's files uploaded
    assert _wait(_start({**env, "MC_TEST_FAILPOINT": "after_upload@4"}, log), log) == -signal.SIGKILL
    # 3: retrains window 4 on v3; killed from outside as soon as window 4's manifest exists. Nothing
    # under v4/ is ever replaced: the retrained bytes differ from the debris (another learning rate
    # here: on a quiet CPU a retrain can reproduce the debris byte for byte, which then simply counts
    # as its own upload), so the number 4 is given up and window 4 becomes v5
    proc = _start({**env, "MC_TRAINER_LEARNING_RATE": "0.002"}, log)
    v5 = adapter_prefix(mid, 5) + MANIFEST_FILE
    deadline = time.monotonic() + 150
    while not client.list_objects_v2(Bucket=bucket, Prefix=v5).get("KeyCount"):
        assert proc.running(), log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    assert proc.kill() == -signal.SIGKILL
    # 4: finishes the job and stops when idle
    assert _wait(_start(env, log, "--idle-exit", "8"), log) == 0, log.read_text()[-3000:]

    text = log.read_text()
    assert "failpoint after_manifest at v2" in text and "failpoint after_upload at v4" in text
    assert "v2 is in S3 but was never announced" in text

    # S3: each manifest names the files that are there, parents chain, examples once each
    keys = {
        o["Key"] for p in client.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])
    }
    assert "v4: another writer's files and no manifest: giving the number up" in text
    assert adapter_prefix(mid, 4) + MANIFEST_FILE not in keys  # v4 stays debris that no manifest names
    parents = {1: 0, 2: 1, 3: 2, 5: 3, 6: 5}
    assert not any(k.startswith(adapter_prefix(mid, 7)) for k in keys)
    manifests: dict[int, AdapterUpdate] = {}
    trained: list[str] = []
    for version, parent in parents.items():
        prefix = adapter_prefix(mid, version)
        manifest = AdapterUpdate.model_validate_json(
            client.get_object(Bucket=bucket, Key=prefix + MANIFEST_FILE)["Body"].read()
        )
        assert manifest.parent_version == parent and manifest.window.example_count == WINDOW
        for name in ADAPTER_FILES:
            blob = client.get_object(Bucket=bucket, Key=prefix + name)["Body"].read()
            assert hashlib.sha256(blob).hexdigest() == manifest.files[name], f"v{version}/{name} was overwritten"
        trained += json.loads(client.get_object(Bucket=bucket, Key=prefix + "examples.json")["Body"].read())
        manifests[version] = manifest
    assert sorted(trained) == sorted(ex.example_id for ex in examples), "an example was lost or trained twice"

    # the topic: every version announced, and every announcement of a version is the same adapter
    with EventConsumer(
        TopicKey.ADAPTER_UPDATES, AdapterUpdate, group_id=f"read-{uuid.uuid4().hex}", settings=settings
    ) as consumer:
        announced = [c.event for c in consumer.events(idle_timeout_s=3) if c.event.model_id == mid]
    assert {u.version for u in announced} == set(manifests)
    for update in announced:
        assert update.signature is not None  # announcements are signed; the manifest is the same event unsigned
        assert update.model_copy(update={"signature": None}) == manifests[update.version]

    # every offset of training-examples is committed
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": env["MC_TRAINER_GROUP_ID"]})
    try:
        topic = topic_name(TopicKey.TRAINING_EXAMPLES, settings)
        parts = [TopicPartition(topic, p) for p in probe.list_topics(topic, timeout=10).topics[topic].partitions]
        for tp in patiently(lambda: probe.committed(parts, timeout=10)):
            high = patiently(lambda tp=tp: probe.get_watermark_offsets(tp, timeout=10))[1]
            assert high == 0 or tp.offset == high, f"partition {tp.partition}: committed {tp.offset} of {high}"
    finally:
        probe.close()
