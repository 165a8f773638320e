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
PART_SERVICES = {"init", "processor", "trainer", "inference-node"}
#: the settings class each service's part reads (its MC_ variables must name fields of it)
SETTINGS_OF = {
    "init": "schemas.settings:ContractSettings",
    "processor": "stream_processors.settings:ProcessorSettings",
    "trainer": "trainer.settings:TrainerSettings",
    "inference-node": "inference.settings:InferenceSettings",
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
    assert parts <= {"processor", "trainer", "inference-node"}


def test_ports_match_the_settings_defaults(compose: dict[str, Any]) -> None:
    s = StackSettings()
    svc = compose["services"]
    assert s.kafka_port in _published(svc["kafka"])
    assert s.s3_port in _published(svc["minio"])
    assert s.vllm_port in _published(svc["vllm"])


def test_vllm_serves_the_base_model_with_runtime_lora(compose: dict[str, Any]) -> None:
    s = StackSettings()
    vllm = compose["services"]["vllm"]
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
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
        assert env["MC_S3_ACCESS_KEY"] == s.s3_access_key
        assert all(key.startswith("MC_") for key in env)
        # every variable names a real setting (a typo would be silently ignored by the part)
        assert {key.removeprefix("MC_").lower() for key in env} <= _settings_fields(name)
    minio_env = services["minio"]["environment"]
    assert minio_env["MINIO_ROOT_USER"] == s.s3_access_key
    assert minio_env["MINIO_ROOT_PASSWORD"] == s.s3_secret_key.get_secret_value()


def test_part_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    action = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    commands = set(action.choices or ())
    for name in PART_SERVICES & set(compose["services"]):
        assert compose["services"][name]["command"][0] in commands, name
