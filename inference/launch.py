"""Start a node as its own process (``python -m inference``) and stop it cleanly (benchmarks, tests).

Starting, waiting and stopping are :mod:`schemas.process`'s, the one way every part is started.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from inference.api import NodeClient
from schemas.process import Part, start_part

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

    Yields once ``/health`` says the node has caught up with adapter-updates; SIGTERM on exit (SIGKILL
    after 60 s), so the node unloads its adapters from vLLM.
    """
    port = port or free_port()
    proc = start_part(Part.NODE, "--port", str(port), env=env, log=log_path)
    client = NodeClient(f"http://127.0.0.1:{port}")
    try:
        proc.wait_ready(client.health, timeout_s)
        yield client
    finally:
        client.close()
        proc.stop(60.0)
