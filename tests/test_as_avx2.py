"""``scripts/as-avx2``: the processes it starts take the AVX2-only paths, whatever the CPU has."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, torch, torch.cpu as c
from trainer.model import native_bf16
print(json.dumps({
    "probes": [c._is_avx512_supported(), c._is_avx512_bf16_supported(),
               c._is_amx_tile_supported()],
    "capability": torch.backends.cpu.get_cpu_capability(),
    "native_bf16": native_bf16(),
}))
"""


def test_as_avx2_hides_avx512_bf16_and_amx_from_torch_vllm_and_the_trainer() -> None:
    out = subprocess.run(
        [str(ROOT / "scripts" / "as-avx2"), sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {"probes": [False] * 3, "capability": "AVX2", "native_bf16": False}


def test_as_avx2_sets_the_serving_dtype_and_the_isa_limits() -> None:
    out = subprocess.run(
        [str(ROOT / "scripts" / "as-avx2"), "env"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["MC_VLLM_DTYPE"] == "float32"
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["PYTHONPATH"].split(":")[0] == str(ROOT / "scripts" / "avx2")
