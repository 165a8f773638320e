"""What the demo prints and writes: the per-round table, results.json, the final JSON line."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from demo.freshness import Freshness, p50

__all__ = ["RoundRow", "Summary", "format_header", "format_row"]


@dataclass
class RoundRow:
    """One line of the table: an adapter version and what it scored."""

    round: int  # 0: the base model
    version: int
    examples: int  # rewarded examples the version was trained on (its window)
    window_reward: float | None  # mean reward of that window (sampled from the previous version)
    heldout: float
    heldout_stderr: float
    heldout_n: int
    served_other: int  # held-out predictions served by another version (should be 0)
    freshness: Freshness | None
    round_s: float | None


def format_header() -> str:
    return (
        f"{'round':>5} {'adapter':>7} {'examples':>8} {'window r':>8} {'held-out r':>14} "
        f"{'fresh s':>7} {'join':>5} {'window':>6} {'train':>6} {'upload':>6} {'load':>5} {'round s':>7}"
    )


def format_row(row: RoundRow) -> str:
    f = row.freshness

    def num(value: float | None, width: int, digits: int = 1) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    return (
        f"{row.round:>5} {'v' + str(row.version):>7} {row.examples:>8} {num(row.window_reward, 8, 3)} "
        f"{row.heldout:>7.3f} ±{row.heldout_stderr:.3f} "
        f"{num(f.total_s if f else None, 7)} {num(f.join_s if f else None, 5)} {num(f.window_s if f else None, 6)} "
        f"{num(f.train_s if f else None, 6)} {num(f.upload_s if f else None, 6)} {num(f.load_s if f else None, 5)} "
        f"{num(row.round_s, 7)}"
    )


@dataclass
class Summary:
    rows: list[RoundRow] = field(default_factory=list)
    minutes: float = 0.0

    def line(self) -> dict[str, Any]:
        """The demo's last line."""
        fresh = [r.freshness.total_s for r in self.rows if r.freshness is not None]
        p = p50(fresh)
        return {
            "reward_before": round(self.rows[0].heldout, 4) if self.rows else None,
            "reward_after": round(self.rows[-1].heldout, 4) if self.rows else None,
            "rounds": len(self.rows) - 1 if self.rows else 0,
            "freshness_s_p50": None if p is None else round(p, 2),
            "minutes": round(self.minutes, 2),
        }

    def freshness_p50(self) -> dict[str, float | None]:
        """The median of each part of the freshness, over the versions."""
        parts = ("total_s", "join_s", "window_s", "train_s", "upload_s", "load_s")
        fs = [r.freshness for r in self.rows if r.freshness is not None]
        return {name: (None if (v := p50([getattr(f, name) for f in fs])) is None else round(v, 3)) for name in parts}

    def write(self, path: Path, extra: dict[str, Any]) -> None:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["freshness"] = r.freshness.as_dict() if r.freshness else None
            rows.append(d)
        data = {**extra, "result": self.line(), "freshness_p50": self.freshness_p50(), "rounds": rows}
        path.write_text(json.dumps(data, indent=2))
