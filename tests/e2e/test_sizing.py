"""benchmarks/sizing.py: its parameter formula against transformers' own models, and the table it prints."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import sizing


@pytest.mark.parametrize("name", sorted(sizing.SHAPES))
def test_parameter_formula_matches_transformers_model(name):
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    s = sizing.SHAPES[name]
    common = dict(vocab_size=s["vocab"], hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                  num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], head_dim=s["head_dim"],
                  tie_word_embeddings=s["tied"])
    with torch.device("meta"):
        if s.get("experts"):
            model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**common, num_experts=s["experts"], moe_intermediate_size=s["moe_inter"],
                                                       num_experts_per_tok=s["top_k"], decoder_sparse_step=1))
        else:
            model = Qwen3ForCausalLM(Qwen3Config(**common, intermediate_size=s["inter"]))
    assert sizing.parameters(s)["total"] == sum(p.numel() for p in model.parameters())


def test_sizing_table_covers_every_gpu_config(tmp_path, capsys):
    out = tmp_path / "sizing.json"
    assert sizing.main(["--out", str(out)]) == 0
    rows = {r["config"]: r for r in json.loads(out.read_text())["configs"]}
    assert set(rows) == {f"configs/{c}" for c in sizing.CONFIGS}
    assert all(r["learner_fits"] and r["rollout_fits"] for r in rows.values()), capsys.readouterr().out
    small, big = rows["configs/qwen3_0.6b.yaml"], rows["configs/qwen3_8b.yaml"]
    assert small["params_b"] == pytest.approx(0.6, abs=0.06) and big["params_b"] == pytest.approx(8.2, abs=0.1)
    assert rows["configs/qwen3_moe.yaml"]["active_params_b"] == pytest.approx(3.3, abs=0.2)
