"""The trainer's choice of cores beside vLLM's pinned worker (pure logic, and this machine's /proc)."""

from __future__ import annotations

import os

import pytest

from trainer.cpus import choose_cpus, vllm_worker_cores


def test_auto_leaves_vllms_worker_cores_alone() -> None:
    assert choose_cpus("auto", {0, 1}, {0}) == {1}
    assert choose_cpus("auto", {0, 1, 2, 3}, {0, 1}) == {2, 3}
    assert choose_cpus("auto", {0, 1}, set()) == {0, 1}  # no vLLM worker here
    assert choose_cpus("auto", {0}, {0}) == {0}  # nothing left: share rather than stop


def test_explicit_choices() -> None:
    assert choose_cpus("all", {0, 1}, {0}) == {0, 1}
    assert choose_cpus("1", {0, 1}, {0}) == {1}
    assert choose_cpus("0, 1", {0, 1}, set()) == {0, 1}
    with pytest.raises(ValueError, match="not among"):
        choose_cpus("5", {0, 1}, set())
    with pytest.raises(ValueError, match="auto"):
        choose_cpus("one", {0, 1}, set())


def test_vllm_worker_cores_reads_proc(tmp_path) -> None:
    me = tmp_path / str(os.getpid())
    me.mkdir()
    (me / "comm").write_text("VLLM::Worker\n")
    other = tmp_path / "1"
    other.mkdir()
    (other / "comm").write_text("python\n")
    (tmp_path / "self").mkdir()
    assert vllm_worker_cores(tmp_path) == os.sched_getaffinity(os.getpid())


def test_cpu_compute_precision_follows_the_setting_and_the_cpu(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from trainer import model

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert model.cpu_autocast_dtype("float32", cpu) is None
    assert model.cpu_autocast_dtype("bfloat16", cpu) is torch.bfloat16
    assert model.cpu_autocast_dtype("bfloat16", cuda) is None  # CUDA weights are bf16 already
    monkeypatch.setattr(model, "native_bf16", lambda: False)  # AVX2 only: bf16 would be emulated
    assert model.cpu_autocast_dtype("auto", cpu) is None
    monkeypatch.setattr(model, "native_bf16", lambda: True)  # AVX512-BF16 or AMX
    assert model.cpu_autocast_dtype("auto", cpu) is torch.bfloat16
