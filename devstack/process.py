"""Background processes with a pid file and a log, started in their own session.

A service started by ``mc stack up`` outlives the command; ``down`` must find it again and leave
nothing behind. We record the pid *and* the process start time (from /proc), so a recycled pid
never makes us kill or trust a stranger, and we signal the whole process group, so the children a
server spawns (vLLM's engine core) go with it.

Starting is :func:`schemas.process.spawn`, the one way every part is started as a process; what this
module adds is the pid file, for services that outlive the command that started them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.process import group_alive, group_members, spawn

__all__ = ["ManagedProcess", "group_alive", "group_members", "run_checked"]


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of ``pid`` from /proc, None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields 3 (state) and 22 (starttime), counted after the ")" that closes the command name
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], fields[19]


def _start_time(pid: int) -> str | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


@dataclass
class ManagedProcess:
    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the live process this record names, else None (stale files are removed)."""
        try:
            record = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        pid = int(record["pid"])
        stat = _stat(pid)
        # an exited leader stays a zombie until its parent reaps it (we are that parent when we started
        # it): it is gone unless processes it spawned still run, which stop() must then find
        if stat is None or stat[1] != record.get("start") or (stat[0] == "Z" and not group_alive(pid)):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        # own session (spawn's): survives us, and dies as a group
        proc = spawn(argv, name=self.name, env=env, log=self.log_file, cwd=cwd)
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "start": _start_time(proc.pid)}))
        return proc.pid

    def members(self) -> list[int]:
        """Pids of the live processes in this process's group (the server and what it spawned)."""
        pid = self.pid()
        return [] if pid is None else group_members(pid)

    def exited_early(self) -> bool:
        """True when the pid file exists but its process is gone (crashed during start)."""
        return self.pid_file.exists() and self.pid() is None

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM the process group, then SIGKILL what is left. True if something was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.2)
        if group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while group_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True


def run_checked(
    argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> None:
    """Run a set-up command to completion, appending its output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} run: {' '.join(argv)}\n".encode())
        out.flush()
        subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            check=True,
        )
