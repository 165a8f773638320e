"""``mc bench learn``: does the trainer, with its own defaults, learn from live rewards?

Each run is the live loop of ``mc demo`` (:func:`demo.run.run_live`: fresh topics; processor,
trainer with its own defaults, node; new prompts answered by the live version, rewarded at once) on
one task and one seed within ``--minutes``. Tasks: the demo's arithmetic, a shop whose prices only a
tool knows (several agent steps), questions about short lists (:mod:`demo.bench_tasks`). The
robustness cases (:mod:`demo.bench_cases`) run one task with noisy or constant sent rewards.

Per task it prints the base model's reward, the last versions', the rise with its 95% interval over
prompts (pooled over seeds: :mod:`demo.learn_stats`), each seed's rise, and the examples it took to
reach +0.2. The last stdout line is one JSON object; the same, with every run, goes to
``<out_dir>/learn-<time>.json`` and each run's folder to ``<out_dir>/learn-<time>/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.bench_cases import make_case
from demo.bench_tasks import make_task
from demo.learn_stats import RunOutcome, TaskResult, examples_to_rise, pool
from demo.settings import DemoSettings
from schemas.errors import MaximumContinualError

__all__ = ["Planned", "format_table", "plan_runs", "pool_saved", "run_bench", "run_one"]


@dataclass(frozen=True, slots=True)
class Planned:
    """One run of the benchmark: a task, maybe a robustness case, a seed."""

    task: str
    case: str | None
    seed: int

    @property
    def label(self) -> str:
        """The name its results go under: the task's, or ``task+case``."""
        return self.task if self.case is None else f"{self.task}+{self.case}"


def plan_runs(
    tasks: Sequence[str],
    seeds: int,
    cases: Sequence[str] = (),
    case_task: str = "arithmetic",
    case_seeds: int = 1,
    first_seed: int = 0,
) -> list[Planned]:
    """Seed by seed over the tasks (an interrupted benchmark has every task's first seeds), then
    the robustness cases. Seeds count from ``first_seed``: a benchmark can be extended by more seeds
    in a later invocation and the two pooled (:func:`pool_saved`)."""
    seed_range = range(first_seed, first_seed + seeds)
    runs = [Planned(task, None, seed) for seed in seed_range for task in tasks]
    case_range = range(first_seed, first_seed + case_seeds)
    return runs + [Planned(case_task, case, seed) for seed in case_range for case in cases]


