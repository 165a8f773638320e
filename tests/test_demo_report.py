"""The summary line (keys, before/after pools, rise interval) and the per-version table."""

from __future__ import annotations

import json

import pytest

from demo.freshness import VersionTimes, split
from demo.observe import LiveVersion
from demo.report import format_header, format_row, make_row, summarize, write_results
from demo.stats import rise, score

KEYS = ["reward_before", "reward_after", "rise", "ci_low", "ci_high", "versions", "freshness_s_p50", "minutes"]


def _live(version: int, total: float | None) -> LiveVersion:
    if total is None:
        return LiveVersion(version, 100.0 + version, 16, note="no manifest")
    t = VersionTimes.from_metrics(
        version, {"train_s": 30.0}, reward_at=0.0, joined_at=0.5, created_at=total - 1, live_at=total
    )
    return LiveVersion(version, total, 16, split(t))


REWARDS = {
    0: [0.0] * 24 + [1.0] * 8,  # 0.25 over 32 prompts
    1: [1.0] * 4 + [0.0] * 12,
    2: [1.0] * 6 + [0.0] * 10,
    3: [1.0] * 8 + [0.0] * 8,
    4: [1.0] * 10 + [0.0] * 6,
}


def test_the_line_has_the_keys_in_order_and_pools_the_newest_versions():
    versions = [_live(1, 60.0), _live(2, 80.0), _live(3, 70.0), _live(4, None), LiveVersion(5, None, 16)]
    s = summarize(REWARDS, versions, after_min_samples=48, minutes=13.456)
    assert list(s.line) == KEYS
    assert s.after_versions == [2, 3, 4] and s.after_samples == 48 and s.before_samples == 32
    after = [x for v in (2, 3, 4) for x in REWARDS[v]]
    expected = rise(score(REWARDS[0]), score(after))
    assert s.line["reward_before"] == 0.25
    assert s.line["reward_after"] == pytest.approx(24 / 48, abs=1e-4)
    assert s.line["rise"] == pytest.approx(expected.rise, abs=1e-4)
    assert s.line["ci_low"] == pytest.approx(expected.ci_low, abs=1e-4)
    assert s.line["ci_high"] == pytest.approx(expected.ci_high, abs=1e-4)
    assert s.line["versions"] == 4  # v5 was published but never went live
    assert s.line["freshness_s_p50"] == 70.0  # of the versions whose freshness is known
    assert s.line["minutes"] == 13.46
    json.dumps(s.line)


def test_a_run_where_nothing_went_live():
    s = summarize({0: [1.0, 0.0]}, [], after_min_samples=48, minutes=1.0)
    assert list(s.line) == KEYS
    assert s.line["reward_before"] == 0.5
    assert s.line["reward_after"] is None and s.line["rise"] is None and s.line["ci_low"] is None
    assert s.line["versions"] == 0 and s.line["freshness_s_p50"] is None


def test_rows_and_results(tmp_path):
    rows = [
        make_row(0, REWARDS[0], None),
        make_row(1, REWARDS[1], _live(1, 60.0)),
        make_row(5, [], LiveVersion(5, 9.0, 16)),
    ]
    assert rows[0].examples is None and rows[0].samples == 32 and rows[0].ci is not None
    assert rows[2].reward is None and rows[2].samples == 0
    header = format_header()
    for name in ("adapter", "samples", "live reward", "wait", "prep", "train", "save", "upload", "load", "unacc"):
        assert name in header
    line = format_row(rows[1])
    assert line.split()[:4] == ["v1", "16", "16", "0.250"]
    assert "-" in format_row(rows[0]) and format_row(rows[2]).split()[:4] == ["v5", "16", "0", "-"]
    s = summarize(REWARDS, [_live(1, 60.0)], after_min_samples=48, minutes=1.0)
    write_results(tmp_path / "r.json", s, rows, {"run_id": "x"})
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["run_id"] == "x" and list(data["result"]) == KEYS
    assert [v["version"] for v in data["per_version"]] == [0, 1, 5]
    assert data["per_version"][1]["freshness"]["train_s"] == 30.0
    assert data["per_version"][1]["freshness"]["wait_s"] is None
