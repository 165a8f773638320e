"""docker-compose.yml describes the same stack as ``mc stack``: names, ports and settings agree.

No Docker engine runs on our machines, so the file is parsed and checked, not started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack import StackSettings
from mc_cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PART_SERVICES = {"init", "processor", "trainer", "gate", "inference-node", "dashboard"}
#: settings that are per-install secrets: compose takes them from `mc stack secrets`' file, never literal
SECRET_VARIABLES = ("MC_S3_ACCESS_KEY", "MC_S3_SECRET_KEY", "MC_VLLM_API_KEY", "MC_ADAPTER_SIGNING_KEY")
#: the settings class each service's part reads (its MC_ variables must name fields of it)
SETTINGS_OF = {
    "init": "schemas.settings:ContractSettings",
    "processor": "stream_processors.settings:ProcessorSettings",
    "trainer": "trainer.settings:TrainerSettings",
    "gate": "gate.settings:GateSettings",
    "inference-node": "inference.settings:InferenceSettings",
    "dashboard": "dashboard.settings:DashboardSettings",
}


def _settings_fields(service: str) -> set[str]:
    import importlib

    module, name = SETTINGS_OF[service].split(":")
    return set(getattr(importlib.import_module(module), name).model_fields)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _published(service: dict[str, Any]) -> set[int]:
    return {int(str(p).split(":")[0]) for p in service.get("ports", [])}


def test_services_are_the_stack_and_one_per_part(compose: dict[str, Any]) -> None:
    assert {"kafka", "minio", "vllm", "init"} <= set(compose["services"])
    parts = set(compose["services"]) - {"kafka", "minio", "vllm", "init"}
    assert parts <= {"processor", "trainer", "gate", "inference-node", "dashboard"}


def test_only_the_node_and_the_dashboard_reach_the_host(compose: dict[str, Any]) -> None:
    """Kafka, MinIO, vLLM (which loads adapters on request) and the processor stay on the network."""
    from dashboard.settings import DashboardSettings
    from inference.settings import InferenceSettings

    svc = compose["services"]
    published = {name: _published(service) for name, service in svc.items() if service.get("ports")}
    assert published == {
        "inference-node": {InferenceSettings().node_port},
        "dashboard": {DashboardSettings().dashboard_port},
    }
    s = StackSettings()
    assert str(s.kafka_port) in svc["kafka"]["expose"]
    assert str(s.s3_port) in svc["minio"]["expose"]
    assert str(s.vllm_port) in svc["vllm"]["expose"]


def test_vllm_serves_the_base_model_with_runtime_lora(compose: dict[str, Any]) -> None:
    s = StackSettings()
    vllm = compose["services"]["vllm"]
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert vllm["environment"]["VLLM_API_KEY"].startswith("${MC_VLLM_API_KEY:?")
    cmd = " ".join(vllm["command"])
    assert "--enable-lora" in cmd
    assert f"--served-model-name {s.base_model_name}" in cmd
    assert f"--port {s.vllm_port}" in cmd
    assert f"--max-lora-rank {s.vllm_max_lora_rank}" in cmd


def test_parts_point_at_the_services_with_mc_settings(compose: dict[str, Any]) -> None:
    s = StackSettings()
    services = compose["services"]
    for name in PART_SERVICES & set(services):
        env = services[name]["environment"]
        assert env["MC_KAFKA_BOOTSTRAP"] == f"kafka:{s.kafka_port}"
        assert env["MC_S3_ENDPOINT"] == f"http://minio:{s.s3_port}"
        assert env["MC_VLLM_URL"] == f"http://vllm:{s.vllm_port}"
        assert env["MC_S3_BUCKET"] == s.s3_bucket
        for secret in SECRET_VARIABLES:  # required from the env file, never a constant
            assert env[secret].startswith(f"${{{secret}:?"), (name, secret)
        assert all(key.startswith("MC_") for key in env)
        # every variable names a real setting (a typo would be silently ignored by the part)
        assert {key.removeprefix("MC_").lower() for key in env} <= _settings_fields(name)
    minio_env = services["minio"]["environment"]
    assert minio_env["MINIO_ROOT_USER"].startswith("${MC_S3_ACCESS_KEY:?")
    assert minio_env["MINIO_ROOT_PASSWORD"].startswith("${MC_S3_SECRET_KEY:?")


def test_part_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    action = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    commands = set(action.choices or ())
    for name in PART_SERVICES & set(compose["services"]):
        assert compose["services"][name]["command"][0] in commands, name
