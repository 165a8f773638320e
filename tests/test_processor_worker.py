"""The worker's decisions without Kafka: dead letters, expiry after a restart and on idle partitions,
watermarks, metrics. Tables are dicts here; the faust wiring is covered by test_processor_kafka."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from datetime import UTC, datetime, timedelta

from schemas import Message, PredictionEvent, RewardEvent, TrainingExample, decode, encode
from schemas.dead_letter import DeadLetter
from stream_processors.expiry import ExpiryIndex, Watermarks
from stream_processors.metrics import RewardStats, metrics_key, parse_metrics_key
from stream_processors.settings import ProcessorSettings
from stream_processors.worker import Processor

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class DictSink:
    def __init__(self, state: dict[bytes, bytes]) -> None:
        self.state = state
        self.examples: list[bytes] = []
        self.dead: list[DeadLetter] = []

    async def example(self, key: bytes, value: bytes) -> None:
        self.examples.append(value)

    async def dead_letter(self, key: bytes | None, value: bytes) -> None:
        self.dead.append(DeadLetter.model_validate_json(value))

    async def put_state(self, partition: int, key: bytes, value: bytes) -> None:
        self.state[key] = value

    async def delete_state(self, partition: int, key: bytes) -> None:
        self.state.pop(key, None)


class StrDict(dict[str, bytes]):
    def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        return super().get(key, default)


def _proc(
    state: dict[bytes, bytes] | None = None, metrics: StrDict | None = None, **kw: object
) -> tuple[Processor, DictSink]:
    state = {} if state is None else state
    sink = DictSink(state)
    s = ProcessorSettings(join_ttl=timedelta(seconds=60), processor_idle_after=timedelta(seconds=5), **kw)  # type: ignore[arg-type]
    return Processor(
        s,
        predictions_topic="P",
        rewards_topic="R",
        state=state,
        metrics=StrDict() if metrics is None else metrics,
        sink=sink,
    ), sink


def _pred(at: datetime = T0, model_id: str = "m") -> PredictionEvent:
    return PredictionEvent(
        model_id=model_id, base_model="b", created_at=at, messages=[Message(role="user", content="q")]
    )


def _rew(p: PredictionEvent, at: datetime = T0, reward: float = 1.0) -> RewardEvent:
    return RewardEvent(prediction_id=p.prediction_id, model_id=p.model_id, reward=reward, created_at=at)


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_malformed_invalid_and_wrong_key_go_to_dead_letters_with_the_original_bytes() -> None:
    proc, sink = _proc()
    p = _pred()
    bad_json = b"\xff not json"
    invalid = json.dumps({"schema_version": 1, "model_id": "m", "prediction_id": "x", "reward": "NaN"}).encode()

    async def go() -> None:
        await proc.handle("R", 0, 0, None, b"k", bad_json)
        await proc.handle("R", 0, 1, None, b"x", invalid)
        await proc.handle("P", 0, 0, None, b"not-the-id", encode(p))
        await proc.handle("P", 0, 1, None, b"k", None)
        await proc.handle("P", 0, 2, None, p.prediction_id.encode(), encode(p))  # still works

    run(go())
    assert [d.reason for d in sink.dead] == ["malformed", "invalid", "wrong_key", "malformed"]
    assert sink.dead[0].value == bad_json and sink.dead[0].key == b"k"
    assert base64.b64decode(sink.dead[1].value_b64 or "") == invalid
    assert (sink.dead[2].source_topic, sink.dead[2].source_partition, sink.dead[2].source_offset) == ("P", 0, 0)
    assert proc.counters["dead_letters"] == 4 and proc.counters["dead_letters.malformed"] == 2
    assert len(proc.state) == 1


def test_a_model_id_that_walks_the_file_system_is_dead_lettered() -> None:
    """The contract refuses non-slug model ids; the processor dead-letters them, the join goes on."""
    proc, sink = _proc()
    evil = json.dumps({"schema_version": 1, "model_id": "../../../tmp/evil", "prediction_id": "x", "reward": 1.0})

    run(proc.handle("R", 0, 0, None, b"x", evil.encode()))
    assert [d.reason for d in sink.dead] == ["invalid"] and "model_id" in sink.dead[0].error
    assert proc.state == {} and sink.examples == []


def test_expiry_works_for_states_recovered_after_a_restart() -> None:
    state: dict[bytes, bytes] = {}
    proc, _ = _proc(state)
    p1, p2 = _pred(), _pred()
    r_orphan = _rew(_pred())  # its prediction never comes

    async def before_crash() -> None:
        proc.assigned([0])
        await proc.handle("P", 0, 0, None, p1.prediction_id.encode(), encode(p1))
        await proc.handle("R", 0, 0, None, r_orphan.prediction_id.encode(), encode(r_orphan))
        await proc.handle("R", 0, 1, None, p2.prediction_id.encode(), encode(_rew(p2)))
        await proc.handle("P", 0, 1, None, p2.prediction_id.encode(), encode(p2))

    run(before_crash())
    # "Restart": a new processor on the recovered table, no in-memory index or watermark.
    proc2, sink2 = _proc(dict(state))
    proc2.assigned([0])
    assert proc2.watermarks.watermark(0) == int(T0.timestamp() * 1000)
    run(proc2.expire_due())
    assert len(proc2.state) == 3  # event time has not moved: nothing expires
    late = _pred(T0 + timedelta(seconds=61))

    async def after() -> None:
        await proc2.handle("P", 0, 2, None, late.prediction_id.encode(), encode(late))
        await proc2.expire_due()

    run(after())
    assert list(proc2.state) == [late.prediction_id.encode()]
    assert [d.reason for d in sink2.dead] == ["expired_unmatched"]
    assert decode(sink2.dead[0].value, RewardEvent) == r_orphan
    assert proc2.counters["expired_unmatched_predictions"] == 1  # p1
    assert proc2.counters["expired_unmatched_rewards"] == 1
    assert proc2.counters["expired_states"] == 3


def test_idle_partition_expires_on_the_other_partitions_event_time() -> None:
    clock = [1000.0]
    proc, sink = _proc()
    proc.watermarks.wall = lambda: clock[0]
    proc.assigned([0, 1])
    orphan = _rew(_pred())
    fresh = _pred(T0 + timedelta(minutes=10))

    async def go() -> None:
        await proc.handle("R", 0, 0, None, orphan.prediction_id.encode(), encode(orphan))
        await proc.handle("P", 1, 0, None, fresh.prediction_id.encode(), encode(fresh))
        await proc.expire_due()

    run(go())
    assert [d.reason for d in sink.dead] == []  # partition 0 is not idle yet: its own event time rules
    clock[0] += 6  # partition 0 idle for longer than idle_after; partition 1 too, but its state is fresh
    run(proc.expire_due())
    assert [d.reason for d in sink.dead] == ["expired_unmatched"]
    assert list(proc.state) == [fresh.prediction_id.encode()]


def test_watermark_of_an_idle_partition_follows_wall_time_from_its_last_event() -> None:
    clock = [0.0]
    wm = Watermarks(idle_after_s=5, wall=lambda: clock[0])
    wm.assign([0])
    wm.observe(0, 1_000)
    clock[0] = 4.9
    assert wm.watermark(0) == 1_000 and not wm.is_idle(0)
    clock[0] = 20.0
    assert wm.is_idle(0) and wm.watermark(0) == 1_000 + 20_000
    wm.seed(0, 500)  # seeding never moves a watermark back
    assert wm.snapshot()[0]["event_ms"] == 1_000


def test_expiry_index_yields_due_keys_in_deadline_order() -> None:
    idx = ExpiryIndex()
    for key, deadline in (("b", 20), ("a", 10), ("c", 30)):
        idx.push(0, key, deadline)
    idx.push(1, "z", 0)
    assert list(idx.due(0, 20)) == ["a", "b"] and len(idx) == 2


def test_reward_metrics_merge_partials_exactly() -> None:
    rnd = random.Random(3)
    half_life = 3_600_000.0
    rewards = [(rnd.random(), 1_000_000 + rnd.randrange(10_000_000)) for _ in range(200)]
    whole = RewardStats()
    parts = [RewardStats() for _ in range(3)]
    for i, (r, t) in enumerate(rewards):
        whole.add(r, t, half_life)
        parts[i % 3].add(r, t, half_life)
    merged = parts[0].merge(parts[1], half_life).merge(parts[2], half_life)
    assert merged.count == 200 and abs((merged.mean or 0) - (whole.mean or 0)) < 1e-12
    assert abs((merged.ema or 0) - (whole.ema or 0)) < 1e-9
    newest = max(t for _, t in rewards)
    expected = sum(r * 2 ** (-(newest - t) / half_life) for r, t in rewards) / sum(
        2 ** (-(newest - t) / half_life) for _, t in rewards
    )
    assert abs((whole.ema or 0) - expected) < 1e-9
    assert RewardStats.from_bytes(merged.to_bytes()) == merged
    assert parse_metrics_key(metrics_key("org/model-1", 3, 5)) == ("org/model-1", 3, 5)


def test_reward_metrics_per_model_and_adapter_version() -> None:
    metrics = StrDict()
    proc, sink = _proc(metrics=metrics)
    preds = [_pred(), _pred(), PredictionEvent(**{**_pred().model_dump(), "adapter_version": 1})]

    async def go() -> None:
        for i, p in enumerate(preds):
            await proc.handle("P", i, 0, None, p.prediction_id.encode(), encode(p))
            await proc.handle("R", i, 0, None, p.prediction_id.encode(), encode(_rew(p, reward=float(i))))

    run(go())
    assert len(sink.examples) == 3 and all(decode(x, TrainingExample) for x in sink.examples)
    rows = {(r.model_id, r.adapter_version): r for r in proc.reward_metrics()}
    assert rows[("m", 0)].count == 2 and rows[("m", 0)].mean == 0.5 and rows[("m", 0)].partitions == [0, 1]
    assert rows[("m", 1)].count == 1 and rows[("m", 1)].ema == 2.0
    assert metrics  # partials reached the table


def test_the_fast_decoder_accepts_and_refuses_what_the_contracts_decoder_does() -> None:
    """The worker parses with pydantic's JSON parser first (decode_event); it must never accept what
    schemas.decode refuses (a BOM, NaN, a missing schema_version, trailing bytes, UTF-16, ...)."""
    from schemas.errors import SchemaError
    from stream_processors.worker import decode_event

    r = _rew(_pred())
    b = encode(r)
    no_version = json.dumps({k: v for k, v in json.loads(b).items() if k != "schema_version"}).encode()
    cases = [
        b,
        b"\xef\xbb\xbf" + b,
        b"  " + b + b"\n ",
        b[:-1] + b',"reward":0.7}',
        b.replace(b"1.0", b"NaN"),
        b.replace(b"1.0", b"1e400"),
        b.replace(b"1.0", b'"0.5"'),
        b.replace(b'"m"', b'"\\ud800"'),
        b.replace(b'"m"', b'"m\\u0000"'),
        b + b"x",
        no_version,
        b.decode().encode("utf-16"),
        b"[]",
        b"",
        b.replace(b'"schema_version":1', b'"schema_version":2'),
    ]
    for raw in cases:
        try:
            want: object = decode(raw, RewardEvent)
        except SchemaError as exc:
            want = (type(exc), exc.reason)
        try:
            got: object = decode_event(raw, RewardEvent, 1 << 20)
        except SchemaError as exc:
            got = (type(exc), exc.reason)
        assert got == want, raw
    p = _pred()
    assert decode_event(encode(p), PredictionEvent, 1 << 20) == p
