"""``schemas.process``: the one way a part is started as a child process, checked on small stand-ins."""

from __future__ import annotations

import importlib.util
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from schemas.errors import StackError
from schemas.process import Part, PartProcess, group_members, http_ok, spawn, start_part

# a parent that ignores SIGTERM and a child of it that does too: only SIGKILL to the group ends both
_STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print(\\'child\\', \\'up\\', flush=True); time.sleep(300)'])\n"
    "print('parent', 'up', flush=True)\n"
    "time.sleep(300)\n"
)


def _both_ready(log: Path) -> bool:
    text = log.read_text()
    return "parent up" in text and "child up" in text  # (the header line holds the code, not these)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_part_runs_a_module_that_exists() -> None:
    assert Part.PROCESSOR.argv() == [sys.executable, "-m", "stream_processors"]
    assert Part.NODE.argv("--port", "1") == [sys.executable, "-m", "inference", "--port", "1"]
    for part in Part:
        module = part.python_args[1]
        assert importlib.util.find_spec(module) is not None, part
    assert {p.label for p in Part} == {"processor", "trainer", "node", "gate", "dashboard"}


def test_start_wait_ready_and_stop_with_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "logs" / "web.log"
    url = f"http://127.0.0.1:{port}/"
    with start_part("http.server", str(port), "--bind", "127.0.0.1", log=log, name="web") as proc:
        assert proc.wait_ready(lambda: http_ok(url), 20) < 20
        assert proc.running() and proc.returncode is None
    # the context manager stopped it: SIGTERM, which http.server does not handle
    assert proc.returncode == -signal.SIGTERM
    assert not group_members(proc.pid)
    assert not http_ok(url)
    text = log.read_text()
    assert text.startswith("\n=== ") and "start: " in text and "-m http.server" in text
    assert proc.stop() == -signal.SIGTERM  # twice is fine


def test_env_is_added_to_ours_and_the_log_is_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_FROM_PARENT", "inherited")
    log = tmp_path / "env.log"
    log.write_text("earlier run\n")
    code = "import os; print(os.environ['MC_FROM_PARENT'], os.environ['MC_OVERRIDE'])"
    proc = spawn([sys.executable, "-c", code], name="env", env={"MC_OVERRIDE": "given"}, log=log)
    assert proc.wait(30) == 0
    text = log.read_text()
    assert text.startswith("earlier run\n") and "inherited given" in text


def test_a_part_that_exits_during_start_fails_with_its_log(tmp_path: Path) -> None:
    proc = start_part("no_such_module_here", log=tmp_path / "x.log", name="ghost")
    with pytest.raises(StackError, match="the ghost exited with 1") as info:
        proc.wait_ready(lambda: False, 30)
    assert "No module named no_such_module_here" in str(info.value)
    assert info.value.component == "ghost" and info.value.log_file == str(tmp_path / "x.log")


def test_not_ready_in_time_is_an_error_and_leaves_the_process_to_the_caller(tmp_path: Path) -> None:
    proc = spawn([sys.executable, "-c", "import time; time.sleep(300)"], name="sleeper", log=None)
    try:
        with pytest.raises(StackError, match=r"the sleeper was not ready after 0\.5 s"):
            proc.wait_ready(lambda: False, 0.5, poll_s=0.05)
        assert proc.running()
    finally:
        assert proc.kill() == -signal.SIGKILL


