"""Fixtures: the real stack once per session, fresh topics, groups, buckets and model ids per test.

The services are started by the project's own ``mc stack up`` (no Docker here); each fixture brings
up only the component it needs, so a unit-test run starts nothing. Tests never share topics or
buckets: each gets a unique topic prefix and bucket, removed afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from devstack import Stack, StackSettings
from devstack.secrets import ensure_install_secrets
from producers.admin import ensure_topics
from producers.settings import ProducerSettings
from schemas.topics import TopicKey, topic_name

_started: set[str] = set()

# Every part reads this checkout's secrets (S3, vLLM's key, the signing key) from the state folder:
# make them before any test builds settings, as `mc stack up` would on a fresh machine.
ensure_install_secrets(StackSettings().state_dir)


def _ensure_up(component: str) -> StackSettings:
    stack = Stack()
    if component not in _started:
        stack.up([component], log=lambda _msg: None)
        _started.add(component)
    return stack.s


@pytest.fixture(scope="session")
def kafka() -> StackSettings:
    """Settings of the running Kafka broker (started if needed)."""
    return _ensure_up("kafka")


@pytest.fixture(scope="session")
def s3() -> StackSettings:
    return _ensure_up("s3")


@pytest.fixture(scope="session")
def vllm() -> StackSettings:
    return _ensure_up("vllm")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topics(kafka: StackSettings) -> Iterator[Callable[..., ProducerSettings]]:
    """Factory: settings whose topic prefix is fresh, with every contract topic created."""
    from confluent_kafka.admin import AdminClient

    made: list[ProducerSettings] = []

    def make(**overrides: object) -> ProducerSettings:
        settings = ProducerSettings(topic_prefix=f"{unique('t')}.", **overrides)  # type: ignore[arg-type]
        ensure_topics(settings)
        made.append(settings)
        return settings

    yield make
    if made:
        admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap})
        names = [topic_name(key, s) for s in made for key in TopicKey]
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.exception()


@pytest.fixture
def group_id() -> Callable[[], str]:
    return lambda: unique("g")


@pytest.fixture
def model_id() -> Callable[[], str]:
    return lambda: unique("model")


@pytest.fixture
def bucket(s3: StackSettings) -> Iterator[str]:
    """A fresh, empty bucket on the real S3 server; emptied and removed afterwards."""
    from schemas.storage import s3_client

    client = s3_client(s3)
    name = unique("test")
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import importlib.util

    if not any("gpu" in item.keywords for item in items):
        return
    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
