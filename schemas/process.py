"""One way to start a part (processor, trainer, node, gate, dashboard) as a child process.

The demo, the benchmarks, the chaos runs, the SDK's auto-deploy and the test fixtures all start parts
the same way: ``python -m <part>`` with the caller's ``MC_*`` overrides on top of our environment, the
output appended to a log file, in a session of its own; then they wait until the part answers, and
stop it (SIGTERM to its process group, SIGKILL to what is left after a grace period) or kill it on
purpose (chaos, crash tests). :func:`start_part` and :class:`PartProcess` are that, once.

Why it lives in ``schemas``: every caller must be able to import it, the SDK included, and the SDK
depends on nothing but the contract package and its own extra. ``devstack`` is the dev-only local
stack: importing ``devstack.process`` runs ``devstack/__init__``, which imports the whole ``Stack``
(Kafka, MinIO, vLLM launchers and their settings), nothing an app's process should load to start one
node. How each part is run (``python -m trainer``, what ``docker-compose.yml`` runs too) is part of the
deployment contract, and this module needs only the standard library and ``schemas.errors``.
``devstack.process.ManagedProcess`` (``mc stack up``/``down``) builds on :func:`spawn` and adds what a
service that outlives the command needs: a pid file with the process's start time.

Signals go to the whole process group, so what a part spawned (the node's agent sandboxes) goes with
it. Exit codes are read from the child itself (never reaped behind ``subprocess``'s back), so a part
killed by SIGKILL reports ``-9``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO

from schemas.errors import StackError

__all__ = ["Part", "PartProcess", "group_alive", "group_members", "http_ok", "spawn", "start_part"]


class Part(Enum):
    """The parts that run as their own process, and how Python starts each one."""

    PROCESSOR = ("processor", ("-m", "stream_processors"))
    TRAINER = ("trainer", ("-m", "trainer"))
    NODE = ("node", ("-m", "inference"))
    GATE = ("gate", ("-m", "gate"))
    # the dashboard has no ``__main__``: it is the ``mc dashboard`` command
    DASHBOARD = ("dashboard", ("-m", "mc_cli.main", "dashboard"))

    def __init__(self, label: str, python_args: tuple[str, ...]) -> None:
        self.label = label
        self.python_args = python_args

    def argv(self, *args: str) -> list[str]:
        """The command line that runs this part with ``args``, under this interpreter."""
        return [sys.executable, *self.python_args, *args]


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes of group ``pgid``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(proc.name))
    return sorted(out)


def group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process of group ``pgid`` exists.

    Reaps a zombie leader that is our child: for groups whose leader no ``Popen`` tracks (a pid file's).
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie leader still "exists"; reap it if it is our child, and look for live members
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    return bool(group_members(pgid))


def http_ok(url: str, accept: Sequence[int] = (200,), timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers a GET with one of ``accept`` (a readiness check; standard library only)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status) in accept
    except urllib.error.HTTPError as exc:  # 4xx/5xx arrive as exceptions; 503 may mean "up, catching up"
        return exc.code in accept
    except (OSError, ValueError):
        return False


class PartProcess:
    """A child process in its own session, with its log: wait until ready, stop, kill.

    Also a context manager that stops the process on exit.
    """

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path | None) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: the signal that ended it); None while it runs."""
        return self.popen.poll()

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """The exit code once it exits; None if it still runs after ``timeout_s``."""
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, chars: int = 3000) -> str:
        if self.log is None:
            return ""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _error(self, message: str) -> StackError:
        where = f"; log: {self.log}\n{self.log_tail()}" if self.log else ""
        return StackError(f"{message}{where}", component=self.name, log_file=str(self.log) if self.log else None)

    def check_alive(self) -> None:
        """Raise :class:`StackError` (with the log's tail) if the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise self._error(f"the {self.name} exited with {code}")

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float, *, poll_s: float = 0.2) -> float:
        """Until ``ready()`` is true; the seconds it took. :class:`StackError` if the process exits first
        or ``timeout_s`` passes (the process is left as it is: the caller stops it)."""
        started = time.monotonic()
        while True:
            self.check_alive()
            if ready():
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise self._error(f"the {self.name} was not ready after {timeout_s:g} s")
            time.sleep(poll_s)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process group (the part and what it spawned)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def _gone(self) -> bool:
        # poll() reaps the leader through Popen (so returncode stays right); members may outlive it
        return self.popen.poll() is not None and not group_members(self.popen.pid)

    def kill(self) -> int:
        """SIGKILL the group now (a crash, on purpose); the leader's exit code."""
        self.signal(signal.SIGKILL)
        code = self.popen.wait()
        while not self._gone():
            time.sleep(0.05)
        return code

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the group, SIGKILL what is left after ``timeout_s``; the leader's exit code.

        Safe to call twice and on a process that already exited (its leftover group members still go).
        """
        if self._gone():
            return self.popen.returncode
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._gone():
            time.sleep(0.1)
        if not self._gone():
            self.kill()
        return self.popen.returncode

    def __enter__(self) -> PartProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def spawn(
    argv: Sequence[str],
    *,
    name: str,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> PartProcess:
    """Start ``argv`` in its own session with ``env`` on top of ours, output appended to ``log``
    (after a line that says when and what started; None: discarded)."""
    full_env = {**os.environ, **(env or {})}
    if log is None:
        popen = _popen(argv, full_env, subprocess.DEVNULL, cwd)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            out.flush()
            popen = _popen(argv, full_env, out, cwd)
    return PartProcess(name, popen, log)


def _popen(argv: Sequence[str], env: dict[str, str], out: int | IO[bytes], cwd: Path | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,  # own process group: signalled as a group, untouched by our terminal's ^C
    )


def start_part(
    part: Part | str,
    *args: str,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
    name: str | None = None,
) -> PartProcess:
    """Start ``part`` (or, given a module name, ``python -m <module>``: a test's wrapper) with ``args``.

    ``env``: settings (``MC_*``) added to this process's environment, which the part inherits.
    ``name``: what errors and logs call it (default: the part's label, or the module).
    """
    if isinstance(part, Part):
        argv, label = part.argv(*args), part.label
    else:
        argv, label = [sys.executable, "-m", part, *args], part
    return spawn(argv, name=name or label, env=env, log=log, cwd=cwd)
