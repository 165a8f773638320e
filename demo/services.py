"""The parts the demo runs, as background processes of this run: processor, trainer, inference node,
and the canary gate when the trainer announces candidates (``MC_TRAINER_CANARY_ENABLED``).

Each gets the run's topic prefix and its own consumer group, ports and scratch folders (so a rerun,
or another demo beside it, shares nothing with this one) and writes its log to the run's folder.
:meth:`Parts.stop` takes down every process group it started, and is safe to call twice.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from demo.settings import DemoSettings
from schemas.errors import StackError
from schemas.process import Part, PartProcess, start_part

__all__ = ["Parts", "RunIds", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunIds:
    """The names that make one run independent of every other."""

    run_id: str

    @property
    def topic_prefix(self) -> str:
        return f"demo-{self.run_id}."

    @property
    def model_id(self) -> str:
        return f"demo-{self.run_id}"


@dataclass
class Parts:
    settings: DemoSettings
    ids: RunIds
    run_dir: Path
    node_port: int = field(default_factory=free_port)
    processor_port: int = field(default_factory=free_port)
    procs: dict[str, PartProcess] = field(default_factory=dict)
    #: the canary is on for the run's model (:func:`demo.canary.canary_enabled`): the gate runs too
    canary: bool = False
    #: this process's cores before :meth:`start` moved it onto the serving cores (restored by :meth:`stop`)
    own_cpus: set[int] | None = None

    @property
    def node_url(self) -> str:
        return f"http://127.0.0.1:{self.node_port}"

    @property
    def processor_url(self) -> str:
        return f"http://127.0.0.1:{self.processor_port}"

    def log_file(self, name: str) -> Path:
        # where mc stack keeps its services' logs, relative to the run's folder
        return self.run_dir / "logs" / f"{name}.log"

    def _env(self) -> dict[str, str]:
        s = self.settings
        return {
            "MC_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "MC_TOPIC_PREFIX": self.ids.topic_prefix,
            "MC_PARTITIONS": str(s.partitions),
            "MC_S3_ENDPOINT": s.s3_endpoint,
            "MC_S3_BUCKET": s.s3_bucket,
            "MC_VLLM_URL": s.vllm_url,
            "MC_BASE_MODEL_NAME": s.base_model_name,
        }

    def _start(self, part: Part, env: dict[str, str], *args: str) -> None:
        name = part.label
        self.procs[name] = start_part(part, *args, env={**self._env(), **env}, log=self.log_file(name))

    def start(self) -> None:
        run = self.run_dir.resolve()
        # the trainer first, with every core this process may use: it takes those no vLLM model worker
        # is bound to (MC_TRAINER_CPUS=auto) ...
        self._start(
            Part.TRAINER,
            # what it needs to run and nothing it learns with: its own defaults (window, learning
            # rate, LoRA) are what production runs, so they are what the demo shows
            {"MC_TRAINER_GROUP_ID": f"demo-{self.ids.run_id}-trainer", "MC_TRAINER_WORK_DIR": str(run / "trainer")},
        )
        # ... and everything else moves onto the worker's cores: on 2 cores the app's agent runs (a
        # sandbox process each), the node and the processor would otherwise take a third to half of
        # the trainer's one core (float32 windows of 30-44 s beside them, 27-31 s typically without)
        self._serve_on_worker_cores()
        self._start(
            Part.PROCESSOR,
            {
                "MC_PROCESSOR_APP_ID": f"demo-{self.ids.run_id}-processor",
                "MC_PROCESSOR_DATA_DIR": str(run / "processor"),
                "MC_PROCESSOR_WEB_PORT": str(self.processor_port),
                "MC_PROCESSOR_LOG_LEVEL": "warning",
                "MC_PROCESSOR_JOIN_TTL": "1h",
            },
        )
        self._start(
            Part.NODE,
            {"MC_NODE_ID": f"demo-{self.ids.run_id}", "MC_NODE_ADAPTER_CACHE_DIR": str(run / "node-adapters")},
            "--port",
            str(self.node_port),
            "--log-level",
            "info",
        )
        if self.canary:  # the trainer announces candidates: without the gate nothing new would serve
            self._start(Part.GATE, {})

    def _serve_on_worker_cores(self) -> None:
        """Bind this process (and so the children it starts from now on) to vLLM's worker cores,
        where there are such cores and others are left for the trainer."""
        if not self.settings.demo_cpu_split:
            return
        from trainer.cpus import vllm_worker_cores  # /proc only: no torch

        mine = os.sched_getaffinity(0)
        serving = vllm_worker_cores() & mine
        if serving and serving != mine:
            self.own_cpus = mine
            os.sched_setaffinity(0, serving)

    def _alive(self, name: str) -> None:
        if not self.procs[name].running():
            raise StackError(f"the {name} exited; see {self.log_file(name)}", component=name)

    def wait_ready(self) -> None:
        """Until the node is caught up and the processor's web server answers (the trainer: alive)."""
        deadline = time.monotonic() + self.settings.demo_start_timeout_s
        checks = {"node": f"{self.node_url}/health", "processor": f"{self.processor_url}/processor/"}
        while checks:
            for name in list(checks):
                self._alive(name)
                try:
                    if httpx.get(checks[name], timeout=2.0).status_code == 200:
                        del checks[name]
                except httpx.HTTPError:
                    pass
            self._alive("trainer")
            if checks and time.monotonic() > deadline:
                name = next(iter(checks))
                raise StackError(f"the {name} did not come up; see {self.log_file(name)}", component=name)
            time.sleep(0.5)

    def check_alive(self) -> None:
        for name in self.procs:
            self._alive(name)

    def stop(self) -> None:
        """SIGTERM every part at once and wait for all (SIGKILL after 30 s): a trainer busy with a
        window only stops after it, and waiting for the parts one by one would add up."""
        threads = [
            threading.Thread(target=proc.stop, kwargs={"timeout_s": 30.0}, name=f"stop-{name}")
            for name, proc in self.procs.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.own_cpus is not None:  # the next run (mc bench learn runs several) starts as this one did
            os.sched_setaffinity(0, self.own_cpus)
            self.own_cpus = None
