"""``mc stack up|down|status``: the three services on loopback, as background processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from devstack.kafka import KafkaNode
from devstack.process import ManagedProcess
from devstack.s3 import MinioServer
from devstack.secrets import ensure_install_secrets
from devstack.settings import StackSettings
from devstack.vllm import VllmServer
from schemas.errors import StackError

__all__ = ["COMPONENTS", "Component", "ComponentStatus", "Stack", "wait_healthy"]

COMPONENTS = ("kafka", "s3", "vllm")


class Component(Protocol):
    name: str
    proc: ManagedProcess

    def start(self) -> None: ...
    def prepare(self) -> None: ...
    def healthy(self) -> tuple[bool, str]: ...


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    detail: str
    pid: int | None
    log_file: str


def wait_healthy(comp: Component, timeout_s: float, log: Callable[[str], None] = print) -> None:
    """Poll ``comp`` until it is healthy; StackError (naming its log) if it exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    detail = ""
    while time.monotonic() < deadline:
        comp.prepare()
        ok, detail = comp.healthy()
        if ok:
            log(f"{comp.name}: healthy ({detail})")
            return
        if comp.proc.exited_early() or (not comp.proc.running() and not comp.proc.pid_file.exists()):
            break
        time.sleep(1.0)
    state = "exited" if not comp.proc.running() else f"not healthy after {timeout_s:.0f} s"
    raise StackError(
        f"{comp.name} {state}: {detail}; see its log: {comp.proc.log_file}",
        component=comp.name,
        log_file=str(comp.proc.log_file),
    )


class Stack:
    def __init__(self, settings: StackSettings | None = None) -> None:
        if settings is None:
            # Secrets first: the settings read them from the state folder (schemas.settings).
            ensure_install_secrets(StackSettings().state_dir)
            settings = StackSettings()
        self.s = settings
        self.components: dict[str, Component] = {
            "kafka": KafkaNode(self.s),
            "s3": MinioServer(self.s),
            "vllm": VllmServer(self.s),
        }

    def _select(self, names: Iterable[str] | None) -> list[Component]:
        chosen = list(names or COMPONENTS)
        unknown = set(chosen) - set(COMPONENTS)
        if unknown:
            raise StackError(f"unknown component(s): {', '.join(sorted(unknown))}")
        return [self.components[n] for n in COMPONENTS if n in chosen]

    def up(self, names: Iterable[str] | None = None, *, log: Callable[[str], None] = print) -> None:
        """Start what is not running, then wait until everything is healthy. Idempotent."""
        comps = self._select(names)
        for comp in comps:
            ok, _ = comp.healthy()
            if comp.proc.running() or ok:
                log(f"{comp.name}: already running")
                continue
            log(f"{comp.name}: starting (log: {comp.proc.log_file})")
            try:
                comp.start()
            except Exception as exc:
                raise StackError(
                    f"{comp.name} failed to start: {exc} (log: {comp.proc.log_file})",
                    component=comp.name,
                    log_file=str(comp.proc.log_file),
                ) from exc
        for comp in comps:
            wait_healthy(comp, self.s.start_timeout_s, log)

    def down(self, names: Iterable[str] | None = None, *, log: Callable[[str], None] = print) -> None:
        # stop in reverse order: clients of Kafka first, the broker last
        for comp in reversed(self._select(names)):
            stopped = comp.proc.stop()
            log(f"{comp.name}: {'stopped' if stopped else 'not running'}")

    def status(self, names: Iterable[str] | None = None) -> list[ComponentStatus]:
        out = []
        for comp in self._select(names):
            pid = comp.proc.pid()
            ok, detail = comp.healthy()
            out.append(ComponentStatus(comp.name, pid is not None, ok, detail, pid, str(comp.proc.log_file)))
        return out
