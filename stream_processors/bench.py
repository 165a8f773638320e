"""``mc bench join``: joined examples/s of one worker vs a bare aiokafka consumer, same topics, same run.

Both sides read the same pre-filled predictions and rewards topics from the beginning. The bare
consumer only reads (no decoding, no state, no producing); its figure is given in *pairs* per
second (records/s / 2), the unit of joined examples, so ``ratio`` says what share of the raw read
speed the join keeps. The worker runs as its own process (as in production, ``python -m
stream_processors``); its rate is joined examples over the time between its first record and its
last join, taken from its ``/processor/`` endpoint, so the group join and start-up are not counted.
Every example is then read back from training-examples and counted.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from schemas.events import Message, PredictionEvent, RewardEvent
from schemas.kafka_config import kafka_config
from schemas.process import Part, start_part
from schemas.settings import ContractSettings
from schemas.topics import TopicKey, topic_name
from stream_processors.api import ProcessorClient, ProcessorStats

__all__ = ["run"]


def make_pairs(
    n: int, prediction_bytes: int, model_id: str = "bench-model"
) -> list[tuple[PredictionEvent, RewardEvent]]:
    pad = "x" * max(0, prediction_bytes - 400)
    pairs = []
    for i in range(n):
        p = PredictionEvent(
            model_id=model_id,
            base_model="bench",
            adapter_version=i % 3,
            messages=[Message(role="user", content=f"task {i}"), Message(role="assistant", content=pad)],
        )
        pairs.append((p, RewardEvent(prediction_id=p.prediction_id, model_id=model_id, reward=(i % 10) / 10)))
    return pairs


def _publish(settings: ContractSettings, pairs: list[tuple[PredictionEvent, RewardEvent]], bar: Any) -> None:
    from producers.publisher import EventPublisher
    from producers.settings import ProducerSettings

    events: list[PredictionEvent | RewardEvent] = [e for pair in pairs for e in pair]
    random.Random(7).shuffle(events)
    with EventPublisher(ProducerSettings(**settings.model_dump())) as pub:
        for i, ev in enumerate(events):
            pub.publish(TopicKey.PREDICTIONS if isinstance(ev, PredictionEvent) else TopicKey.REWARDS, ev)
            if i % 1000 == 999:
                bar.update(1000)
    bar.update(len(events) % 1000)


async def _raw_read(settings: ContractSettings, topics: list[str], partitions: int, expected: int) -> float:
    """Records/s of a bare aiokafka consumer reading ``topics`` from the beginning (no group, no decoding)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, start = 0, time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            seen += sum(len(records) for records in batch.values())
        return seen / (time.perf_counter() - start)
    finally:
        await consumer.stop()


def _stats(client: ProcessorClient) -> ProcessorStats | None:
    try:
        return client.stats()
    except httpx.HTTPError:  # not listening yet
        return None


def _count_examples(settings: ContractSettings, expected: int) -> int:
    from producers.consumer import EventConsumer
    from schemas.events import TrainingExample

    ids: set[str] = set()
    with EventConsumer(
        TopicKey.TRAINING_EXAMPLES, TrainingExample, group_id=f"bench-{uuid.uuid4().hex}", settings=settings
    ) as consumer:
        for item in consumer.events(idle_timeout_s=10):
            ids.add(item.event.example_id)
            if len(ids) >= expected:
                break
    return len(ids)


def run(
    *, pairs: int = 20_000, prediction_bytes: int = 1024, port: int = 6198, timeout_s: float = 600
) -> dict[str, Any]:
    from confluent_kafka.admin import AdminClient

    from producers.admin import ensure_topics

    base = ContractSettings()
    prefix = f"{base.topic_prefix}bench-{uuid.uuid4().hex[:8]}."
    settings = base.model_copy(update={"topic_prefix": prefix})
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    registry = ensure_topics(settings)
    data = make_pairs(pairs, prediction_bytes)
    names = [topic_name(TopicKey.PREDICTIONS, settings), topic_name(TopicKey.REWARDS, settings)]
    worker = None
    try:
        with tqdm(total=2 * pairs, desc="publish", unit="ev", file=sys.stderr) as bar:
            _publish(settings, data, bar)
        raw_records = asyncio.run(_raw_read(settings, names, registry[TopicKey.PREDICTIONS].partitions, 2 * pairs))
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                "MC_TOPIC_PREFIX": prefix,
                "MC_PROCESSOR_APP_ID": app_id,
                "MC_PROCESSOR_DATA_DIR": tmp,
                "MC_PROCESSOR_WEB_PORT": str(port),
            }
            log = Path(tmp) / "worker.log"
            worker = start_part(Part.PROCESSOR, env=env, log=log)
            deadline = time.monotonic() + timeout_s
            stats: ProcessorStats | None = None
            joined = 0
            with (
                ProcessorClient(f"http://127.0.0.1:{port}") as client,
                tqdm(total=pairs, desc="join", unit="ex", file=sys.stderr) as bar,
            ):
                while time.monotonic() < deadline and worker.running():
                    stats = _stats(client) or stats
                    joined = stats.counters.get("joined", 0) if stats else 0
                    bar.update(joined - bar.n)
                    if joined >= pairs:
                        break
                    time.sleep(0.5)
            if stats is None or joined < pairs or stats.last_join_at is None or stats.first_record_at is None:
                counters = stats.counters if stats else None
                raise RuntimeError(f"the worker joined {counters} of {pairs}; log: {worker.log_tail()}")
            elapsed = stats.last_join_at - stats.first_record_at
            durable = _count_examples(settings, pairs)
            worker.stop(30)
    finally:
        if worker is not None and worker.running():
            worker.kill()
        admin = AdminClient(kafka_config(settings))
        doomed = [topic_name(k, settings) for k in TopicKey]
        doomed += [f"{app_id}-{t}-changelog" for t in ("join", "reward-metrics")] + [f"{app_id}-__assignor-__leader"]
        for fut in admin.delete_topics(doomed, operation_timeout=30).values():
            fut.exception()
    joined_per_s = pairs / elapsed
    raw_pairs = raw_records / 2
    return {
        "pairs": pairs,
        "prediction_bytes": len(data[0][0].model_dump_json()),
        "examples_read_back": durable,
        "raw_records_per_s": round(raw_records, 1),
        "joined_per_s": round(joined_per_s, 1),
        "raw_consumer_per_s": round(raw_pairs, 1),
        "ratio": round(joined_per_s / raw_pairs, 3),
    }
