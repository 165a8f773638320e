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


def test_huge_pages_are_asked_for_before_torch_is_imported() -> None:
    """``mc trainer`` and ``mc bench trainer`` set torch's switch before torch is imported; once torch is
    imported it cannot change (torch reads it at its first allocation), and an explicit value wins."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "os.environ.pop('THP_MEM_ALLOC_ENABLE', None)\n"
        "os.environ['MC_TRAINER_BASE_MODEL_PATH'] = '/nonexistent'\n"
        "from trainer.cli import resolved_settings\n"
        "s = resolved_settings()\n"
        "assert s.huge_pages and 'torch' not in sys.modules\n"
        "assert os.environ['THP_MEM_ALLOC_ENABLE'] == '1'\n"
        "from trainer.cpus import enable_huge_pages\n"
        "os.environ['THP_MEM_ALLOC_ENABLE'] = '0'\n"
        "assert not enable_huge_pages(True)  # an explicit 0 wins\n"
        "os.environ.pop('THP_MEM_ALLOC_ENABLE')\n"
        "import torch\n"
        "assert not enable_huge_pages(True) and 'THP_MEM_ALLOC_ENABLE' not in os.environ\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MC_TRAINER_HUGE_PAGES"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    env["MC_TRAINER_HUGE_PAGES"] = "false"
    off = "import os\nos.environ.pop('THP_MEM_ALLOC_ENABLE', None)\nos.environ['MC_TRAINER_BASE_MODEL_PATH'] = '/x'\n"
    off += "from trainer.cli import resolved_settings\nresolved_settings()\n"
    off += "assert 'THP_MEM_ALLOC_ENABLE' not in os.environ\n"
    done = subprocess.run([sys.executable, "-c", off], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_free_heap_memory_is_handed_back_on_glibc() -> None:
    import platform

    from trainer.cpus import release_free_memory

    assert release_free_memory() is (platform.libc_ver()[0] == "glibc")
