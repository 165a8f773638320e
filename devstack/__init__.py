"""The local stack behind ``mc stack``: Kafka (KRaft), MinIO and vLLM as background processes."""

from devstack.settings import KAFKA_VERSION, MINIO_MODULE, StackSettings
from devstack.stack import COMPONENTS, ComponentStatus, Stack

__all__ = ["COMPONENTS", "KAFKA_VERSION", "MINIO_MODULE", "ComponentStatus", "Stack", "StackSettings"]
