"""The numbers of ``mc bench learn``: one run's contribution, and a task's pooled result over seeds.

The unit of sampling is the prompt: every live prompt is new and answered once. A run gives its
base model's prompts ('base', version 0) and its last versions' prompts ('last': the newest versions
pooled to ``demo_after_min_samples``, as :func:`demo.report.summarize` picks them). Over seeds the
prompts of a task are **pooled**: base is the mean of every seed's version-0 prompts, last the mean
of every seed's last prompts, and the rise's 95% interval is Welch's for a difference of two means
with the prompt-level variance of each pool (:func:`demo.stats.rise`). That interval is conditional
on the runs that were made (their adapters); the spread between seeds is shown beside it as each
seed's own rise.

``examples_to_0_2``: in one run, the rewarded examples trained into the first version whose own live
reward reaches the run's base + 0.2 (over at least ``min_samples`` prompts; a version's reward on
fewer is too noisy to count); over seeds, the median, counting a run that never got there as
infinitely many (so the median is None when half the runs or more never did).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from demo.observe import LiveVersion
from demo.stats import Score, rise, score

__all__ = ["RunOutcome", "TaskResult", "examples_to_rise", "median_or_none", "pool"]

TARGET = 0.2


def examples_to_rise(
    rewards: Mapping[int, Sequence[float]],
    versions: Sequence[LiveVersion],
    *,
    target: float = TARGET,
    min_samples: int = 8,
) -> int | None:
    """Examples trained into the first version (v >= 1) whose live reward, over at least
    ``min_samples`` prompts, is at least version 0's + ``target``; None if none is.

    ``versions``: every version the trainer published, in order (one skipped by the node still
    consumed its window, so it counts toward the examples of the versions after it).
    """
    base = score(rewards.get(0, [])).mean
    if base is None:
        return None
    trained = 0
    for v in sorted(versions, key=lambda x: x.version):
        trained += v.examples
        sc = score(rewards.get(v.version, []))
        if sc.mean is not None and sc.n >= min_samples and sc.mean >= base + target - 1e-9:
            return trained
    return None


def median_or_none(values: Sequence[int | None]) -> int | float | None:
    """The median, None counting as infinity; None when the median is infinite or nothing was given
    (an int when it is a whole number)."""
    if not values:
        return None
    m = statistics.median(math.inf if v is None else float(v) for v in values)
    if math.isinf(m):
        return None
    return int(m) if m.is_integer() else m


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one run of a task contributes: its prompts' rewards at the base and the last versions."""

    task: str  # the task's name in the results ("arithmetic", "arithmetic+noise", ...)
    seed: int
    base: list[float]
    last: list[float]
    examples_to_0_2: int | None
    versions: int
    minutes: float
    run_id: str = ""
    changed_rewards: int | None = None  # rewards sent with another value than the true one (cases)
    kinds_behind: tuple[str, ...] = ()  # kinds of prompt whose rise was below the others' (demo.kinds)
    error: str | None = None  # the run failed: it contributes nothing

    def rise(self) -> float | None:
        return rise(score(self.base), score(self.last)).rise

    def as_dict(self) -> dict[str, Any]:
        b, last, r = score(self.base), score(self.last), self.rise()
        return {
            "task": self.task,
            "seed": self.seed,
            "run_id": self.run_id,
            "base": _r4(b.mean),
            "n_base": b.n,
            "last": _r4(last.mean),
            "n_last": last.n,
            "rise": _r4(r),
            "examples_to_0_2": self.examples_to_0_2,
            "versions": self.versions,
            "minutes": round(self.minutes, 2),
            "changed_rewards": self.changed_rewards,
            "kinds_behind": list(self.kinds_behind),
            "error": self.error,
            "base_rewards": self.base,  # per prompt: runs saved apart can be pooled later (`--pool`)
            "last_rewards": self.last,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunOutcome:
        """A run as :meth:`as_dict` saved it; ValueError if it lacks its per-prompt rewards (saved
        before they were kept: its means alone cannot be pooled)."""
        if d.get("error") is None and ("base_rewards" not in d or "last_rewards" not in d):
            raise ValueError(f"run {d.get('run_id') or d.get('task')!r} has no per-prompt rewards to pool")
        return cls(
            task=str(d["task"]),
            seed=int(d["seed"]),
            base=[float(x) for x in d.get("base_rewards", [])],
            last=[float(x) for x in d.get("last_rewards", [])],
            examples_to_0_2=d.get("examples_to_0_2"),
            versions=int(d.get("versions", 0)),
            minutes=float(d.get("minutes", 0.0)),
            run_id=str(d.get("run_id", "")),
            changed_rewards=d.get("changed_rewards"),
            kinds_behind=tuple(str(k) for k in d.get("kinds_behind", ())),
            error=d.get("error"),
        )


def _r4(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@dataclass(frozen=True, slots=True)
class TaskResult:
    base: Score
    last: Score
    line: dict[str, Any]  # the task's entry of the last line
    seed_rises: list[float | None]


def pool(outcomes: Sequence[RunOutcome]) -> TaskResult:
    """One task's result over its runs (failed runs left out): pooled prompts, Welch's interval."""
    ok = [o for o in outcomes if o.error is None]
    base = score([x for o in ok for x in o.base])
    last = score([x for o in ok for x in o.last])
    diff = rise(base, last)
    line = {
        "base": _r4(base.mean),
        "last": _r4(last.mean),
        "rise": _r4(diff.rise),
        "ci_low": _r4(diff.ci_low),
        "ci_high": _r4(diff.ci_high),
        "examples_to_0_2": median_or_none([o.examples_to_0_2 for o in ok]) if ok else None,
        "runs": len(ok),
        # kind -> the runs in which it did not rise with the other kinds (demo.kinds); {} when none did
        "kinds_behind": dict(sorted(Counter(k for o in ok for k in o.kinds_behind).items())),
    }
    return TaskResult(base, last, line, [o.rise() for o in ok])
