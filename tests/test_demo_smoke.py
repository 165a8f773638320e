"""``mc demo`` against the real stack with tiny settings: the mechanics, not the learning.

The processes start and stop, an adapter version trained on the round's rewards goes live on the
node, the table and plot are written, the topics of the run are deleted, and the last stdout line
is the JSON object of the issue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.process import ManagedProcess

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]


def test_one_round_goes_live_and_everything_stops(kafka, s3, vllm, bucket, tmp_path):
    from confluent_kafka.admin import AdminClient

    argv = [sys.executable, "-m", "mc_cli.main", "demo", "--rounds", "1", "--examples", "2", "--heldout", "2"]
    argv += ["--samples", "1", "--minutes", "4", "--state-dir", str(tmp_path)]
    env = {**os.environ, "MC_S3_BUCKET": bucket}  # the adapters go to the test's own bucket, removed after
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    line = json.loads(last)
    assert list(line) == ["reward_before", "reward_after", "rounds", "freshness_s_p50", "minutes"]
    assert line["rounds"] == 1
    assert 0.0 <= line["reward_before"] <= 1.0 and 0.0 <= line["reward_after"] <= 1.0
    assert line["freshness_s_p50"] > 0

    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    results = json.loads((run_dir / "results.json").read_text())
    rows = results["rounds"]
    assert [r["version"] for r in rows] == [0, 1]  # v1 went live and answered the held-out problems
    assert rows[1]["served_other"] == 0 and rows[1]["examples"] == 2
    fresh = rows[1]["freshness"]
    parts = fresh["join_s"] + fresh["window_s"] + fresh["train_s"] + fresh["upload_s"] + fresh["load_s"]
    assert parts == pytest.approx(fresh["total_s"], abs=0.01)
    assert fresh["join_s"] >= 0 and fresh["train_s"] > 0 and fresh["load_s"] > 0
    assert (run_dir / "reward.png").read_bytes()[:4] == b"\x89PNG"

    for name in ("processor", "trainer", "node"):
        managed = ManagedProcess(name, run_dir)
        assert managed.log_file.exists()
        assert not managed.running() and not managed.pid_file.exists()
    admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap})
    run_id = results["run_id"]
    assert not [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"demo-{run_id}")]
