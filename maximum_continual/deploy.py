"""``auto_deploy``: bring the local stack up when nothing answers.

Only for services configured on this machine (loopback): a remote Kafka, vLLM or node that does not
answer is an error, never a reason to start a local one. Kafka, S3 and vLLM come up through the
project's own ``mc stack up``; the inference node is started (:func:`schemas.process.start_part`, the
one way every part is started) as a background process in its own session that outlives the app,
like the rest of the local stack; its log is in the user cache
(``~/.cache/maximum-continual/inference-node.log``).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from maximum_continual.settings import ClientSettings
from schemas.errors import StackError
from schemas.process import Part, start_part

__all__ = ["ensure_local_stack", "inference_answers", "kafka_answers", "vllm_answers"]

_log = logging.getLogger(__name__)
_LOCAL = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def kafka_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def _http_ok(url: str, accept: tuple[int, ...] = (200,)) -> bool:
    try:
        return httpx.get(url, timeout=3.0).status_code in accept
    except httpx.HTTPError:
        return False


def vllm_answers(vllm_url: str) -> bool:
    return _http_ok(f"{vllm_url.rstrip('/')}/v1/models", accept=(200, 401))  # 401: up, wants its API key


def inference_answers(url: str) -> bool:
    return _http_ok(f"{url.rstrip('/')}/health", accept=(200, 503))  # 503: up, still catching up


def _is_local(host: str | None) -> bool:
    return (host or "") in _LOCAL


def ensure_local_stack(s: ClientSettings, log: Callable[[str], None] = _log.info) -> None:
    """Start what does not answer (Kafka, S3 and vLLM via ``mc stack up``; then the node)."""
    need_stack = not kafka_answers(s.kafka_bootstrap) or not vllm_answers(s.vllm_url)
    if need_stack:
        hosts = [s.kafka_bootstrap.rpartition(":")[0], urlsplit(s.vllm_url).hostname]
        if not all(_is_local(h) for h in hosts):
            raise StackError("Kafka or vLLM does not answer and is not on this machine: not starting anything")
        log("auto_deploy: starting the local stack (mc stack up)")
        result = subprocess.run(
            [sys.executable, "-m", "mc_cli.main", "stack", "up"], check=False, timeout=s.deploy_timeout_s
        )
        if result.returncode != 0:
            raise StackError(f"mc stack up failed with exit code {result.returncode}", component="stack")
    if not s.inference_url or inference_answers(s.inference_url):
        return
    parts = urlsplit(s.inference_url)
    if not _is_local(parts.hostname):
        raise StackError(f"the inference node at {s.inference_url} does not answer and is not on this machine")
    log_path = Path.home() / ".cache" / "maximum-continual" / "inference-node.log"
    log(f"auto_deploy: starting an inference node on port {parts.port or 80} (log: {log_path})")
    # never stopped here: the node outlives the app, like the rest of the local stack
    node = start_part(Part.NODE, "--port", str(parts.port or 80), log=log_path)
    node.wait_ready(lambda: inference_answers(s.inference_url or ""), 120.0, poll_s=0.5)
