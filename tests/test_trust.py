"""Trust boundaries in pure logic: id slugs, signed adapter updates, per-install secrets."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from devstack.secrets import SECRET_VARIABLES, ensure_install_secrets, read_secrets
from schemas.errors import ConfigurationError, InvalidEventError, UntrustedAdapterError
from schemas.events import AdapterUpdate, RewardEvent, TrainingWindow
from schemas.serde import decode
from schemas.settings import ContractSettings
from schemas.signing import sign_update, verify_update
from schemas.storage import adapter_uri

KEY = b"k" * 32
SHA = "a" * 64


def _update(**kw: object) -> AdapterUpdate:
    fields: dict[str, object] = {
        "model_id": "shop",
        "version": 3,
        "uri": adapter_uri("mc-adapters", "shop", 3),
        "files": {"adapter_config.json": SHA, "adapter_model.safetensors": SHA},
        "base_model": "base",
        "parent_version": 2,
        "window": TrainingWindow(example_count=16),
        "metrics": {"loss": 0.25},
    }
    return AdapterUpdate(**{**fields, **kw})


@pytest.mark.parametrize("bad", ["../../../tmp/evil", "a/b", "..", ".", "-x", "m@v9", "a b", "x" * 65, "", "é"])
def test_model_ids_that_could_become_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        RewardEvent(prediction_id="x", model_id=bad, reward=1.0)
    raw = RewardEvent(prediction_id="x", model_id="ok", reward=1.0).model_dump_json().replace('"ok"', f'"{bad}"')
    with pytest.raises(InvalidEventError):  # what every consumer gets: a typed error it dead-letters
        decode(raw.encode(), RewardEvent)


@pytest.mark.parametrize("good", ["shop", "demo-arith.v2", "A_1", "0"])
def test_slug_model_ids_pass(good: str) -> None:
    RewardEvent(prediction_id="x", model_id=good, reward=1.0)


def test_a_signed_update_verifies_after_a_round_trip_through_json() -> None:
    signed = sign_update(_update(), KEY)
    again = decode(signed.model_dump_json().encode(), AdapterUpdate)
    verify_update(again, KEY, "mc-adapters")
    verify_update(sign_update(AdapterUpdate(model_id="shop", version=0, base_model="b", rollback=True), KEY), KEY, "x")


@pytest.mark.parametrize(
    "change",
    [
        {"version": 4, "uri": adapter_uri("mc-adapters", "shop", 4)},
        {"files": {"adapter_config.json": SHA, "adapter_model.safetensors": "b" * 64}},
        {"parent_version": 1},
        {"rollback": True},
        {"metrics": {"loss": 0.5}},
        {"model_id": "other", "uri": adapter_uri("mc-adapters", "other", 3)},
    ],
)
def test_any_change_to_a_signed_update_breaks_its_signature(change: dict[str, object]) -> None:
    forged = sign_update(_update(), KEY).model_copy(update=change)
    with pytest.raises(UntrustedAdapterError) as err:
        verify_update(forged, KEY, "mc-adapters")
    assert err.value.reason == "bad_signature"


def test_unsigned_wrong_key_and_foreign_uri_are_refused() -> None:
    with pytest.raises(UntrustedAdapterError) as err:
        verify_update(_update(), KEY, "mc-adapters")
    assert err.value.reason == "unsigned"
    with pytest.raises(UntrustedAdapterError) as err:
        verify_update(sign_update(_update(), b"z" * 32), KEY, "mc-adapters")
    assert err.value.reason == "bad_signature"
    # Signed, but its files are another model's (or another bucket's): a trainer never writes that.
    for uri in (adapter_uri("mc-adapters", "victim", 3), adapter_uri("elsewhere", "shop", 3), "s3://mc-adapters/x/"):
        with pytest.raises(UntrustedAdapterError) as err:
            verify_update(sign_update(_update(uri=uri), KEY), KEY, "mc-adapters")
        assert err.value.reason == "foreign_uri"


def test_install_secrets_are_private_random_and_never_rewritten(tmp_path: Path) -> None:
    path = ensure_install_secrets(tmp_path / "state")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = read_secrets(path)
    assert set(first) == set(SECRET_VARIABLES) and all(len(v) >= 12 for v in first.values())
    assert ensure_install_secrets(tmp_path / "state") == path and read_secrets(path) == first
    other = read_secrets(ensure_install_secrets(tmp_path / "other"))
    assert all(other[k] != first[k] for k in SECRET_VARIABLES)  # per install
    # An older file lacking a key gets it added; the others stay (MinIO's data depends on them).
    path.write_text(f"MC_S3_ACCESS_KEY={first['MC_S3_ACCESS_KEY']}\n")
    upgraded = read_secrets(ensure_install_secrets(tmp_path / "state"))
    assert upgraded["MC_S3_ACCESS_KEY"] == first["MC_S3_ACCESS_KEY"] and set(upgraded) == set(SECRET_VARIABLES)


def test_settings_read_the_install_secrets_below_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MC_STATE_DIR", str(tmp_path))
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="mc stack up"):
        ContractSettings().s3_credentials()
    with pytest.raises(ConfigurationError, match="MC_ADAPTER_SIGNING_KEY"):
        ContractSettings().signing_key()
    assert ContractSettings().vllm_headers() == {}
    made = read_secrets(ensure_install_secrets(tmp_path))
    s = ContractSettings()
    assert s.s3_credentials() == (made["MC_S3_ACCESS_KEY"], made["MC_S3_SECRET_KEY"])
    assert s.signing_key() == made["MC_ADAPTER_SIGNING_KEY"].encode()
    assert s.vllm_headers() == {"Authorization": f"Bearer {made['MC_VLLM_API_KEY']}"}
    assert made["MC_S3_SECRET_KEY"] not in repr(s)  # masked when printed
    monkeypatch.setenv("MC_S3_ACCESS_KEY", "from-env")
    assert ContractSettings().s3_credentials()[0] == "from-env"


@pytest.mark.parametrize("created", ["0001-01-01T00:00:00+05:00", "1969-12-31T23:59:59Z", "9999-12-31T23:00:00-05:00"])
def test_dates_at_the_edge_of_the_calendar_are_refused_not_crashed_on(created: str) -> None:
    """Found in review: such a date passed validation and overflowed in the join's UTC conversion."""
    good = RewardEvent(prediction_id="x", model_id="m", reward=1.0).model_dump(mode="json")
    with pytest.raises(InvalidEventError):
        decode(json.dumps({**good, "created_at": created}).encode(), RewardEvent)


def test_the_sdk_api_key_is_masked_when_printed() -> None:
    from maximum_continual.settings import ClientSettings

    s = ClientSettings(api_key="app-token-0123456789")
    assert "app-token-0123456789" not in repr(s) and "app-token-0123456789" not in str(s)
