"""One builder of librdkafka configurations (issue #15)."""

from __future__ import annotations

import pytest

from producers.publisher import producer_config
from producers.settings import ProducerSettings
from schemas.kafka_config import kafka_config
from schemas.settings import ContractSettings


def test_connection_properties_reach_every_client(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MC_KAFKA_BOOTSTRAP", "broker:9093")
    monkeypatch.setenv("MC_KAFKA_PROPERTIES", '{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}')
    conf = kafka_config(ContractSettings(), {"group.id": "g"})
    assert conf == {
        "bootstrap.servers": "broker:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "group.id": "g",
    }
    produced = producer_config(ProducerSettings())
    assert produced["security.protocol"] == "SASL_SSL" and produced["enable.idempotence"] is True


def test_the_clients_own_keys_win():
    s = ContractSettings(kafka_properties={"client.id": "install"})
    assert kafka_config(s, {"client.id": "mine"})["client.id"] == "mine"
    assert kafka_config(s) == {"bootstrap.servers": s.kafka_bootstrap, "client.id": "install"}


def test_no_part_builds_its_own_librdkafka_configuration():
    """Every librdkafka client starts from kafka_config (TLS/SASL reach all of them); tests may build their own."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    packages = ("schemas", "producers", "stream_processors", "trainer", "inference", "gate", "maximum_continual")
    offenders = [
        str(path.relative_to(root))
        for package in (*packages, "dashboard", "demo", "devstack", "mc_cli")
        for path in (root / package).rglob("*.py")
        if path.name != "kafka_config.py" and '"bootstrap.servers"' in path.read_text()
    ]
    assert offenders == []
