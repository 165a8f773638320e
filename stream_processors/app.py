"""The faust app: one agent (concurrency=1) joins both topics on a table, a timer expires state.

Why this shape:

* faust's ``Stream.join`` is not implemented, so the join is a table keyed by prediction_id
  (``{app_id}-join-changelog``), written only by one agent with ``concurrency=1``.
* predictions and rewards are co-partitioned and the table has the same partition count, and faust
  writes a table change to the changelog partition of the record being processed, so partition *p*
  of the state lives in changelog partition *p* and moves with the source partitions at a rebalance.
* records are handled in batches (:mod:`stream_processors.batching`): a batch's examples, dead
  letters and changelog records are sent as record batches and awaited before its records are acked,
  so an offset is committed only after its outputs are durable. A crash therefore replays every record
  whose outputs may not be durable, and :mod:`stream_processors.join` re-emits for replayed records.
* expiry runs in a timer (there is no record to hang it on when a partition is idle); it deletes
  from the store and sends the tombstone to the changelog partition of the state, after its dead
  letters are delivered.
* what faust does at rebalances and failed sends is guarded (:mod:`stream_processors.guards`), and
  the join table's recovery merges its changelog records (:mod:`stream_processors.recovery`): the
  root causes of the examples lost when a worker died (issue #11, ``stream_processors/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.errors import TopicError
from schemas.kafka_config import kafka_config
from schemas.topics import TopicKey, topic_name
from stream_processors.batching import BatchSink, consume_batches
from stream_processors.fetch import install_lean_delivery
from stream_processors.guards import OffsetGate, drop_revoked_attachments, refuse_stale_acks
from stream_processors.metrics import parse_metrics_key
from stream_processors.settings import ProcessorSettings
from stream_processors.tables import store_get
from stream_processors.watchdog import RecoveryWatchdog
from stream_processors.worker import Processor

__all__ = ["ProcessorApp", "create_app", "source_partitions"]


@dataclass
class ProcessorApp:
    app: Any  # faust.App
    processor: Processor
    settings: ProcessorSettings


def source_partitions(settings: ProcessorSettings, timeout_s: float = 30.0) -> int:
    """The partition count of predictions (refusing rewards with another count: no join then)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(settings))
    topics = admin.list_topics(timeout=timeout_s).topics
    names = [topic_name(TopicKey.PREDICTIONS, settings), topic_name(TopicKey.REWARDS, settings)]
    missing = [n for n in names if n not in topics]
    if missing:
        raise TopicError(f"topics {missing} do not exist: run `mc topics ensure` with the same MC_TOPIC_PREFIX")
    counts = {n: len(topics[n].partitions) for n in names}
    if len(set(counts.values())) != 1:
        raise TopicError(f"predictions and rewards are not co-partitioned: {counts}")
    return counts[names[0]]


def create_app(settings: ProcessorSettings | None = None, *, partitions: int | None = None) -> ProcessorApp:
    import faust

    from stream_processors.recovery import JoinTable

    s = settings or ProcessorSettings()
    n = partitions or source_partitions(s)
    store = s.resolved_store()
    data_dir = s.processor_data_dir.resolve() / s.processor_app_id
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        s.processor_app_id,
        broker=[f"kafka://{host.strip()}" for host in s.kafka_bootstrap.split(",")],
        store=f"{store}://",
        datadir=str(data_dir),
        autodiscover=False,
        web_enabled=True,
        web_bind=s.processor_web_host,
        web_host=s.processor_web_host,
        web_port=s.processor_web_port,
        topic_partitions=n,
        topic_replication_factor=s.replication_factor,
        table_standby_replicas=s.processor_standby_replicas,
        stream_publish_on_commit=True,
        broker_commit_interval=s.processor_commit_interval_s,
        broker_session_timeout=s.processor_session_timeout_s,
        broker_heartbeat_interval=s.processor_heartbeat_s,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=s.processor_linger_ms,
        producer_acks=-1,
        producer_max_request_size=s.max_event_bytes * 2 + 131_072,
        consumer_max_fetch_size=max(4 * 1024 * 1024, s.max_event_bytes * 2 + 131_072),
        stream_buffer_maxsize=16_384,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    pred_name, rew_name = topic_name(TopicKey.PREDICTIONS, s), topic_name(TopicKey.REWARDS, s)
    source = app.topic(pred_name, rew_name, **raw)
    examples_name, dead_letters_name = topic_name(TopicKey.TRAINING_EXAMPLES, s), topic_name(TopicKey.DEAD_LETTERS, s)
    # key_type/value_type bytes is what makes faust use the raw codec for the changelogs (a schema alone
    # does not: recovery then JSON-decodes the records and never completes).
    # Recovery merges the join's changelog records instead of keeping the last (stream_processors.recovery).
    join_table = JoinTable(app, name="join", partitions=n, key_type=bytes, value_type=bytes, beacon=app.tables.beacon)
    app.tables.add(join_table)
    metrics_table = app.Table("reward-metrics", partitions=n, key_type=bytes, value_type=bytes)

    refuse_stale_acks()
    drop_revoked_attachments(app)
    gate = OffsetGate(app, {pred_name, rew_name})
    gate.install()
    install_lean_delivery(app, {pred_name, rew_name})
    join_table.forget_local_state()  # a crash may have left states whose records were never committed

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget(sender: Any, revoked: Any, **_: Any) -> None:
        join_table.forget_local_state()
        gate.on_revoked()

    sink = BatchSink(app, examples=examples_name, dead_letters=dead_letters_name, join_table=join_table)
    proc = Processor(
        s,
        predictions_topic=pred_name,
        rewards_topic=rew_name,
        state=join_table,
        metrics=_StrKeys(metrics_table, sink),
        sink=sink,
        state_get=lambda partition, key: store_get(join_table, partition, key),
    )
    owned: dict[str, frozenset[int] | None] = {"parts": None}

    def out_of_order() -> None:
        proc.counters["records_out_of_order"] += 1

    @app.agent(source, concurrency=1, name="join")
    async def join(stream: Any) -> None:
        # Records in batches, outside faust's per-event iterator and attachments (stream_processors.batching).
        await consume_batches(
            stream, gate, proc.handle_batch, max_records=s.processor_batch_max_records, on_skipped=out_of_order
        )

    @app.timer(s.processor_expiry_interval_s)  # type: ignore[untyped-decorator]
    async def expiry() -> None:
        if app.rebalancing or app.in_recovery:
            return
        parts = frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == pred_name)
        if parts != owned["parts"]:
            proc.assigned(parts)
            owned["parts"] = parts
        await proc.expire_due()

    watchdog = RecoveryWatchdog(app)

    @app.timer(5.0)  # type: ignore[untyped-decorator]
    async def recovery_watchdog() -> None:
        await watchdog.tick()

    from stream_processors.web import register_pages

    register_pages(app, proc)
    return ProcessorApp(app, proc, s)


class _StrKeys:
    """The metrics table seen with str keys (the table stores raw bytes); written like the join table,
    to the store of the key's partition and its changelog, with the batch (:class:`BatchSink`)."""

    def __init__(self, table: Any, sink: BatchSink) -> None:
        self.table, self.sink = table, sink

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        value = store_get(self.table, parse_metrics_key(key)[2], key.encode())
        return default if value is None else value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.sink.put_table(self.table, parse_metrics_key(key)[2], key.encode(), value)

    def items(self) -> list[tuple[str, bytes]]:
        return [(bytes(k).decode(), bytes(v)) for k, v in self.table.items()]
