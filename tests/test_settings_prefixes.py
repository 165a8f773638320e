"""Each part's variables carry its prefix: no two parts read one name with two meanings (issue #15)."""

from __future__ import annotations

import warnings

import pytest

from dashboard.settings import DashboardSettings
from demo.settings import DemoSettings
from devstack.settings import StackSettings
from gate.settings import GateSettings
from inference.settings import InferenceSettings
from maximum_continual.settings import ClientSettings
from producers.settings import ProducerSettings
from schemas.settings import ContractSettings, env_name
from stream_processors.settings import ProcessorSettings
from trainer.settings import TrainerSettings

PARTS: tuple[type[ContractSettings], ...] = (
    InferenceSettings,
    ClientSettings,
    ProducerSettings,
    ProcessorSettings,
    DashboardSettings,
    TrainerSettings,
    GateSettings,
    DemoSettings,
    StackSettings,
)


def _declared_by(cls: type[ContractSettings], field: str) -> type:
    """The class whose body declares ``field`` (its meaning: description, default, bounds)."""
    return next(k for k in reversed(cls.__mro__) if field in getattr(k, "__annotations__", {}))


def test_no_two_parts_read_one_variable_with_different_meanings():
    readers: dict[str, set[tuple[type, str]]] = {}
    for cls in PARTS:
        for field in cls.model_fields:
            readers.setdefault(env_name(cls, field), set()).add((_declared_by(cls, field), field))
    clashes = {name: sorted(f"{k.__name__}.{f}" for k, f in who) for name, who in readers.items() if len(who) > 1}
    assert clashes == {}


def test_the_two_timeouts_the_review_found_are_now_apart():
    assert env_name(InferenceSettings, "request_timeout_s") == "MC_NODE_REQUEST_TIMEOUT_S"
    assert env_name(ClientSettings, "request_timeout_s") == "MC_SDK_REQUEST_TIMEOUT_S"
    assert env_name(TrainerSettings, "publish_timeout_s") == "MC_TRAINER_PUBLISH_TIMEOUT_S"
    assert env_name(ClientSettings, "publish_timeout_s") == "MC_SDK_PUBLISH_TIMEOUT_S"
    assert env_name(GateSettings, "publish_timeout_s") == "MC_GATE_PUBLISH_TIMEOUT_S"


def test_contract_fields_and_fields_named_after_their_part_keep_their_names():
    assert env_name(TrainerSettings, "kafka_bootstrap") == "MC_KAFKA_BOOTSTRAP"
    assert env_name(InferenceSettings, "node_id") == "MC_NODE_ID"  # not MC_NODE_NODE_ID
    assert env_name(ProcessorSettings, "processor_app_id") == "MC_PROCESSOR_APP_ID"
    assert env_name(GateSettings, "gate_margin") == "MC_GATE_MARGIN"
    assert env_name(StackSettings, "vllm_dtype") == "MC_VLLM_DTYPE"  # the dev stack has no part prefix


def test_the_new_name_wins_and_the_old_one_still_works_with_a_warning(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MC_REQUEST_TIMEOUT_S", "5")
    with pytest.warns(FutureWarning, match="MC_NODE_REQUEST_TIMEOUT_S"):
        assert InferenceSettings().request_timeout_s == 5.0
    monkeypatch.setenv("MC_NODE_REQUEST_TIMEOUT_S", "7")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name is set: nothing deprecated is read
        assert InferenceSettings().request_timeout_s == 7.0
    assert InferenceSettings(request_timeout_s=9).request_timeout_s == 9.0  # arguments first


def test_complex_values_parse_under_the_new_name(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MC_TRAINER_CANARY_MODELS", '{"shop": true}')
    assert TrainerSettings().canary_models == {"shop": True}
