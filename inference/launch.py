"""Start a node as its own process (``python -m inference``) and stop it cleanly (benchmarks, tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from inference.api import NodeClient
from schemas.errors import StackError

__all__ = ["free_port", "node_process"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def node_process(
    env: Mapping[str, str], *, port: int | None = None, log_path: Path | None = None, timeout_s: float = 60.0
) -> Iterator[NodeClient]:
    """A node on ``port`` (a free one by default) with ``env`` (``MC_*`` settings) added to ours.

    Yields once ``/health`` says the node has caught up with adapter-updates; SIGTERM on exit, so the
    node unloads its adapters from vLLM.
    """
    port = port or free_port()
    log = log_path.open("ab") if log_path else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference", "--port", str(port)],
        env={**os.environ, **env},
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    client = NodeClient(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + timeout_s
        while not client.health():
            if proc.poll() is not None:
                raise StackError(
                    f"the inference node exited with {proc.returncode}",
                    component="inference",
                    log_file=str(log_path) if log_path else None,
                )
            if time.monotonic() > deadline:
                raise StackError(f"the inference node was not healthy after {timeout_s} s", component="inference")
            time.sleep(0.2)
        yield client
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            log.close()
