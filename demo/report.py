"""What a live run prints and writes: the per-version table, the summary line, results.json.

A version's row is its live traffic (every prompt new, answered once by that version: held out by
construction) with a 95% interval over prompts, and the freshness split of the version itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.freshness import Freshness, p50, part_medians
from demo.observe import LiveVersion
from demo.stats import after_versions, rise, score

__all__ = ["Summary", "VersionRow", "format_header", "format_row", "make_row", "summarize", "write_results"]


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: int
    samples: int  # live prompts this version answered
    reward: float | None
    ci: float | None  # half width of the 95% interval
    examples: int | None  # the window it was trained on (None: the base model)
    live_at: float | None
    freshness: Freshness | None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "samples": self.samples,
            "reward": None if self.reward is None else round(self.reward, 4),
            "ci_half_width": None if self.ci is None else round(self.ci, 4),
            "examples": self.examples,
            "live_at": self.live_at,
            "freshness": None if self.freshness is None else self.freshness.as_dict(),
            "note": self.note,
        }


def make_row(version: int, rewards: Sequence[float], live: LiveVersion | None) -> VersionRow:
    sc = score(rewards)
    return VersionRow(
        version=version,
        samples=sc.n,
        reward=sc.mean,
        ci=sc.half_width,
        examples=live.examples if live is not None else None,
        live_at=live.live_at if live is not None else None,
        freshness=live.freshness if live is not None else None,
        note=live.note if live is not None else None,
    )


#: (column title, Freshness field) of the table's freshness split
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("fresh s", "total_s"),
    ("join", "join_s"),
    ("wait", "wait_s"),
    ("prep", "prepare_s"),
    ("train", "train_s"),
    ("save", "save_s"),
    ("upload", "upload_s"),
    ("load", "load_s"),
    ("unacc", "unaccounted_s"),
)


def format_header() -> str:
    cols = " ".join(f"{title:>7}" for title, _ in _COLUMNS)
    return f"{'adapter':>7} {'examples':>8} {'samples':>7} {'live reward (95% CI)':>20} {cols}"


def format_row(row: VersionRow) -> str:
    def num(value: float | None, digits: int = 1) -> str:
        return f"{'-':>7}" if value is None else f"{value:>7.{digits}f}"

    reward = "-" if row.reward is None else f"{row.reward:.3f}"
    if row.ci is not None:
        reward += f" ± {row.ci:.3f}"
    f = row.freshness
    cols = " ".join(num(getattr(f, name) if f is not None else None) for _, name in _COLUMNS)
    examples = "-" if row.examples is None else str(row.examples)
    line = f"{'v' + str(row.version):>7} {examples:>8} {row.samples:>7} {reward:>20} {cols}"
    return f"{line}  ({row.note})" if row.note else line


@dataclass(frozen=True, slots=True)
class Summary:
    line: dict[str, Any]  # the run's last stdout line
    before_samples: int
    after_versions: list[int]
    after_samples: int
    freshness_p50: dict[str, float | None]


def summarize(
    rewards: Mapping[int, Sequence[float]],
    versions: Sequence[LiveVersion],
    *,
    after_min_samples: int,
    minutes: float,
) -> Summary:
    """'before' is the base model's live traffic; 'after' the newest versions' (see
    :func:`demo.stats.after_versions`); the rise's interval is that of a difference of two means."""
    before = score(rewards.get(0, []))
    picked = after_versions({v: len(r) for v, r in rewards.items()}, after_min_samples)
    after = score([x for v in picked for x in rewards[v]])
    diff = rise(before, after)
    live = [v for v in versions if v.live_at is not None]
    fresh = [v.freshness for v in live if v.freshness is not None]
    p = p50([f.total_s for f in fresh])

    def r4(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    line = {
        "reward_before": r4(before.mean),
        "reward_after": r4(after.mean),
        "rise": r4(diff.rise),
        "ci_low": r4(diff.ci_low),
        "ci_high": r4(diff.ci_high),
        "versions": len(live),
        "freshness_s_p50": None if p is None else round(p, 2),
        "minutes": round(minutes, 2),
    }
    return Summary(line, before.n, picked, after.n, part_medians(fresh))


def write_results(path: Path, summary: Summary, rows: Sequence[VersionRow], extra: Mapping[str, Any]) -> None:
    data = {
        **extra,
        "result": summary.line,
        "before_samples": summary.before_samples,
        "after_versions": summary.after_versions,
        "after_samples": summary.after_samples,
        "freshness_p50": summary.freshness_p50,
        "per_version": [r.as_dict() for r in rows],
    }
    path.write_text(json.dumps(data, indent=2))
