"""One Apache Kafka 4.x node in KRaft mode (broker + controller), from Maven Central's jars."""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

from devstack.process import ManagedProcess, run_checked
from devstack.settings import KAFKA_VERSION, StackSettings
from schemas.errors import StackError
from schemas.kafka_config import kafka_config

__all__ = ["KafkaNode"]

_HERE = Path(__file__).parent / "kafka"


class KafkaNode:
    name = "kafka"

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.proc = ManagedProcess(self.name, settings.state_dir)
        self.data_dir = settings.state_dir / "data" / "kafka"
        self.config_file = settings.state_dir / "conf" / "kafka.properties"

    @property
    def libs_dir(self) -> Path:
        return self.s.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    def ensure_installed(self) -> None:
        """Copy Kafka's jars from Maven Central into the user cache once per version."""
        marker = self.libs_dir.parent / ".complete"
        if marker.exists():
            return
        if shutil.which("mvn") is None:
            raise StackError("Maven (mvn) is needed to fetch Kafka's jars", component=self.name)
        tmp = self.libs_dir.with_name("libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        run_checked(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(_HERE / "pom.xml"),
                f"-Dkafka.version={KAFKA_VERSION}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ],
            log=self.proc.log_file,
        )
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        tmp.rename(self.libs_dir)
        marker.write_text(KAFKA_VERSION)

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.s.kafka_heap}",
            f"-Xms{self.s.kafka_heap}",
            f"-Dlog4j2.configurationFile={_HERE / 'log4j2.yaml'}",
            "-cp",
            f"{self.libs_dir}/*",
            *args,
        ]

    def _write_config(self) -> None:
        host, port = self.s.kafka_bootstrap.rsplit(":", 1)
        ctl = self.s.kafka_controller_port
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{host}:{ctl}",
                    f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
                    f"advertised.listeners=PLAINTEXT://{host}:{port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir.resolve()}",
                    f"num.partitions={self.s.partitions}",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    f"message.max.bytes={self.s.max_event_bytes + 65_536}",
                    "log.cleaner.backoff.ms=5000",
                    "",
                ]
            )
        )

    def start(self) -> None:
        self.ensure_installed()
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            run_checked(
                self._java("kafka.tools.StorageTool", "format", "-t", _new_cluster_id(), "-c", str(self.config_file)),
                log=self.proc.log_file,
            )
        self.proc.start(self._java("kafka.Kafka", str(self.config_file)))

    def prepare(self) -> None:
        """Nothing to do once it answers."""

    def healthy(self) -> tuple[bool, str]:
        from confluent_kafka.admin import AdminClient

        try:
            md = AdminClient(kafka_config(self.s, {"log_level": 0})).list_topics(timeout=2)
        except Exception as exc:  # librdkafka raises KafkaException on timeout
            return False, f"no answer: {exc}"
        return True, f"{len(md.brokers)} broker(s), {len(md.topics)} topic(s)"


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 characters).

    One id in 64 would start with ``-``, which ``kafka-storage format -t`` parses as an option and
    fails on; Kafka's own ``Uuid.randomUuid`` draws again in that case, and so do we.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
