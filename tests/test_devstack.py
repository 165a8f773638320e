"""``mc stack``: process records, and a real up/status/down cycle on spare ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.kafka import _new_cluster_id
from devstack.process import ManagedProcess, group_alive

MC = [sys.executable, "-m", "mc_cli.main"]


def test_cluster_ids_never_look_like_an_option() -> None:
    """``kafka-storage format -t -abc`` fails: one random id in 64 used to start with ``-`` (a CI failure)."""
    ids = [_new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_managed_process_stops_the_whole_group(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", tmp_path)
    # a parent that spawns a child, like vLLM's API server and its engine core
    pid = proc.start(["bash", "-c", "sleep 300 & sleep 300; wait"])
    assert proc.running() and proc.pid() == pid
    time.sleep(0.3)
    members = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    assert len(members) >= 2
    assert proc.stop(timeout_s=5)
    assert not proc.running() and not proc.pid_file.exists()
    assert not group_alive(pid)  # (orphans may linger as zombies until init reaps them: not alive)
    assert proc.stop() is False  # idempotent


def test_stale_pid_record_is_not_trusted(tmp_path: Path) -> None:
    proc = ManagedProcess("ghost", tmp_path)
    proc.pid_file.parent.mkdir(parents=True)
    # our own pid, with a start time that is not ours: a recycled pid must not be taken for the service
    proc.pid_file.write_text(f'{{"pid": {os.getpid()}, "start": "1"}}')
    assert proc.pid() is None and not proc.pid_file.exists()


def test_a_server_that_exits_at_once_is_not_running(tmp_path: Path) -> None:
    """We are its parent: until reaped it is a zombie with its start time, and must not count as running."""
    proc = ManagedProcess("quitter", tmp_path)
    proc.start(["bash", "-c", "sleep 0.3; exit 3"])
    time.sleep(1.0)
    assert not proc.running() and not proc.pid_file.exists()


def _mc(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MC, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


@pytest.mark.kafka
@pytest.mark.s3
@pytest.mark.slow
def test_stack_up_status_down_on_spare_ports(kafka, s3, tmp_path: Path) -> None:
    """A second stack (own state dir and ports) comes up, reports healthy, and leaves nothing behind."""
    env = {
        "MC_STATE_DIR": str(tmp_path / "state"),
        "MC_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "MC_KAFKA_CONTROLLER_PORT": "19093",
        "MC_S3_ENDPOINT": "http://127.0.0.1:19000",
        "MC_MINIO_CONSOLE_PORT": "19001",
        "MC_KAFKA_HEAP": "256m",
    }
    try:
        up = _mc(env, "stack", "up", "kafka", "s3")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "topics: ensured" in up.stdout
        again = _mc(env, "stack", "up", "kafka", "s3")  # idempotent
        assert again.returncode == 0 and again.stdout.count("already running") == 2, again.stdout
        status = _mc(env, "stack", "status", "kafka", "s3")
        assert status.returncode == 0, status.stdout
        assert [line.split()[:2] for line in status.stdout.splitlines()] == [["kafka", "healthy"], ["s3", "healthy"]]
        pids = [int(line.split("pid=")[1].split()[0]) for line in status.stdout.splitlines()]
    finally:
        down = _mc(env, "stack", "down", "kafka", "s3")
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert not group_alive(pid), f"processes of group {pid} left behind"
    status = _mc(env, "stack", "status", "kafka", "s3")
    assert status.returncode == 1 and status.stdout.count(" down ") == 2, status.stdout


@pytest.mark.kafka
def test_failed_start_names_the_component_and_its_log(kafka, tmp_path: Path) -> None:
    env = {
        "MC_STATE_DIR": str(tmp_path / "state"),
        "MC_KAFKA_BOOTSTRAP": "127.0.0.1:19192",
        "MC_KAFKA_CONTROLLER_PORT": "19193",
        "MC_KAFKA_HEAP": "not-a-size",  # the JVM refuses to start
        "MC_START_TIMEOUT_S": "60",
    }
    out = _mc(env, "stack", "up", "kafka")
    assert out.returncode == 2
    assert "StackError: kafka" in out.stderr and "kafka.log" in out.stderr, out.stderr
    _mc(env, "stack", "down", "kafka")
