"""``mc demo``: the learning loop, end to end, on the real stack.

1. A fresh run id: topic prefix, model_id, consumer groups, ports and a folder ``.mc/demo/<run>/``.
2. The run's topics; the processor, the trainer and an inference node as background processes.
3. The base model (v0) answers the held-out problems and the first round's problems together.
4. Each round: the round's rewards go to Kafka; the processor joins them, the trainer trains the
   window and publishes v{N}; the demo waits until the node serves v{N}, measures the freshness,
   and v{N} answers the held-out problems and the next round's problems.
5. The table, ``reward.png`` and ``results.json``; the processes stop (also on failure or Ctrl-C).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from demo.freshness import split
from demo.observe import Observer
from demo.plot import write_plot
from demo.report import RoundRow, Summary, format_header, format_row
from demo.services import Parts, RunIds
from demo.settings import DemoSettings
from demo.tasks import Task, heldout_tasks, task_stream
from demo.workload import Sample, predict_all, score, send_rewards, system_prompt
from inference import NodeClient, NodeStatus
from maximum_continual import MaximumContinual, MaximumContinualModel
from producers.admin import ensure_topics
from schemas.errors import StackError
from schemas.settings import ContractSettings

__all__ = ["run_demo"]


def _contract(settings: DemoSettings, ids: RunIds) -> ContractSettings:
    fields = {k: v for k, v in settings.model_dump().items() if k in ContractSettings.model_fields}
    return ContractSettings(**{**fields, "topic_prefix": ids.topic_prefix})


def _delete_topics(settings: ContractSettings, run_id: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"demo-{run_id}")]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.exception()


def _wait_live(node: NodeClient, parts: Parts, model_id: str, after: int, timeout_s: float) -> NodeStatus:
    """Poll /status until the node serves a version newer than ``after``."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = node.status()
        live = status.models.get(model_id)
        if live is not None and live.version > after:
            return status
        parts.check_alive()
        if time.monotonic() > deadline:
            raise StackError(
                f"no adapter newer than v{after} went live within {timeout_s:g} s; see the logs in {parts.run_dir}"
            )
        time.sleep(0.2)


class _Demo:
    def __init__(self, s: DemoSettings, model: MaximumContinualModel, bar: tqdm[Any]) -> None:
        self.s = s
        self.model = model
        self.bar = bar
        self.prompt = system_prompt()
        problems = heldout_tasks(s.demo_heldout_prompts, s.demo_seed)
        self.heldout = [t for t in problems for _ in range(s.demo_heldout_samples)]
        self.stream = task_stream(s.demo_seed, {t.question for t in self.heldout})

    def _tick(self) -> None:
        self.bar.update(1)

    def next_batch(self) -> list[Task]:
        return [next(self.stream) for _ in range(self.s.demo_examples_per_round)]

    async def serve(self, batch: list[Task]) -> tuple[list[Sample], list[Sample]]:
        """The held-out problems and the next round's problems, on the live version, together."""
        samples = await predict_all(self.model, [*self.heldout, *batch], self.s, self.prompt, self._tick)
        return samples[: len(self.heldout)], samples[len(self.heldout) :]


def run_demo(settings: DemoSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    s = settings
    started = time.monotonic()
    ids = RunIds(f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
    run_dir = s.demo_state_dir / ids.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    contract = _contract(s, ids)
    ensure_topics(contract)
    parts = Parts(s, ids, run_dir)
    summary = Summary()
    log(f"demo run {ids.run_id}: model_id {ids.model_id}, topics {ids.topic_prefix}*, logs in {run_dir}/logs")
    client = MaximumContinual(
        auto_deploy=False,
        inference_url=parts.node_url,
        **{k: v for k, v in contract.model_dump().items()},
    )
    per_eval = s.demo_heldout_prompts * s.demo_heldout_samples
    total = (s.demo_rounds + 1) * per_eval + s.demo_rounds * s.demo_examples_per_round
    try:
        parts.start()
        parts.wait_ready()
        log(f"processor, trainer and node up ({time.monotonic() - started:.0f} s); node {parts.node_url}")
        model = client.init_model(ids.model_id)
        observer = Observer(contract, ids.model_id, parts.log_file("trainer"))
        with NodeClient(parts.node_url) as node, tqdm(total=total, unit="pred", desc="v0 serving") as bar:
            demo = _Demo(s, model, bar)
            tqdm.write(format_header())
            batch = demo.next_batch()
            t0 = time.monotonic()
            held, train = asyncio.run(demo.serve(batch))
            serve_s = time.monotonic() - t0
            version, window = 0, train
            summary.rows.append(_row(0, 0, held, None, None, None, 0))
            tqdm.write(format_row(summary.rows[-1]))
            for rnd in range(1, s.demo_rounds + 1):
                t0 = time.monotonic()
                bar.set_description(f"round {rnd}: training v{version + 1}")
                asyncio.run(send_rewards(model, window))
                status = _wait_live(node, parts, ids.model_id, version, s.demo_version_timeout_s)
                version = status.models[ids.model_id].version
                fresh = split(observer.version_times(version, status))
                more = rnd < s.demo_rounds and _time_for_another(s, started, t0, serve_s)
                bar.set_description(f"v{version} serving")
                trained_on = window
                t1 = time.monotonic()
                held, window = asyncio.run(demo.serve(demo.next_batch() if more else []))
                serve_s = time.monotonic() - t1
                round_s = time.monotonic() - t0
                summary.rows.append(_row(rnd, version, held, trained_on, fresh, round_s, len(trained_on)))
                tqdm.write(format_row(summary.rows[-1]))
                if not more:
                    break
    finally:
        client.close()
        parts.stop()
        if not s.demo_keep_topics:
            _delete_topics(contract, ids.run_id)
    summary.minutes = (time.monotonic() - started) / 60  # start-up to teardown, all of it
    rows = summary.rows
    plot = write_plot(
        run_dir / "reward.png",
        [r.version for r in rows],
        [r.heldout for r in rows],
        [r.heldout_stderr for r in rows],
    )
    summary.write(run_dir / "results.json", {"run_id": ids.run_id, "settings": json.loads(s.model_dump_json())})
    log(f"freshness p50 split (s): {summary.freshness_p50()}")
    log(f"plot: {plot}; results: {run_dir / 'results.json'}")
    return summary.line()


def _time_for_another(s: DemoSettings, started: float, round_t0: float, serve_s: float) -> bool:
    """Whether another round fits the budget: this serve, the next training, a last evaluation
    (each as long as the last one) and half a minute to stop the parts."""
    now = time.monotonic()
    remaining = 2 * serve_s + (now - round_t0) + 30.0
    return (now - started + remaining) / 60 <= s.demo_minutes


def _row(
    rnd: int,
    version: int,
    held: list[Sample],
    trained_on: list[Sample] | None,
    fresh: Any,
    round_s: float | None,
    examples: int,
) -> RoundRow:
    sc = score([x.reward for x in held])
    return RoundRow(
        round=rnd,
        version=version,
        examples=examples,
        window_reward=score([x.reward for x in trained_on]).mean if trained_on else None,
        heldout=sc.mean,
        heldout_stderr=sc.stderr,
        heldout_n=sc.n,
        served_other=sum(1 for x in held if x.version != version),
        freshness=fresh,
        round_s=round_s,
    )
