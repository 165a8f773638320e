"""``mc chaos join``: the join under crashes, rebalances and a broker restart, on fresh topics each run.

Every run publishes one stream (predictions, one reward each, some rewards delivered twice, about
half of the rewards before their prediction) from a background thread at a steady rate, does its
harm mid-stream, and then reads ``training-examples`` until every reward_id is there or the wait
ends. A run counts the rewards expected, the ones missing, and the example_ids seen more than once
(re-emissions: allowed, the trainer keys examples by example_id). Scenarios:

* ``kill_one_of_two``: two workers; SIGKILL one; the other takes its partitions over (from the
  changelog: its local store never had them).
* ``join_leave``: two workers; a third joins, takes partitions, and leaves (SIGTERM); two rebalances.
* ``kill_restart``: one worker, SIGKILLed and started again on its own disk.
* ``kill_restart_new_disk``: the same, started again on an empty disk (a rescheduled container): every
  state must come back from the changelog, so a state the restarted worker held only locally is found.
* ``broker_restart``: two workers; the Kafka broker is stopped and started again mid-stream.

The worker processes are ``python -m stream_processors``, configured by MC_* variables, as in
production. The test suite runs each scenario once (``tests/test_processor_chaos.py``).
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from producers.admin import ensure_topics
from producers.consumer import EventConsumer
from producers.publisher import EventPublisher
from producers.settings import ProducerSettings
from schemas.errors import MaximumContinualError
from schemas.events import Message, PredictionEvent, RewardEvent, TrainingExample
from schemas.kafka_config import kafka_config
from schemas.process import Part, start_part
from schemas.topics import TopicKey, topic_name
from stream_processors.api import ProcessorClient, ProcessorStats

__all__ = [
    "BACKSTOP_LOG_LINES",
    "BAD_LOG_LINES",
    "SCENARIOS",
    "ChaosError",
    "RunResult",
    "WorkerProcess",
    "make_stream",
    "run",
    "run_scenario",
]

#: what a worker logs when a backstop rescued a stalled partition (the gate's seek back to a partition's
#: turn, the recovery watchdog's seek of a silent changelog partition): counted, so that a run with 0
#: missing that needed one shows it
BACKSTOP_LOG_LINES = ("sought back to its turn", "recovery: no record of")
#: what a crash loop leaves in a worker's log
BAD_LOG_LINES = ("Traceback", "PartitionsMismatch", "missing topic", "Crashed", "[ERROR]")
_NOT_CRASHES = (
    "keepalive is not responding",
    "Unable connect to node",
    "Unable to update metadata",
    "NodeNotReadyError",
    "KafkaConnectionError",
    "Heartbeat session expired",
    "Group Coordinator Request failed",
)
_REPO = Path(__file__).resolve().parents[1]


class ChaosError(MaximumContinualError):
    """A chaos run could not do what it set out to (a worker did not start, the broker did not return)."""


class WorkerProcess:
    """One ``python -m stream_processors`` worker, its web port and its log."""

    def __init__(self, settings: ProducerSettings, app_id: str, data_dir: Path, slot: str, **env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.slot = slot
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / f"worker-{slot}-{self.port}.log"
        full_env = {
            "MC_TOPIC_PREFIX": settings.topic_prefix,
            "MC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "MC_PROCESSOR_APP_ID": app_id,
            "MC_PROCESSOR_DATA_DIR": str(data_dir / f"state-{slot}"),  # a restart on the same slot finds its store
            "MC_PROCESSOR_WEB_PORT": str(self.port),
            "MC_PROCESSOR_SESSION_TIMEOUT_S": "6",
            "MC_PROCESSOR_LOG_LEVEL": "info",
            **env,
        }
        self.proc = start_part(Part.PROCESSOR, env=full_env, log=self.log, cwd=_REPO, name=f"worker {slot}")
        self.client = ProcessorClient(f"http://127.0.0.1:{self.port}")

    def stats(self) -> ProcessorStats | None:
        """The worker's ``/processor/`` page; None while it does not answer (starting, dead)."""
        try:
            return self.client.stats()
        except (httpx.HTTPError, ValueError):  # ValueError: pydantic's, a page cut off by a kill
            return None

    def wait(self, pred: Callable[[ProcessorStats], bool], timeout_s: float = 90) -> ProcessorStats:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.proc.running():
                raise ChaosError(f"worker {self.slot} died: {self.log_tail()}")
            st = self.stats()
            if st is not None and pred(st):
                return st
            time.sleep(0.3)
        raise ChaosError(f"worker {self.slot} timed out; last stats {self.stats()}; log: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.proc.log_tail(chars)

    def scan_log(self) -> tuple[list[str], list[str]]:
        """Crash lines and backstop lines (:data:`BACKSTOP_LOG_LINES`), from one read of the log. Not crashes,
        though logged at ERROR: a starved event loop's keepalive warning, and aiokafka's connection errors
        while the broker is away (it reconnects)."""
        lines = self.log.read_text(errors="replace").splitlines()
        bad = [x for x in lines if any(b in x for b in BAD_LOG_LINES) and not any(o in x for o in _NOT_CRASHES)]
        return bad, [x for x in lines if any(b in x for b in BACKSTOP_LOG_LINES)]

    def kill(self) -> None:
        if self.proc.running():
            self.proc.kill()
        self.client.close()

    def stop(self) -> None:
        self.proc.stop(30)
        self.client.close()


def assigned(st: ProcessorStats) -> bool:
    """The worker recovered its tables and owns partitions (possibly none)."""
    return st.assigned is not None


def make_stream(pairs: int, seed: int) -> tuple[list[PredictionEvent | RewardEvent], set[str]]:
    """``pairs`` predictions with one reward each, 1% of the rewards delivered twice, shuffled."""
    rnd = random.Random(seed)
    preds = [
        PredictionEvent(model_id=f"m{i % 3}", base_model="b", messages=[Message(role="user", content=f"q{i}")])
        for i in range(pairs)
    ]
    rewards = [RewardEvent(prediction_id=p.prediction_id, model_id=p.model_id, reward=rnd.random()) for p in preds]
    stream: list[PredictionEvent | RewardEvent] = [*preds, *rewards, *rnd.sample(rewards, max(1, pairs // 100))]
    rnd.shuffle(stream)  # about half the rewards come before their prediction
    return stream, {r.reward_id for r in rewards}


class _Feeder(threading.Thread):
    """Publishes the stream at a steady rate; ``progress`` is the share published so far."""

    def __init__(self, settings: ProducerSettings, stream: list[PredictionEvent | RewardEvent], seconds: float) -> None:
        super().__init__(daemon=True, name="chaos-feeder")
        self.settings, self.stream, self.seconds = settings, stream, seconds
        self.sent = 0
        self.error: BaseException | None = None

    @property
    def progress(self) -> float:
        return self.sent / len(self.stream)

    def run(self) -> None:
        try:
            start = time.monotonic()
            with EventPublisher(self.settings) as pub:
                for i, ev in enumerate(self.stream):
                    ahead = start + self.seconds * i / len(self.stream) - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                    key = TopicKey.PREDICTIONS if isinstance(ev, PredictionEvent) else TopicKey.REWARDS
                    pub.publish(key, ev)
                    self.sent = i + 1
        except BaseException as exc:  # reported by the run, which decides
            self.error = exc

    def wait_for(self, share: float, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.progress < share:
            if self.error is not None:
                raise ChaosError(f"publishing failed: {self.error!r}")
            if time.monotonic() > deadline:
                raise ChaosError(f"publishing stalled at {self.progress:.0%}")
            time.sleep(0.1)


def collect(settings: ProducerSettings, want: set[str], timeout_s: float) -> list[str]:
    """Every example_id on training-examples (in order, duplicates kept) until all of ``want`` came."""
    ids: list[str] = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    with EventConsumer(
        TopicKey.TRAINING_EXAMPLES, TrainingExample, group_id=f"chaos-check-{uuid.uuid4().hex}", settings=settings
    ) as consumer:
        while time.monotonic() < deadline and not want <= seen:
            item = consumer.poll(1.0)
            if item is not None:
                ids.append(item.event.example_id)
                seen.add(item.event.example_id)
    return ids


@dataclass
class RunResult:
    scenario: str
    seed: int
    expected: int
    missing: int
    duplicated: int
    #: crash lines in the logs of workers that were not killed on purpose
    bad_log_lines: int
    seconds: float
    #: backstops that fired (:data:`BACKSTOP_LOG_LINES`): each rescued a partition that had stalled
    backstops: int = 0
    error: str | None = None


class _Run:
    """One run's topics, app id, workers and feeder; everything is removed at the end."""

    def __init__(self, base: ProducerSettings, work_dir: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.settings = base.model_copy(update={"topic_prefix": f"chaos-{tag}."})
        self.app_id = f"chaos-{tag}"
        self.dir = work_dir / tag
        self.workers: list[WorkerProcess] = []
        self.killed: set[int] = set()

    def worker(self, slot: str) -> WorkerProcess:
        w = WorkerProcess(self.settings, self.app_id, self.dir, slot)
        self.workers.append(w)
        return w

    def kill(self, w: WorkerProcess) -> None:
        self.killed.add(id(w))
        w.kill()

    def save_stats(self) -> None:
        """Each live worker's /processor/ page, beside its log (for a run that lost something)."""
        for w in self.workers:
            if w.proc.running():
                st = w.stats()
                (self.dir / f"stats-{w.slot}-{w.port}.json").write_text(st.model_dump_json(indent=1) if st else "{}")

    def diagnose(self, missing: set[str], stream: list[PredictionEvent | RewardEvent]) -> None:
        """For a run that lost examples: every source and changelog record of the keys concerned, and
        the group's committed offsets, to ``diagnosis.json`` beside the logs."""
        from confluent_kafka import Consumer, TopicPartition

        keys = {ev.prediction_id.encode() for ev in stream if isinstance(ev, RewardEvent) and ev.reward_id in missing}
        names = [
            topic_name(TopicKey.PREDICTIONS, self.settings),
            topic_name(TopicKey.REWARDS, self.settings),
            f"{self.app_id}-join-changelog",
        ]
        found: list[dict[str, Any]] = []
        consumer = Consumer(kafka_config(self.settings, {"group.id": self.app_id, "enable.auto.commit": False}))
        try:
            committed = consumer.committed(
                [TopicPartition(n, p) for n in names[:2] for p in range(self.settings.partitions)], timeout=10
            )
            tps = [TopicPartition(n, p, 0) for n in names for p in range(self.settings.partitions)]
            consumer.assign(tps)
            idle_until = time.monotonic() + 5
            while time.monotonic() < idle_until:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                idle_until = time.monotonic() + 3
                if msg.key() in keys:
                    value = msg.value() or b""
                    found.append(
                        {
                            "topic": msg.topic(),
                            "partition": msg.partition(),
                            "offset": msg.offset(),
                            "key": (msg.key() or b"").decode(),
                            "value": value.split(b"\n")[0].decode(errors="replace")[:600],
                        }
                    )
        finally:
            consumer.close()
        report = {
            "missing": sorted(missing),
            "committed": [(tp.topic, tp.partition, tp.offset) for tp in committed],
            "records": found,
        }
        (self.dir / "diagnosis.json").write_text(json.dumps(report, indent=1))

    def log_counts(self) -> tuple[int, int]:
        """Crash lines of the workers not killed on purpose, and backstops that fired in any worker."""
        bad = backstops = 0
        for w in self.workers:
            crashes, rescues = w.scan_log()
            bad += 0 if id(w) in self.killed else len(crashes)
            backstops += len(rescues)
        return bad, backstops

    def cleanup(self) -> None:
        from confluent_kafka.admin import AdminClient

        for w in self.workers:
            w.stop()
        names = [topic_name(key, self.settings) for key in TopicKey]
        names += [f"{self.app_id}-{t}-changelog" for t in ("join", "reward-metrics")]
        names += [f"{self.app_id}-__assignor-__leader"]
        admin = AdminClient(kafka_config(self.settings))
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.exception()


def _two_workers(r: _Run) -> tuple[WorkerProcess, WorkerProcess]:
    a = r.worker("a")
    a.wait(assigned)
    b = r.worker("b")
    b.wait(lambda st: bool(st.assigned))
    a.wait(lambda st: st.assigned is not None and len(st.assigned) < r.settings.partitions)
    return a, b


def _kill_one_of_two(r: _Run, feed: _Feeder) -> None:
    a, b = _two_workers(r)
    feed.start()
    feed.wait_for(0.4)
    r.kill(a)
    b.wait(lambda st: st.assigned == list(range(r.settings.partitions)), timeout_s=120)


def _join_leave(r: _Run, feed: _Feeder) -> None:
    _two_workers(r)
    feed.start()
    feed.wait_for(0.25)
    c = r.worker("c")
    c.wait(lambda st: bool(st.assigned), timeout_s=120)
    feed.wait_for(0.6)
    c.stop()


def _kill_restart(r: _Run, feed: _Feeder, *, new_disk: bool) -> None:
    a = r.worker("a")
    a.wait(assigned)
    feed.start()
    feed.wait_for(0.4)
    r.kill(a)
    a2 = r.worker("a2" if new_disk else "a")
    a2.wait(assigned, timeout_s=120)


def _broker_restart(r: _Run, feed: _Feeder) -> None:
    from devstack import Stack

    _two_workers(r)
    feed.start()
    feed.wait_for(0.4)
    stack = Stack()
    stack.down(["kafka"], log=lambda _m: None)
    time.sleep(3)
    try:
        stack.up(["kafka"], log=lambda _m: None)
    except MaximumContinualError as exc:
        raise ChaosError(f"the broker did not come back: {exc}") from exc


SCENARIOS: dict[str, Callable[[_Run, _Feeder], None]] = {
    "kill_one_of_two": _kill_one_of_two,
    "join_leave": _join_leave,
    "kill_restart": lambda r, f: _kill_restart(r, f, new_disk=False),
    "kill_restart_new_disk": lambda r, f: _kill_restart(r, f, new_disk=True),
    "broker_restart": _broker_restart,
}


def run_scenario(
    name: str,
    base: ProducerSettings,
    work_dir: Path,
    *,
    pairs: int = 3000,
    seed: int = 0,
    publish_s: float = 20.0,
    wait_s: float = 180.0,
) -> RunResult:
    """One run of one scenario on fresh topics; a harness failure is recorded in ``error``."""
    started = time.monotonic()
    stream, want = make_stream(pairs, seed)
    r = _Run(base, work_dir)
    ensure_topics(r.settings)
    error: str | None = None
    ids: list[str] = []
    try:
        feed = _Feeder(r.settings, stream, publish_s)
        SCENARIOS[name](r, feed)
        feed.join(timeout=publish_s + 180)
        if feed.error is not None or feed.is_alive():
            raise ChaosError(f"publishing did not finish: {feed.error!r}")
        ids = collect(r.settings, want, wait_s)
    except ChaosError as exc:
        error = str(exc)[-2000:]
    finally:
        bad, backstops = r.log_counts()
        if error is not None or not want <= set(ids):
            r.save_stats()
            if not want <= set(ids):
                r.diagnose(want - set(ids), stream)
        r.cleanup()
    counts = Counter(ids)
    return RunResult(
        scenario=name,
        seed=seed,
        expected=len(want),
        missing=len(want - set(counts)),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        bad_log_lines=bad,
        seconds=round(time.monotonic() - started, 1),
        backstops=backstops,
        error=error,
    )


@contextmanager
def _work_dir(path: Path | None) -> Iterator[Path]:
    d = path or Path(".mc/chaos") / time.strftime("%Y%m%d-%H%M%S")
    d.mkdir(parents=True, exist_ok=True)
    try:
        yield d
    finally:
        if path is None:
            shutil.rmtree(d, ignore_errors=True)


def run(
    *,
    runs: int,
    scenarios: list[str],
    pairs: int,
    publish_s: float,
    log: Callable[[str], None] = print,
    keep_dir: Path | None = None,
) -> dict[str, Any]:
    """``runs`` runs of every scenario, interleaved (run 1 of each, then run 2 of each, ...)."""
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ChaosError(f"unknown scenarios {unknown}; known: {sorted(SCENARIOS)}")
    base = ProducerSettings()
    results: list[RunResult] = []
    with _work_dir(keep_dir) as work:
        for i in range(runs):
            for name in scenarios:
                res = run_scenario(name, base, work, pairs=pairs, seed=i, publish_s=publish_s)
                results.append(res)
                log(json.dumps(asdict(res)))
    summary: dict[str, dict[str, int]] = {}
    for name in scenarios:
        mine = [x for x in results if x.scenario == name]
        summary[name] = {
            "runs": len(mine),
            "expected": sum(x.expected for x in mine),
            "missing": sum(x.missing for x in mine),
            "duplicated": sum(x.duplicated for x in mine),
            "failed_runs": sum(x.error is not None for x in mine),
            "bad_log_lines": sum(x.bad_log_lines for x in mine),
            "backstops": sum(x.backstops for x in mine),
        }
    return {"scenarios": summary, "missing_total": sum(s["missing"] for s in summary.values())}
