"""``SandboxProcess``: start, watch and kill one sandbox process (the app's side of ``child.py``).

Started with ``subprocess`` (``python -I``, a minimal environment, its own session, the pipe's end
as its only extra file descriptor), never by forking the app: the app has threads, and a forked
copy would hold the app's memory and objects. Its stderr goes to a temporary file, read back only
to explain a failed start.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from maximum_continual.sandbox import wire
from schemas.errors import SandboxError

__all__ = ["SandboxProcess"]

#: the whole environment of the process: none of the app's variables (keys, tokens); numeric
#: libraries told to start no thread pools (it has one thread, and RLIMIT_NPROC refuses more)
_ENV = {"LC_ALL": "C.UTF-8", **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")}
_PACKAGE = Path(__file__).resolve().parent
# The child must not run the SDK's __init__ (httpx, pydantic, the Kafka client: startup time and
# attack surface), so it registers the two packages as bare modules and imports child.py from them.
_BOOTSTRAP = """\
import sys, types
for name, path in {packages!r}:
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
from maximum_continual.sandbox.child import main
main({fd})
"""


class SandboxProcess:
    """One sandbox process, its end of the pipe and its stderr (kept for startup failures)."""

    def __init__(self, setup: dict[str, Any]) -> None:
        if not sys.executable:
            raise SandboxError("no Python executable to start the sandbox process with (sys.executable is empty)")
        self.started = time.perf_counter()
        self.ready_s: float | None = None
        # open for the process's life (closed by release): read when it fails to start
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        ours, theirs = multiprocessing.Pipe(duplex=True)
        packages = [("maximum_continual", str(_PACKAGE.parent)), ("maximum_continual.sandbox", str(_PACKAGE))]
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOTSTRAP.format(packages=packages, fd=theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                env=_ENV,
                cwd="/",
                start_new_session=True,  # the terminal's Ctrl-C goes to the app, which closes us
            )
        except OSError as exc:
            ours.close()
            self._stderr.close()
            raise SandboxError(f"cannot start the sandbox process: {exc}") from exc
        finally:
            theirs.close()
        self.channel = wire.Channel(ours)
        self._released = False
        with contextlib.suppress(OSError):  # it died at once: wait_ready reports why, with its stderr
            self.channel.send("init", setup)

    def wait_ready(self, timeout_s: float) -> None:
        if self.ready_s is not None:
            return
        try:
            ready = self.channel.poll(timeout_s) and self.channel.recv() == ("ready",)
        except (EOFError, OSError, wire.WireError):
            self.kill()
            raise SandboxError(f"the sandbox process failed to start ({self.death()}){self._stderr_tail()}") from None
        if not ready:
            self.kill()
            raise SandboxError(f"the sandbox process was not ready within {timeout_s:g} s{self._stderr_tail()}")
        self.ready_s = time.perf_counter() - self.started

    def kill(self) -> None:
        """SIGKILL the process and reap it (safe from any thread, idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def release(self) -> None:
        """Close the pipe and stderr; after :meth:`kill`, by the thread that last used the pipe."""
        if not self._released:
            self._released = True
            self.channel.close()
            self._stderr.close()

    def death(self) -> str:
        """Why the (dead or dying) process ended, in the model's words."""
        try:
            code = self.proc.wait(timeout=1.0)  # its pipe closes just before it can be reaped
        except subprocess.TimeoutExpired:
            self.kill()
            return "it stopped following the sandbox's protocol"
        if code == -signal.SIGXCPU:
            return "it used up its CPU time limit"
        if code == -signal.SIGKILL:
            return "killed by SIGKILL: its CPU time limit or the kernel's out-of-memory killer"
        if code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exit code {code}"

    def _stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        text = self._stderr.read().decode(errors="replace").strip()
        return f": {text}" if text else ""