def run_one(
    planned: Planned, settings: DemoSettings, *, stretch_windows: int, log: Callable[[str], None] = print
) -> RunOutcome:
    """One live run; a run that fails on the stack's side is recorded with its error, not raised."""
    from demo.run import run_live, trainer_window

    window = trainer_window()
    sent = None
    if planned.case is not None:
        sent = make_case(planned.case, window=window, stretch_windows=stretch_windows, seed=planned.seed)
    started = time.monotonic()
    try:
        live = run_live(
            make_task(planned.task),
            settings.model_copy(update={"demo_seed": planned.seed}),
            log,
            label=f"{planned.label} seed {planned.seed}",
            sent_reward=sent,
        )
    except MaximumContinualError as exc:
        log(f"{planned.label} seed {planned.seed} failed: {exc!r}")
        minutes = (time.monotonic() - started) / 60
        return RunOutcome(planned.label, planned.seed, [], [], None, 0, minutes, error=repr(exc))
    rewards = live.results.rewards()
    return RunOutcome(
        task=planned.label,
        seed=planned.seed,
        base=list(rewards.get(0, [])),
        last=[x for v in live.summary.after_versions for x in rewards[v]],
        examples_to_0_2=examples_to_rise(rewards, live.results.versions, min_samples=max(1, window // 2)),
        versions=int(live.summary.line["versions"]),
        minutes=float(live.summary.line["minutes"]),
        run_id=live.run_id,
        changed_rewards=None if sent is None else sent.changed,
        kinds_behind=tuple(k.kind for k in live.kinds if k.behind),
    )


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def format_table(results: dict[str, TaskResult]) -> list[str]:
    """One line per task: runs, base and last (prompts), rise [95% CI], examples to +0.2, seed rises."""
    head = f"{'task':<18} {'runs':>4} {'base (n)':>13} {'last (n)':>13} {'rise [95% CI]':>24} {'ex to 0.2':>9}  seeds"
    lines = [head]
    for name, r in results.items():
        line = r.line
        ci = f"[{_num(line['ci_low'], '+.3f')}, {_num(line['ci_high'], '+.3f')}]"
        rise = f"{_num(line['rise'], '+.3f')} {ci}"
        seeds = " ".join(_num(x, "+.2f") for x in r.seed_rises)
        if behind := line["kinds_behind"]:  # a kind that did not rise with the others, in so many runs
            seeds += "  behind: " + ", ".join(f"{k} in {n}" for k, n in behind.items())
        lines.append(
            f"{name:<18} {line['runs']:>4} {_num(r.base.mean) + f' ({r.base.n})':>13} "
            f"{_num(r.last.mean) + f' ({r.last.n})':>13} {rise:>24} {_num(line['examples_to_0_2'], '.0f'):>9}  {seeds}"
        )
    return lines


def _by_task(outcomes: Sequence[RunOutcome]) -> dict[str, TaskResult]:
    groups: dict[str, list[RunOutcome]] = {}
    for o in outcomes:
        groups.setdefault(o.task, []).append(o)
    return {name: pool(group) for name, group in groups.items()}


def pool_saved(paths: Sequence[Path], *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The per-task table and last line over the runs of several saved benchmarks
    (``learn-<time>.json``), as if they had been one. The same task and seed twice is refused:
    pooling a run with itself would halve its interval for nothing."""
    outcomes: list[RunOutcome] = []
    seen: dict[tuple[str, int], Path] = {}
    for path in paths:
        for d in json.loads(path.read_text())["runs"]:
            o = RunOutcome.from_dict(d)
            if (o.task, o.seed) in seen:
                raise ValueError(f"{o.task} seed {o.seed} is in both {seen[(o.task, o.seed)]} and {path}")
            seen[(o.task, o.seed)] = path
            outcomes.append(o)
    results = _by_task(outcomes)
    for line in format_table(results):
        log(line)
    return {
        "tasks": {name: r.line for name, r in results.items()},
        "minutes": round(sum(o.minutes for o in outcomes), 2),
    }


def run_bench(
    runs: Sequence[Planned],
    settings: DemoSettings,
    out_dir: Path,
    *,
    stretch_windows: int = 2,
    log: Callable[[str], None] = print,
    run: Callable[..., RunOutcome] = run_one,
) -> dict[str, Any]:
    """Every planned run in turn, then the per-task table; returns the last line (also written,
    with every run's outcome, to ``out_dir/learn-<time>.json``)."""
    started = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = settings.model_copy(update={"demo_state_dir": out_dir / f"learn-{stamp}"})
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[RunOutcome] = []
    results: dict[str, TaskResult] = {}
    last: dict[str, Any] = {}
    for i, planned in enumerate(runs, 1):
        log(f"== run {i}/{len(runs)}: {planned.label}, seed {planned.seed}, {settings.demo_minutes:g} min")
        outcome = run(planned, settings, stretch_windows=stretch_windows, log=log)
        outcomes.append(outcome)
        log(f"== {json.dumps(outcome.as_dict())}")
        results = _by_task(outcomes)
        minutes = round((time.monotonic() - started) / 60, 2)
        last = {"tasks": {name: r.line for name, r in results.items()}, "minutes": minutes}
        data = {  # written after every run: an interrupted benchmark keeps what it measured
            "result": last,
            "complete": i == len(runs),
            "runs": [o.as_dict() for o in outcomes],
            "minutes_per_run": settings.demo_minutes,
            "stretch_windows": stretch_windows,
            "settings": json.loads(settings.model_dump_json()),
        }
        (out_dir / f"learn-{stamp}.json").write_text(json.dumps(data, indent=2))
    for line in format_table(results):
        log(line)
    return last
