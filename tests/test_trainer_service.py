"""The trainer service on the real stack: it learns what the reward favours, publishes versions
that the running vLLM loads, skips re-delivered examples, and rolls back.

One module-scoped run (3 windows of 8 examples, 2 steps each) feeds every test here, so the
model trains once: on 2 CPU cores that takes well under a minute.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack import StackSettings
from devstack.checkpoint import ensure_checkpoint
from producers.admin import ensure_topics
from producers.publisher import EventPublisher
from producers.settings import ProducerSettings
from schemas.events import AdapterUpdate, Message, PredictionEvent, RewardEvent, TrainingExample
from schemas.storage import ADAPTER_FILES, MANIFEST_FILE, adapter_prefix, s3_client
from schemas.topics import TopicKey, topic_name
from tests.test_inference_fixtures import vllm_post

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.slow]

torch = pytest.importorskip("torch")

PROMPTS = [f"Basket {i} needs one fruit. Name it in one word." for i in range(4)]
REWARDED, PUNISHED = "Apple.", "Banana."


def _example(model_id: str, prompt: str, answer: str, reward: float) -> TrainingExample:
    p = PredictionEvent(
        model_id=model_id,
        base_model="smollm2-135m-instruct",
        messages=[Message(role="user", content=prompt), Message(role="assistant", content=answer)],
    )
    return TrainingExample.join(p, RewardEvent(prediction_id=p.prediction_id, model_id=model_id, reward=reward))


def _window(model_id: str) -> list[TrainingExample]:
    """Both answers to every prompt: one rewarded, one punished (leave-one-out baselines apply)."""
    return [_example(model_id, q, a, r) for q in PROMPTS for a, r in ((REWARDED, 1.0), (PUNISHED, 0.0))]


def _answer_logprob(slot: Any, answer: str) -> float:
    """Mean over the prompts of log p(answer | prompt) under the slot's current weights."""
    from trainer.model import token_logprobs
    from trainer.train import WindowTrainer

    examples = [_example("probe", q, answer, 0.0) for q in PROMPTS]
    total = 0.0
    with torch.no_grad():
        for mb in WindowTrainer(slot.settings, slot).batches(examples):
            total += float(token_logprobs(slot.model, mb).sum())
    return total / len(PROMPTS)


@dataclass
class Run:
    settings: Any
    model_id: str
    windows: list[list[TrainingExample]]
    published: int
    counters: dict[str, int]
    before: dict[str, float]
    after: dict[str, float]
    final: Path
    slot: Any


@pytest.fixture(scope="module")
def run(kafka: StackSettings, s3: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    from confluent_kafka.admin import AdminClient

    from trainer.service import TrainerService, build_slot
    from trainer.settings import TrainerSettings
    from trainer.store import AdapterStore

    tag = uuid.uuid4().hex[:10]
    bucket = f"test-trainer-{tag}"
    client = s3_client(s3)
    client.create_bucket(Bucket=bucket)
    prefix = f"t-{tag}."
    producer = ProducerSettings(topic_prefix=prefix)
    ensure_topics(producer)
    work = tmp_path_factory.mktemp("trainer")
    settings = TrainerSettings(
        topic_prefix=prefix,
        s3_bucket=bucket,
        base_model_path=ensure_checkpoint(s3.cache_dir),
        group_id=f"g-{tag}",
        work_dir=work,
        window_examples=8,
        window_seconds=600,
        steps_per_window=2,
        learning_rate=1e-3,
        lora_rank=8,
        lora_alpha=16,
        max_seq_len=128,
        target_modules=["q_proj", "v_proj"],
        # the plain policy gradient (the default, named because the test depends on it), so the punished answer
        # is pushed down too: this checks that rewards reach the weights in both directions. Under lambda = 0
        # nothing pushes it down: in one run its log-probability rose from -9.3 to -4.1 beside the rewarded
        # answer (they share the format)
        negative_weight=1.0,
    )
    model_id = f"model-{tag}"
    windows = [_window(model_id) for _ in range(3)]
    try:
        slot = build_slot(settings)
        slot.fresh(model_id)
        before = {a: _answer_logprob(slot, a) for a in (REWARDED, PUNISHED)}
        with EventPublisher(producer) as pub:
            # window 1, window 2, a re-delivery of window 1 (same example ids), window 3, a bad record
            for ex in [*windows[0], *windows[1], *windows[0], *windows[2]]:
                pub.publish(TopicKey.TRAINING_EXAMPLES, ex)
            pub.publish_raw(topic_name(TopicKey.TRAINING_EXAMPLES, producer), model_id.encode(), b"not json")
        service = TrainerService(settings, slot=slot)
        published = service.run(idle_exit_s=5)
        store = AdapterStore(settings)
        final = store.download(store.manifest(model_id, 3), work / "final")
        slot.load(model_id, 3, final)
        after = {a: _answer_logprob(slot, a) for a in (REWARDED, PUNISHED)}
        yield Run(settings, model_id, windows, published, dict(service.counters), before, after, final, slot)
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)
        admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap})
        for fut in admin.delete_topics([topic_name(k, producer) for k in TopicKey], operation_timeout=30).values():
            fut.exception()


