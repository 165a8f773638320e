"""One mechanism each (issue #15): names, builders and writers that live in one place and are reused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from schemas import node_api
from schemas.dead_letter import DeadLetter, dead_letter_bytes


def test_node_and_sdk_take_the_header_and_field_names_from_the_contract() -> None:
    import inference
    import inference.api
    import maximum_continual.llm as llm

    assert node_api.VERSION_HEADER == "x-mc-adapter-version" and node_api.VERSION_FIELD == "mc_adapter_version"
    for name in ("VERSION_HEADER", "VERSION_FIELD", "ADAPTER_FIELD", "Routes"):
        assert getattr(inference.api, name) is getattr(node_api, name)
    assert inference.VERSION_HEADER is llm.VERSION_HEADER is node_api.VERSION_HEADER


def test_parse_completion_reads_the_version_from_the_contracts_names() -> None:
    from maximum_continual.llm import parse_completion

    body = {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], node_api.VERSION_FIELD: 4}
    assert parse_completion(body, None).adapter_version == 4
    assert parse_completion(body, "7").adapter_version == 7


def test_the_sdk_does_not_import_the_inference_package() -> None:
    script = (
        "import sys, maximum_continual, maximum_continual.llm\n"
        "bad = sorted(m for m in sys.modules if m == 'inference' or m.startswith('inference.'))\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_one_dead_letter_builder_for_every_worker() -> None:
    import stream_processors.dead_letters

    assert stream_processors.dead_letters.dead_letter_bytes is dead_letter_bytes
    raw = dead_letter_bytes(
        reason="invalid",
        error="x" * 10_000,
        topic="mc.rewards",
        partition=2,
        offset=41,
        key=b"k",
        value=b"\x00\xff",
        producer="trainer",
    )
    letter = DeadLetter.model_validate_json(raw)
    assert (letter.reason, letter.source_topic, letter.source_partition, letter.source_offset) == (
        "invalid",
        "mc.rewards",
        2,
        41,
    )
    assert letter.key == b"k" and letter.value == b"\x00\xff" and letter.producer == "trainer"
    assert len(letter.error) == 8192  # cut, not refused
    none = DeadLetter.model_validate_json(
        dead_letter_bytes(reason="r", error="", topic="t", partition=0, offset=0, key=None, value=None, producer="")
    )
    assert none.key is None and none.value is None


def test_synthetic_adapters_are_written_by_safetensors(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    from inference.adapters import TARGET_MODULES, write_synthetic_adapter

    config = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    (tmp_path / "config.json").write_text(json.dumps(config))
    folder = write_synthetic_adapter(tmp_path, tmp_path / "a", seed=3, r=2)
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    assert len(tensors) == 2 * len(TARGET_MODULES) * 2
    a = tensors["base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight"]
    b = tensors["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"]
    assert a.dtype == np.float32 and a.shape == (2, 16) and b.shape == (8, 2)  # kv: 2 heads of 4
    again = load_file(str(write_synthetic_adapter(tmp_path, tmp_path / "b", seed=3, r=2) / "adapter_model.safetensors"))
    assert all(np.array_equal(again[k], v) for k, v in tensors.items())  # the seed decides the weights
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 2
