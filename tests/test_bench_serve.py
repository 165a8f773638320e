"""vLLM's dtype follows the CPU; ``mc bench serve`` compares the stack's vLLM with a plain one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack.cpu import choose_dtype, cpu_flags, prefers_bf16
from devstack.settings import StackSettings
from devstack.vllm import GROUPED_LORA_OPS, VllmServer, served_dtype, vllm_argv

EPYC_AVX2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2 sha_ni clzero"
XEON_SPR = "avx2 avx512f avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni avx512_fp16 amx_bf16 amx_tile amx_int8"
XEON_NO_AMX = "avx2 avx512f avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni avx512_fp16"


@pytest.mark.parametrize(
    ("flags", "bf16"),
    [
        (EPYC_AVX2, False),  # bf16 emulated: 19.5 tokens/s against 65 in float32
        ("avx2 avx512f avx512bw avx512_vnni", False),  # AVX-512 without its bf16 extension
        (XEON_NO_AMX, False),  # AVX512-BF16 alone: float32 measured 5-14% faster
        (XEON_SPR, True),  # AMX-BF16
        ("avx2 amx_bf16", True),
        ("", False),
        ("amx_bf16x avx512_bf16", False),  # whole flag names only
    ],
)
def test_dtype_from_flags(flags: str, bf16: bool) -> None:
    assert prefers_bf16(flags) is bf16
    assert prefers_bf16(flags.split()) is bf16
    assert choose_dtype(flags) == ("bfloat16" if bf16 else "float32")


def test_an_explicit_dtype_wins_over_the_cpu() -> None:
    assert choose_dtype(EPYC_AVX2, "bfloat16") == "bfloat16"
    assert choose_dtype(XEON_SPR, "float32") == "float32"
    assert choose_dtype(XEON_SPR, "auto") == "bfloat16"
    assert choose_dtype(XEON_NO_AMX, "bfloat16") == "bfloat16"


def test_cpu_flags_reads_the_first_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {EPYC_AVX2}\n\nprocessor\t: 1\nflags\t\t: other\n")
    assert cpu_flags(info) == frozenset(EPYC_AVX2.split())
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_argv_carries_the_chosen_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_VLLM_DTYPE", "float32")
    s = StackSettings()
    assert s.vllm_dtype == "float32"
    argv = VllmServer(s).argv(Path("/ckpt"))
    assert served_dtype(argv) == "float32" and "--enable-lora" in argv
    monkeypatch.delenv("MC_VLLM_DTYPE")
    auto = VllmServer(StackSettings()).argv(Path("/ckpt"))
    assert served_dtype(auto) == choose_dtype(cpu_flags())


def test_plain_argv_is_the_same_server_without_lora() -> None:
    s = StackSettings()
    lora = vllm_argv(s, Path("/ckpt"), port=8123, dtype="float32")
    plain = vllm_argv(s, Path("/ckpt"), port=8123, dtype="float32", lora=False)
    i = lora.index("--enable-lora")
    # --enable-lora --max-loras N --max-lora-rank R --worker-extension-cls devstack.vllm_lora.GroupedLoraOps
    assert lora[i + 5 : i + 7] == ["--worker-extension-cls", GROUPED_LORA_OPS]
    assert plain == lora[:i] + lora[i + 7 :]
    assert served_dtype(["x", "--dtype=bfloat16"]) == "bfloat16" and served_dtype(["x"]) == "auto"


@pytest.mark.vllm
@pytest.mark.slow
def test_the_plain_server_never_outlives_the_bench(vllm: StackSettings) -> None:
    """A baseline that cannot start fails the bench, and nothing of it is left running."""
    from devstack.bench_serve import run
    from devstack.process import ManagedProcess
    from schemas.errors import StackError

    s = vllm.model_copy(update={"vllm_extra_args": "--no-such-flag"})
    with pytest.raises(StackError, match="bench-serve-plain exited"):
        run(s, requests=2, max_tokens=4, rounds=1, log=lambda _msg: None)
    assert ManagedProcess("bench-serve-plain", s.state_dir).pid() is None
    left = subprocess.run(["pgrep", "-f", "--", "--no-such-flag"], capture_output=True, text=True).stdout.split()
    assert left == []