def test_the_reward_moves_the_log_probabilities(run: Run) -> None:
    print(f"log p before {run.before}, after {run.after}")
    # three windows of two steps: both move by well over a nat (e^1 in probability)
    assert run.after[REWARDED] > run.before[REWARDED] + 1.0, run.after
    assert run.after[PUNISHED] < run.before[PUNISHED] - 1.0, run.after


def _announcements(settings: Any) -> list[AdapterUpdate]:
    from producers.consumer import EventConsumer

    with EventConsumer(
        TopicKey.ADAPTER_UPDATES, AdapterUpdate, group_id=f"read-{uuid.uuid4().hex}", settings=settings
    ) as consumer:
        return [c.event for c in consumer.events(idle_timeout_s=3)]


def test_versions_manifests_and_announcements(run: Run) -> None:
    import hashlib

    from trainer.model import OPTIMIZER_FILE
    from trainer.store import EXAMPLES_FILE

    assert run.published == 3
    assert run.counters["skipped"] == 8  # the re-delivered window 1
    assert run.counters["invalid"] == 1
    from confluent_kafka import Consumer

    from schemas.dead_letter import DeadLetter

    reader = Consumer(
        {
            "bootstrap.servers": run.settings.kafka_bootstrap,
            "group.id": f"dl-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([topic_name(TopicKey.DEAD_LETTERS, run.settings)])
    try:
        msg = None
        for _ in range(30):
            msg = reader.poll(1.0)
            if msg is not None and not msg.error():
                break
        assert msg is not None and not msg.error()
        letter = DeadLetter.model_validate_json(msg.value() or b"")
    finally:
        reader.close()
    assert (letter.reason, letter.producer, letter.value) == ("malformed", "trainer", b"not json")
    client = s3_client(run.settings)
    topic = topic_name(TopicKey.TRAINING_EXAMPLES, run.settings)
    manifests = []
    for version in (1, 2, 3):
        prefix = adapter_prefix(run.model_id, version)
        raw = client.get_object(Bucket=run.settings.s3_bucket, Key=prefix + MANIFEST_FILE)["Body"].read()
        manifest = AdapterUpdate.model_validate_json(raw)
        manifests.append(manifest)
        assert manifest.version == version and manifest.parent_version == version - 1
        assert manifest.uri == f"s3://{run.settings.s3_bucket}/{prefix}"
        assert manifest.window.example_count == 8
        assert {r.topic for r in manifest.window.ranges} == {topic}
        assert {"mean_reward", "loss", "clip_fraction", "reward_baseline", "train_s"} <= set(manifest.metrics)
        assert manifest.metrics["train_s"] > 0
        assert manifest.metrics["mean_reward"] == 0.5
        # every part of the way to S3 measured on its own (the demo's freshness split)
        parts = ("window_closed_at", "prepare_s", "save_s", "upload_s")
        assert all(manifest.metrics[k] > 0 for k in parts), manifest.metrics
        assert manifest.created_at.timestamp() >= manifest.metrics["window_closed_at"]
        # AdamW's moments are kept beside the adapter, verified by their sha256, and no node downloads them
        state = client.get_object(Bucket=run.settings.s3_bucket, Key=prefix + OPTIMIZER_FILE)
        assert hashlib.sha256(state["Body"].read()).hexdigest() == state["Metadata"]["sha256"]
        assert OPTIMIZER_FILE not in manifest.files
        for name in ADAPTER_FILES:
            blob = client.get_object(Bucket=run.settings.s3_bucket, Key=prefix + name)["Body"].read()
            assert hashlib.sha256(blob).hexdigest() == manifest.files[name]
        ids = json.loads(client.get_object(Bucket=run.settings.s3_bucket, Key=prefix + EXAMPLES_FILE)["Body"].read())
        assert sorted(ids) == sorted(ex.example_id for ex in run.windows[version - 1])
    listed = client.list_objects_v2(Bucket=run.settings.s3_bucket, Prefix=f"adapters/{run.model_id}/v4/")
    assert listed.get("KeyCount", 0) == 0
    announced = [u for u in _announcements(run.settings) if u.model_id == run.model_id]
    assert [u.version for u in announced] == [1, 2, 3]
    # the announcement is the manifest, the same event, plus the trainer's signature
    assert all(u.signature is not None for u in announced)
    assert [u.model_copy(update={"signature": None}) for u in announced] == manifests
    # the optimizer continued across windows: v3's moments have seen all 3 windows' 2 steps each
    opt = run.slot.optimizer()
    steps = {float(state["step"]) for state in opt.state.values()}
    assert steps == {6.0}, steps
    config = json.loads((run.final / "adapter_config.json").read_text())
    assert config["r"] == 8 and config.get("use_dora") is False and config.get("bias") == "none"
    assert not config.get("modules_to_save")


def test_list_rollback_and_training_on_top_of_the_rollback(run: Run, monkeypatch, capsys) -> None:
    from mc_cli.main import main
    from trainer.service import TrainerService
    from trainer.store import AdapterStore

    monkeypatch.setenv("MC_TOPIC_PREFIX", run.settings.topic_prefix)
    monkeypatch.setenv("MC_S3_BUCKET", run.settings.s3_bucket)
    assert main(["adapters", "list", run.model_id]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["v1", "v2", "*"] and lines[-1] == "current: v3"

    assert main(["adapters", "rollback", run.model_id, "1"]) == 0
    assert "v1 announced as current" in capsys.readouterr().out
    assert main(["adapters", "list", run.model_id]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "current: v1 (rollback)" and lines[0].startswith("* v1")

    # the next window trains on top of v1 and gets a fresh number: v4, parent v1
    with EventPublisher(ProducerSettings(topic_prefix=run.settings.topic_prefix)) as pub:
        for ex in _window(run.model_id):
            pub.publish(TopicKey.TRAINING_EXAMPLES, ex)
    assert TrainerService(run.settings, slot=run.slot).run(max_windows=1, idle_exit_s=60) == 1
    v4 = AdapterStore(run.settings).manifest(run.model_id, 4)
    assert v4.parent_version == 1 and not v4.rollback


@pytest.mark.vllm
def test_the_published_adapter_loads_into_the_running_vllm(run: Run, vllm: StackSettings) -> None:
    name = f"trainer-test-{uuid.uuid4().hex[:8]}"
    status, text = vllm_post(f"{vllm.vllm_url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(run.final)})
    assert status == 200, text
    try:
        status, text = vllm_post(
            f"{vllm.vllm_url}/v1/chat/completions",
            {
                "model": name,
                "temperature": 0,
                "max_tokens": 8,
                "messages": [{"role": "user", "content": PROMPTS[0]}],
            },
        )
        assert status == 200, text
        assert json.loads(text)["choices"][0]["message"]["content"]
    finally:
        status, text = vllm_post(f"{vllm.vllm_url}/v1/unload_lora_adapter", {"lora_name": name})
        assert status == 200, text


def test_with_the_canary_on_versions_are_candidates_that_chain_until_refused(run: Run) -> None:
    """Issue #14: the trainer proposes, continues on its newest proposal, and after the gate's refusal (a
    rollback to live with the verdict) trains on top of the live version again."""
    from schemas.events import GateDecision, new_id
    from schemas.signing import sign_update
    from trainer.service import TrainerService

    settings = run.settings.model_copy(update={"canary_models": {run.model_id: True}})

    def train_one_window() -> AdapterUpdate:
        with EventPublisher(ProducerSettings(topic_prefix=settings.topic_prefix)) as pub:
            for ex in _window(run.model_id):
                pub.publish(TopicKey.TRAINING_EXAMPLES, ex)
        assert TrainerService(settings, slot=run.slot).run(max_windows=1, idle_exit_s=60) == 1
        return [u for u in _announcements(settings) if u.model_id == run.model_id][-1]

    live = [u for u in _announcements(settings) if u.model_id == run.model_id][-1]
    assert live.stage == "live"
    first = train_one_window()
    assert first.stage == "candidate" and first.record_key == f"{run.model_id}/candidate"
    assert first.parent_version == live.version and first.version > live.version
    second = train_one_window()
    assert second.stage == "candidate" and second.parent_version == first.version  # chained, not waiting

    decision = GateDecision(outcome="refuse", candidate_version=first.version, live_version=live.version)
    data = {**live.model_dump(), "update_id": new_id(), "rollback": True, "decision": decision, "signature": None}
    refusal = sign_update(AdapterUpdate.model_validate(data), settings.signing_key())
    with EventPublisher(ProducerSettings(topic_prefix=settings.topic_prefix)) as pub:
        pub.publish(TopicKey.ADAPTER_UPDATES, refusal).result(30)
    third = train_one_window()
    assert third.stage == "candidate" and third.parent_version == live.version  # back on top of live
    assert third.version > second.version