def test_stop_kills_the_whole_group_after_the_grace_period(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    proc = spawn([sys.executable, "-c", _STUBBORN], name="stubborn", log=log)
    proc.wait_ready(lambda: _both_ready(log), 30, poll_s=0.05)
    assert len(group_members(proc.pid)) == 2  # it and its child
    started = time.monotonic()
    assert proc.stop(timeout_s=1.0) == -signal.SIGKILL
    assert 1.0 <= time.monotonic() - started < 10
    assert not group_members(proc.pid)


def test_kill_is_sigkill_to_the_group_at_once(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    proc = spawn([sys.executable, "-c", _STUBBORN], name="stubborn", log=log)
    proc.wait_ready(lambda: _both_ready(log), 30, poll_s=0.05)
    started = time.monotonic()
    assert proc.kill() == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert not group_members(proc.pid) and not proc.running()


def test_the_demo_starts_stops_and_logs_its_parts_through_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's wiring (which part, which settings, which log), with sleepers standing in for the parts."""
    import demo.services as services
    from demo.settings import DemoSettings
    from devstack.process import ManagedProcess

    calls: list[tuple[Part, tuple[str, ...], dict[str, str]]] = []

    def stand_in(part: Part, *args: str, env: dict[str, str], log: Path) -> PartProcess:
        calls.append((part, args, env))
        return spawn([sys.executable, "-c", "import time; time.sleep(300)"], name=part.label, env=env, log=log)

    monkeypatch.setattr(services, "start_part", stand_in)
    parts = services.Parts(DemoSettings(demo_cpu_split=False), services.RunIds("t"), tmp_path, canary=True)
    try:
        parts.start()
        parts.check_alive()
    finally:
        parts.stop()
    assert [c[0] for c in calls] == [Part.TRAINER, Part.PROCESSOR, Part.NODE, Part.GATE]
    env = {c[0]: c[2] for c in calls}
    assert all(e["MC_TOPIC_PREFIX"] == "demo-t." for e in env.values())
    assert env[Part.TRAINER]["MC_TRAINER_GROUP_ID"] == "demo-t-trainer"
    assert env[Part.PROCESSOR]["MC_PROCESSOR_WEB_PORT"] == str(parts.processor_port)
    assert calls[2][1] == ("--port", str(parts.node_port), "--log-level", "info")
    for name, proc in parts.procs.items():
        assert not proc.running() and proc.returncode == -signal.SIGTERM
        # where the smoke test (and mc stack) look for a part's log; no pid file: the run stops its parts
        managed = ManagedProcess(name, tmp_path)
        assert proc.log == managed.log_file and managed.log_file.exists() and not managed.pid_file.exists()
    parts.stop()  # twice is fine


@pytest.mark.kafka
def test_the_dashboard_starts_as_a_part(kafka, tmp_path: Path) -> None:
    """The one part without a ``__main__`` (``mc dashboard``): started, serving /metrics, stopped."""
    port = _free_port()
    env = {
        "MC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "MC_DASHBOARD_PROCESSOR_URLS": "",
        "MC_DASHBOARD_INFERENCE_URLS": "",
    }
    with start_part(Part.DASHBOARD, "--port", str(port), env=env, log=tmp_path / "dashboard.log") as proc:
        proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/metrics"), 60)
    assert proc.returncode is not None and not group_members(proc.pid)
    assert f"dashboard on http://127.0.0.1:{port}" in proc.log_tail()


@pytest.mark.kafka
@pytest.mark.vllm
@pytest.mark.slow
def test_auto_deploy_starts_a_node_through_it(topics, vllm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing answers at the SDK's (local) node URL: ``auto_deploy`` starts ``python -m inference`` there,
    with our environment, in its own session; it is stopped here only because this is a test."""
    from maximum_continual import deploy
    from maximum_continual.settings import ClientSettings

    settings = topics()
    # what the node reads: this test's topics, its own adapter cache and node id (inherited from us)
    monkeypatch.setenv("MC_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("MC_NODE_ADAPTER_CACHE_DIR", str(tmp_path / "adapters"))
    monkeypatch.setenv("MC_NODE_ID", f"auto-deploy-{tmp_path.name}")
    started: list[PartProcess] = []

    def recording_start(*args: Any, **kwargs: Any) -> PartProcess:
        started.append(start_part(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(deploy, "start_part", recording_start)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    client_settings = ClientSettings(
        inference_url=url,
        topic_prefix=settings.topic_prefix,
        kafka_bootstrap=vllm.kafka_bootstrap,
        vllm_url=vllm.vllm_url,
    )
    # Kafka and vLLM answer (the fixtures'): only the node is started, never `mc stack up`
    assert deploy.kafka_answers(client_settings.kafka_bootstrap) and deploy.vllm_answers(client_settings.vllm_url)
    said: list[str] = []
    try:
        assert not deploy.inference_answers(url)
        deploy.ensure_local_stack(client_settings, log=said.append)
        assert deploy.inference_answers(url)
        (node,) = started
        assert node.name == "node" and node.running()
        assert node.popen.args[-3:] == ["inference", "--port", str(port)]  # type: ignore[index]
        assert node.log is not None and f"-m inference --port {port}" in node.log.read_text()
        assert said == [f"auto_deploy: starting an inference node on port {port} (log: {node.log})"]
        deploy.ensure_local_stack(client_settings, log=said.append)  # it answers now: nothing more starts
        assert len(started) == 1
    finally:
        for proc in started:
            proc.stop(60)
