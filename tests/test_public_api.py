"""Each package's public surface is explicit and pinned; the light packages import without torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC = {
    "schemas": {
        "KEY_FIELDS",
        "SCHEMA_VERSION",
        "AdapterError",
        "AdapterUpdate",
        "AssistantTurn",
        "ConfigurationError",
        "ContractSettings",
        "DeliveryError",
        "Event",
        "EventTooLargeError",
        "InvalidEventError",
        "KafkaError",
        "MalformedEventError",
        "MaximumContinualError",
        "Message",
        "OffsetRange",
        "PredictionEvent",
        "PublishError",
        "RewardEvent",
        "SandboxError",
        "SchemaError",
        "StackError",
        "StorageError",
        "ToolCall",
        "TopicError",
        "TopicKey",
        "TopicSpec",
        "TrainingExample",
        "TrainingWindow",
        "UnsupportedFormatVersionError",
        "UnsupportedSchemaVersionError",
        "decode",
        "encode",
        "new_id",
        "partition_key",
        "topic_name",
        "topic_registry",
    },
    "producers": {
        "Consumed",
        "Delivery",
        "DeliveryFuture",
        "EventConsumer",
        "EventPublisher",
        "ProducerSettings",
        "RecordInfo",
        "ensure_topics",
        "producer_config",
    },
    "stream_processors": {
        "ProcessorApp",
        "ProcessorClient",
        "ProcessorSettings",
        "ProcessorStats",
        "RewardRow",
        "create_app",
        "run_worker",
    },
    "trainer": {"TrainerSettings"},
    "inference": {"InferenceSettings", "NodeClient", "NodeStatus", "Routes", "VERSION_FIELD", "VERSION_HEADER"},
    "gate": {"GateCore", "GateParams", "GateService", "GateSettings", "RewardStats", "Verdict", "decide"},
    "dashboard": {"Collector", "DashboardServer", "DashboardSettings", "LagReader", "LagRow"},
    "devstack": {"COMPONENTS", "KAFKA_VERSION", "MINIO_MODULE", "ComponentStatus", "Stack", "StackSettings"},
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_is_pinned_and_resolves(package: str) -> None:
    mod = importlib.import_module(package)
    assert set(mod.__all__) == PUBLIC[package]
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_every_error_has_the_one_root() -> None:
    import schemas

    errors = [getattr(schemas, n) for n in schemas.__all__ if n.endswith("Error")]
    assert all(issubclass(e, schemas.MaximumContinualError) for e in errors)


@pytest.mark.parametrize(
    "package", ["schemas", "producers", "inference", "gate", "dashboard", "stream_processors", "trainer"]
)
def test_imports_without_torch_or_vllm(package: str) -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['vllm'] = None; sys.modules['transformers'] = None\n"
        f"import {package}\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
