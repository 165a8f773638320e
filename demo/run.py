"""``mc demo``: the live learning loop, end to end, on the real stack.

1. A fresh run id: topic prefix, model_id, consumer groups, ports and a folder ``.mc/demo/<run>/``.
2. The run's topics; the processor, the trainer (its own defaults) and an inference node as
   background processes of the run.
3. The live loop (:mod:`demo.loop`): new prompts answered by the live version, their rewards sent
   at once, overlapping training; a row per version as its traffic ends.
4. The summary line, ``reward.png`` and ``results.json``; the processes stop (also on failure,
   Ctrl-C or SIGTERM) and the run's topics are deleted.

:func:`run_live` is steps 1-4 for any :class:`~demo.spec.TaskSpec` (what a benchmark calls);
:func:`run_demo` runs it with the arithmetic task.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from demo.canary import CanaryFeed, canary_enabled
from demo.kinds import KindRow, by_kind, format_kinds
from demo.loop import LiveResults, run_live_loop
from demo.observe import Observer
from demo.plot import write_plot
from demo.report import Summary, VersionRow, format_header, format_row, make_row, summarize, write_results
from demo.services import Parts, RunIds
from demo.settings import DemoSettings
from demo.spec import TaskSpec, TaskT
from demo.tasks import ArithmeticTask
from demo.workload import Sample
from inference import NodeClient
from maximum_continual import MaximumContinual
from producers.admin import ensure_topics
from schemas.kafka_config import kafka_config
from schemas.settings import ContractSettings

__all__ = ["LiveRun", "run_demo", "run_live", "trainer_window"]


@dataclass(frozen=True)
class LiveRun:
    run_id: str
    run_dir: Path
    results: LiveResults
    summary: Summary
    kinds: list[KindRow]  # the live reward by kind of prompt ([] for a task without kinds)


def _contract(settings: DemoSettings, ids: RunIds) -> ContractSettings:
    fields = {k: v for k, v in settings.model_dump().items() if k in ContractSettings.model_fields}
    return ContractSettings(**{**fields, "topic_prefix": ids.topic_prefix})


def _delete_topics(settings: ContractSettings, run_id: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(settings))
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"demo-{run_id}")]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.exception()


def trainer_window() -> int:
    """The window size the trainer runs with (its default, or MC_TRAINER_WINDOW_EXAMPLES, which the
    trainer process inherits): read to pace generation, never passed to the trainer."""
    from trainer import TrainerSettings

    return TrainerSettings().window_examples


def vllm_requests_running(vllm_url: str) -> float | None:
    """vLLM's ``num_requests_running`` (every client's, not only ours); None when unreadable."""
    try:
        text = httpx.get(f"{vllm_url.rstrip('/')}/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return None
    found = re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.eE+-]+)$", text, re.MULTILINE)
    return sum(float(v) for v in found) if found else None


def run_live(
    spec: TaskSpec[TaskT],
    settings: DemoSettings,
    log: Callable[[str], None] = print,
    label: str = "demo",
    sent_reward: Callable[[Sample], float] | None = None,
) -> LiveRun:
    """Start the parts, run the live loop on ``spec`` within ``demo_minutes``, stop everything,
    write ``results.json`` and ``reward.png`` into the run's folder. ``sent_reward``: see
    :func:`demo.loop.run_live_loop` (the measurement stays the spec's reward)."""
    s = settings
    started = time.monotonic()
    deadline = started + s.demo_minutes * 60  # start-up and teardown count
    ids = RunIds(f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
    run_dir = s.demo_state_dir / ids.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    contract = _contract(s, ids)
    window = trainer_window()
    ensure_topics(contract)
    canary = canary_enabled(ids.model_id)
    canary_feed: CanaryFeed | None = None
    parts = Parts(s, ids, run_dir, canary=canary)
    log(f"{label} run {ids.run_id}: model_id {ids.model_id}, topics {ids.topic_prefix}*, logs in {run_dir}/logs")
    client = MaximumContinual(auto_deploy=False, inference_url=parts.node_url, **contract.model_dump())
    try:
        parts.start()
        parts.wait_ready()
        log(f"processor, trainer and node up ({time.monotonic() - started:.0f} s); trainer window {window} examples")
        model = client.init_model(ids.model_id)
        with NodeClient(parts.node_url) as node, tqdm(unit="pred", desc="answered") as bar:
            feed = CanaryFeed(contract, ids.model_id, node) if canary else Observer(contract, ids.model_id, node)

            def on_sample(sample: Sample) -> None:
                bar.update(1)
                bar.set_description(f"v{sample.version} answered")

            tqdm.write(format_header())
            results = asyncio.run(
                run_live_loop(
                    spec,
                    s,
                    model=model,
                    feed=feed,
                    window=window,
                    deadline=deadline,
                    check_alive=parts.check_alive,
                    on_row=lambda row: tqdm.write(format_row(row)),
                    on_sample=on_sample,
                    log=tqdm.write,
                    sent_reward=sent_reward,
                )
            )
            if isinstance(feed, CanaryFeed):  # rows and freshness to when each version first answered
                canary_feed = feed
                results.versions = feed.resolved()
                results.rows = _canary_rows(results)
                tqdm.write("with the canary: freshness to the first answer (canary or live); how it ended")
                tqdm.write(format_header())
                for row in results.rows:
                    tqdm.write(format_row(row))
    finally:
        t_stop = time.monotonic()
        client.close()
        parts.stop()  # the node's death also ends what it still had in flight in vLLM
        if not s.demo_keep_topics:
            _delete_topics(contract, ids.run_id)
        teardown_s = time.monotonic() - t_stop
    minutes = (time.monotonic() - started) / 60
    running = vllm_requests_running(s.vllm_url)
    summary = summarize(
        results.rewards(), results.versions, after_min_samples=s.demo_after_min_samples, minutes=minutes
    )
    if canary_feed is not None:
        # versions: those that answered (as canary or live); the rest is how the gate decided
        summary.line.update({"canary": True, **canary_feed.counts()})
    kinds = by_kind(results.samples, summary.after_versions)
    served = [r for r in results.rows if r.reward is not None]
    plot = write_plot(
        run_dir / "reward.png",
        [r.version for r in served],
        [r.reward for r in served if r.reward is not None],
        [r.ci for r in served],
        counts=[r.samples for r in served],
    )
    extra: dict[str, Any] = {
        "run_id": ids.run_id,
        "task": spec.name,
        "window_examples": window,
        "stop_reason": results.stop_reason,
        "predictions": len(results.samples),
        "failed": results.failed,
        "cancelled_at_end": results.cancelled,
        "generation_s": round(results.generation_s, 1),
        "teardown_s": round(teardown_s, 1),
        "vllm_requests_running_after_stop": running,
        "settings": json.loads(s.model_dump_json()),
        "by_kind": {k.kind: k.as_dict() for k in kinds},
        "samples": [
            {"version": x.version, "reward": x.reward, "kind": x.kind, "started_at": x.started_at, "done_at": x.done_at}
            for x in results.samples
        ],
    }
    write_results(run_dir / "results.json", summary, results.rows, extra)
    log(
        f"stopped generating ({results.stop_reason}) after {results.generation_s:.0f} s; "
        f"{len(results.samples)} answered, {results.failed} failed, {results.cancelled} cancelled in flight; "
        f"teardown {teardown_s:.0f} s; vLLM requests running after it (all clients): {running}"
    )
    log(f"after = v{summary.after_versions} ({summary.after_samples} prompts), before = v0 ({summary.before_samples})")
    log(f"freshness p50 split (s): {summary.freshness_p50}")
    if kinds:
        log("live reward by kind of prompt, v0 -> after (prompts):")
        for line in format_kinds(kinds):
            log(line)
        if behind := [k.kind for k in kinds if k.behind]:
            log(f"WARNING: kinds behind the others (rose less and end lower, 95% each): {', '.join(behind)}")
    log(f"plot: {plot}; results: {run_dir / 'results.json'}")
    return LiveRun(ids.run_id, run_dir, results, summary, kinds)


def _canary_rows(results: LiveResults) -> list[VersionRow]:
    rewards = results.rewards()
    known = {v.version: v for v in results.versions}
    return [make_row(v, rewards.get(v, []), known.get(v)) for v in sorted({0, *known, *rewards})]


def run_demo(settings: DemoSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The demo: the live loop on arithmetic word problems; returns the summary line."""
    return run_live(ArithmeticTask(), settings, log).summary.line
