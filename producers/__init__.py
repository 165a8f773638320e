"""The Kafka client side for apps: publish events, read events back, shape topics."""

from producers.admin import ensure_topics
from producers.consumer import Consumed, EventConsumer, RecordInfo
from producers.delivery import Delivery, DeliveryFuture
from producers.publisher import EventPublisher, producer_config
from producers.settings import ProducerSettings

__all__ = [
    "Consumed",
    "Delivery",
    "DeliveryFuture",
    "EventConsumer",
    "EventPublisher",
    "ProducerSettings",
    "RecordInfo",
    "ensure_topics",
    "producer_config",
]
