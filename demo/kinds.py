"""The live reward by kind of prompt: a pooled rise can hide a kind that did not rise with the others.

A task's prompts may come in kinds (the arithmetic task's add / sub / mul; a prompt type with a
``kind`` attribute). In 14-minute demo runs where only the better-than-baseline samples were trained
on, two of five adapters learned to answer subtractions with ``+`` while additions and products
reached 0.8-1.0: the pooled live reward still read +0.36 and +0.57. So a run reports, for each kind,
its base model's reward (version 0) and its last versions' (the versions the summary pools as
'after'), and flags a kind as **behind** when, with 95% confidence each, both its rise is below the
other kinds' rise and its last reward is below theirs. The rise's test is the interval of
(after_k - before_k) - (after_rest - before_rest), Welch's standard error over the four independent
pools of prompts (every live prompt is new and answered once); the last reward's, Welch's for two.

Each test alone misleads. A kind that is simply harder (products start at 0.0 where additions start
at 0.3) ends lower without falling behind: it rose as much. A kind that started higher rises less
when every kind reaches 1.0 (a ceiling, seen in a demo run: additions 0.45 -> 0.94, the rest 0.2 ->
1.0). A kind that both rose less and ends lower did not move with the rest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from demo.stats import Rise, Score, rise, score
from demo.workload import Sample

__all__ = ["KindRow", "by_kind", "format_kinds", "rewards_by_kind"]


@dataclass(frozen=True, slots=True)
class KindRow:
    kind: str
    before: Score  # version 0's live prompts of this kind
    after: Score  # the last versions' live prompts of this kind
    rise: Rise  # after - before, Welch's interval
    vs_rest: Rise  # this kind's rise minus the other kinds' rise, with its 95% interval
    after_vs_rest: Rise  # this kind's last reward minus the other kinds', with its 95% interval

    @property
    def behind(self) -> bool:
        """Both its rise and its last reward are below the other kinds', each with 95% confidence."""
        return all(d.ci_high is not None and d.ci_high < 0 for d in (self.vs_rest, self.after_vs_rest))

    def as_dict(self) -> dict[str, Any]:
        def r4(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "before": r4(self.before.mean),
            "n_before": self.before.n,
            "after": r4(self.after.mean),
            "n_after": self.after.n,
            "rise": r4(self.rise.rise),
            "ci_low": r4(self.rise.ci_low),
            "ci_high": r4(self.rise.ci_high),
            "vs_rest": r4(self.vs_rest.rise),
            "vs_rest_ci_low": r4(self.vs_rest.ci_low),
            "vs_rest_ci_high": r4(self.vs_rest.ci_high),
            "after_vs_rest": r4(self.after_vs_rest.rise),
            "after_vs_rest_ci_low": r4(self.after_vs_rest.ci_low),
            "after_vs_rest_ci_high": r4(self.after_vs_rest.ci_high),
            "behind": self.behind,
        }


def rewards_by_kind(samples: Iterable[Sample]) -> dict[str, list[float]]:
    """kind -> the rewards of the samples of that kind, kinds sorted (samples without a kind are left out)."""
    out: dict[str, list[float]] = {}
    for s in samples:
        if s.kind is not None:
            out.setdefault(s.kind, []).append(s.reward)
    return dict(sorted(out.items()))


def _difference(a: Rise, b: Rise) -> Rise:
    """a - b for two rises over independent pools: the half-widths add in quadrature."""
    if a.rise is None or b.rise is None:
        return Rise(None, None, None)
    diff = a.rise - b.rise
    if a.ci_low is None or a.ci_high is None or b.ci_low is None or b.ci_high is None:
        return Rise(diff, None, None)
    half = math.hypot((a.ci_high - a.ci_low) / 2, (b.ci_high - b.ci_low) / 2)
    return Rise(diff, diff - half, diff + half)


def by_kind(samples: Sequence[Sample], after_versions: Sequence[int]) -> list[KindRow]:
    """One row per kind (sorted by name) over the samples that have one; ``[]`` when fewer than two
    kinds answered (nothing to compare). ``after_versions``: the versions pooled as 'after'."""
    before = rewards_by_kind(s for s in samples if s.version == 0)
    after_set = set(after_versions)
    after = rewards_by_kind(s for s in samples if s.version in after_set and s.version != 0)
    kinds = sorted({*before, *after})
    if len(kinds) < 2:
        return []

    def others(pools: dict[str, list[float]], kind: str) -> Score:
        return score([x for k, xs in pools.items() if k != kind for x in xs])

    rows = []
    for kind in kinds:
        mine = (score(before.get(kind, [])), score(after.get(kind, [])))
        rest = (others(before, kind), others(after, kind))
        mine_rise = rise(*mine)
        rows.append(KindRow(kind, *mine, mine_rise, _difference(mine_rise, rise(*rest)), rise(rest[1], mine[1])))
    return rows


def format_kinds(rows: Sequence[KindRow]) -> list[str]:
    """A line per kind: before -> after (prompts), the rise, its difference to the other kinds' rise;
    'BEHIND' marks a kind that rose less and ends lower than the others (see :attr:`KindRow.behind`)."""

    def num(x: float | None, fmt: str = ".2f") -> str:
        return "-" if x is None else format(x, fmt)

    lines = []
    for r in rows:
        ci = f"[{num(r.vs_rest.ci_low, '+.2f')}, {num(r.vs_rest.ci_high, '+.2f')}]"
        line = (
            f"  {r.kind:<16} {num(r.before.mean)} ({r.before.n}) -> {num(r.after.mean)} ({r.after.n}), "
            f"rise {num(r.rise.rise, '+.2f')}, vs the other kinds' rise {num(r.vs_rest.rise, '+.2f')} {ci}"
        )
        lines.append(f"{line}  BEHIND" if r.behind else line)
    return lines
