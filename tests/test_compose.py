"""docker-compose.yml describes the same stack as ``mc stack``: names, ports, settings and paths agree.

No Docker engine runs on our machines, so the file is parsed and checked, not started. Variables
are substituted as Compose does (``${VAR:-default}``, ``${VAR:?error}``), once with the defaults and
once with ``ops/kafka-ha.env`` (the three-broker profile).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
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


def _settings_variables(service: str) -> set[str]:
    """The environment variables the service's settings class reads (``MC_<PART>_<FIELD>`` for its own)."""
    import importlib

    from schemas.settings import env_name

    module, name = SETTINGS_OF[service].split(":")
    cls = getattr(importlib.import_module(module), name)
    return {env_name(cls, field) for field in cls.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _published(service: dict[str, Any]) -> set[int]:
    """Host ports (``HOST:CONTAINER`` or ``IP:HOST:CONTAINER``)."""
    return {int(str(p).split(":")[-2]) for p in service.get("ports", [])}


def _env_file(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {name: value for name, value in pairs}


#: what `mc stack secrets` writes (values do not matter here; compose refuses to start without them)
_SECRETS = {name: "x" for name in (*SECRET_VARIABLES, "MC_NODE_API_KEYS")}


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise KeyError(f"{name} is required: {arg}")
        return value if value or op != ":-" else arg

    text = re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, text.replace("$$", "\0"))
    return text.replace("\0", "$")


def _resolved(env: dict[str, str]) -> dict[str, Any]:
    """The file as compose runs it with ``env``: only the services of the active profiles."""
    data: dict[str, Any] = yaml.safe_load(_interpolate((ROOT / "docker-compose.yml").read_text(), env))
    profiles = set(filter(None, env.get("COMPOSE_PROFILES", "").split(",")))
    data["services"] = {
        name: svc
        for name, svc in data["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }
    return data


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    return _resolved(_SECRETS)


@pytest.fixture(scope="module")
def ha() -> dict[str, Any]:
    return _resolved({**_SECRETS, **_env_file(ROOT / "ops" / "kafka-ha.env")})


INFRA = {"kafka", "kafka-2", "kafka-3", "minio", "vllm", "init", "prometheus", "grafana"}


def test_services_are_the_stack_and_one_per_part(compose: dict[str, Any]) -> None:
    assert {"kafka", "minio", "vllm", "init", "prometheus", "grafana"} <= set(compose["services"])
    parts = set(compose["services"]) - INFRA
    assert parts <= {"processor", "trainer", "gate", "inference-node", "dashboard"}


def test_only_the_node_the_dashboard_and_grafana_reach_the_host(compose: dict[str, Any]) -> None:
    """Kafka, MinIO, vLLM (which loads adapters on request), the processor, the trainer and Prometheus
    stay on the network; Grafana is published on loopback only."""
    from dashboard.settings import DashboardSettings
    from inference.settings import InferenceSettings

    svc = compose["services"]
    published = {name: _published(service) for name, service in svc.items() if service.get("ports")}
    assert published == {
        "inference-node": {InferenceSettings().node_port},
        "dashboard": {DashboardSettings().dashboard_port},
        "grafana": {3000},
    }
    assert all(str(p).startswith("127.0.0.1:") for p in svc["grafana"]["ports"])
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


def test_parts_point_at_the_services_with_mc_settings(compose: dict[str, Any], single: dict[str, Any]) -> None:
    s = StackSettings()
    services = compose["services"]
    for name in PART_SERVICES & set(services):
        env = services[name]["environment"]
        assert single["services"][name]["environment"]["MC_KAFKA_BOOTSTRAP"] == f"kafka:{s.kafka_port}"
        assert str(single["services"][name]["environment"]["MC_REPLICATION_FACTOR"]) == "1"
        assert env["MC_S3_ENDPOINT"] == f"http://minio:{s.s3_port}"
        assert env["MC_VLLM_URL"] == f"http://vllm:{s.vllm_port}"
        assert env["MC_S3_BUCKET"] == s.s3_bucket
        for secret in SECRET_VARIABLES:  # required from the env file, never a constant
            assert env[secret].startswith(f"${{{secret}:?"), (name, secret)
        assert all(key.startswith("MC_") for key in env)
        # every variable names a real setting (a typo would be silently ignored by the part)
        assert set(env) <= _settings_variables(name), (name, set(env) - _settings_variables(name))
    minio_env = services["minio"]["environment"]
    assert minio_env["MINIO_ROOT_USER"].startswith("${MC_S3_ACCESS_KEY:?")
    assert minio_env["MINIO_ROOT_PASSWORD"].startswith("${MC_S3_SECRET_KEY:?")


def test_part_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    action = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    commands = set(action.choices or ())
    for name in PART_SERVICES & set(compose["services"]):
        assert compose["services"][name]["command"][0] in commands, name


# -- paths one service hands another ----------------------------------------------------------------

#: (service that names a path, how it names it, service that must open the same path)
PATH_HANDOFFS = (
    # the node downloads an adapter under MC_NODE_ADAPTER_CACHE_DIR and hands vLLM that folder (load_lora_adapter)
    ("inference-node", "env:MC_NODE_ADAPTER_CACHE_DIR", "vllm"),
    # `mc trainer` trains on the checkpoint vLLM serves, converted into the image's MC_CACHE_DIR
    ("trainer", "image:MC_CACHE_DIR", "vllm"),
)


def _image_env() -> dict[str, str]:
    """``ENV`` of the Dockerfile every part's image is built from."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in line[4:].split()))
    return env


def _mount(service: dict[str, Any], path: str) -> tuple[str, str]:
    """(volume, mount point) of the deepest mount holding ``path`` in ``service``."""
    best: tuple[str, str] | None = None
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if PurePosixPath(path).is_relative_to(target) and (best is None or len(target) > len(best[1])):
            best = (source, target)
    assert best is not None, f"{path} is on no volume of the service: it is its own container's"
    return best


def test_every_path_one_service_hands_another_is_on_one_mount_in_both(single: dict[str, Any]) -> None:
    services = single["services"]
    for giver, how, taker in PATH_HANDOFFS:
        kind, name = how.split(":")
        env = services[giver]["environment"] if kind == "env" else _image_env()
        assert name in env, f"{giver}: {name} must be set (a default under the home folder is that container's own)"
        path = env[name]
        assert PurePosixPath(path).is_absolute(), (giver, name, path)
        volume, target = _mount(services[giver], path)
        assert volume in single["volumes"], (giver, volume)
        assert (volume, target) in [tuple(str(v).split(":")[:2]) for v in services[taker].get("volumes", [])], (
            f"{taker} must mount {volume} at {target}, where {giver} puts {path}"
        )


def test_the_node_hands_vllm_the_path_of_its_cache_setting(single: dict[str, Any]) -> None:
    """The folder the node hands vLLM is derived from its settings: the compose value is the one it uses."""
    from inference.settings import InferenceSettings

    env = single["services"]["inference-node"]["environment"]
    cache = InferenceSettings(adapter_cache_dir=env["MC_NODE_ADAPTER_CACHE_DIR"]).adapter_cache_dir
    assert str(cache) == env["MC_NODE_ADAPTER_CACHE_DIR"]
    vllm_cmd = " ".join(single["services"]["vllm"]["command"])
    assert '"$(python -m devstack.checkpoint /cache)"' in vllm_cmd  # vLLM's model is on the same volume


def test_urls_one_service_hands_another_name_its_service_and_port(single: dict[str, Any]) -> None:
    from dashboard.settings import DashboardSettings
    from inference.settings import InferenceSettings
    from stream_processors.settings import ProcessorSettings
    from trainer.settings import TrainerSettings

    services = single["services"]
    port_of = {
        "processor": int(services["processor"]["environment"]["MC_PROCESSOR_WEB_PORT"]),
        "inference-node": int(services["inference-node"]["environment"]["MC_NODE_PORT"]),
        "trainer": int(services["trainer"]["environment"]["MC_TRAINER_METRICS_PORT"]),
        "dashboard": int(services["dashboard"]["environment"]["MC_DASHBOARD_PORT"]),
    }
    assert port_of["processor"] == ProcessorSettings().processor_web_port
    assert port_of["inference-node"] == InferenceSettings().node_port
    assert TrainerSettings(trainer_metrics_port=port_of["trainer"]).trainer_metrics_port == 8200
    assert port_of["dashboard"] == DashboardSettings().dashboard_port
    for name in port_of:  # the parts listen on every interface of their container
        host = next(v for k, v in services[name]["environment"].items() if k.endswith("_HOST"))
        assert host == "0.0.0.0", name
        assert str(port_of[name]) in services[name].get("expose", []) + [
            str(p).split(":")[-1] for p in services[name].get("ports", [])
        ], name
    dash = services["dashboard"]["environment"]
    assert dash["MC_DASHBOARD_PROCESSOR_URLS"] == f"http://processor:{port_of['processor']}"
    assert dash["MC_DASHBOARD_INFERENCE_URLS"] == f"http://inference-node:{port_of['inference-node']}"

    # Prometheus scrapes each part where it listens; Grafana reads Prometheus where it listens
    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:{port}" for name, port in port_of.items()}
    prometheus = services["prometheus"]
    assert "9090" in prometheus["expose"]
    mounted = {str(v).split(":")[0]: str(v).split(":")[1] for v in prometheus["volumes"]}
    assert mounted["./ops/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    grafana = {str(v).split(":")[0]: str(v).split(":")[1] for v in services["grafana"]["volumes"]}
    assert grafana["./ops/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "ops/grafana/provisioning/dashboards/maximum-continual.yml").read_text())
    assert grafana["./ops/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    for source in grafana:
        assert (source.startswith("./") and (ROOT / source).exists()) or source in single["volumes"], source


# -- the kafka-ha profile -------------------------------------------------------------------------


def _brokers(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        name: {k: str(v) for k, v in svc["environment"].items()}
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("apache/kafka")
    }


def test_one_broker_by_default(single: dict[str, Any]) -> None:
    brokers = _brokers(single)
    assert list(brokers) == ["kafka"]
    env = brokers["kafka"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1" and env["KAFKA_MIN_INSYNC_REPLICAS"] == "1"


def test_the_kafka_ha_profile_runs_three_brokers_with_replication_factor_3(ha: dict[str, Any]) -> None:
    brokers = _brokers(ha)
    assert len(brokers) == 3
    assert sorted(int(env["KAFKA_NODE_ID"]) for env in brokers.values()) == [1, 2, 3]
    assert len({env["CLUSTER_ID"] for env in brokers.values()}) == 1
    voters = {f"{env['KAFKA_NODE_ID']}@{name}:9093" for name, env in brokers.items()}
    advertised = set()
    for name, env in brokers.items():
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name  # one quorum of three
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092", name
        advertised.add(f"{name}:9092")
        for key in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        ):
            assert env[key] == "3", (name, key)
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"  # acks=all survives one broker down
    for name in PART_SERVICES & set(ha["services"]):
        env = ha["services"][name]["environment"]
        # topics (mc init), the processor's changelogs and every client: all three brokers, factor 3
        assert set(env["MC_KAFKA_BOOTSTRAP"].split(",")) == advertised, name
        assert str(env["MC_REPLICATION_FACTOR"]) == "3", name
    assert set(brokers) <= set(ha["services"]["init"]["depends_on"])
