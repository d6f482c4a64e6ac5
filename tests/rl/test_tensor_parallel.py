"""Tensor-parallel vLLM (rollout.tensor_parallel_size): the resources and head counts are named config
errors, and a TP=2 engine (two worker processes, one core each on CPU) generates what a TP=1 engine
does after the same weight load (the weights reach both shards through vLLM's own sharding loader)."""
from __future__ import annotations

import gc

import pytest
import torch
from safetensors.torch import load_file

from rl.config import ConfigError, load_config
from rl.rollout.engines import VLLMEngine, check_tensor_parallel

PROMPTS = [[151644, 872, 198, 17, 10, 17, 30], [151644, 872, 198, 18, 9, 20]]


def test_tensor_parallel_resources_and_heads_are_named_config_errors(tmp_path):
    from transformers import Qwen3Config

    with pytest.raises(ConfigError, match="gpus_per_worker=1 does not match rollout.tensor_parallel_size=2"):
        load_config("configs/tiny.yaml", ["rollout.tensor_parallel_size=2", "rollout.gpus_per_worker=1"])
    with pytest.raises(ConfigError, match="gpus_per_worker=2 does not match rollout.tensor_parallel_size=1"):
        load_config("configs/tiny.yaml", ["rollout.gpus_per_worker=2"])  # a second GPU nobody would use
    with pytest.raises(ConfigError, match="needs rollout.backend=vllm"):
        load_config("configs/tiny.yaml", ["rollout.tensor_parallel_size=2", "rollout.backend=hf"])
    load_config("configs/tiny.yaml", ["rollout.gpus_per_worker=0.5"])  # a shared GPU without TP is fine

    Qwen3Config(num_attention_heads=9, num_key_value_heads=3).save_pretrained(tmp_path)  # SmolLM2-135M's heads
    with pytest.raises(ConfigError, match=r"tensor_parallel_size=2 must divide the model's attention heads \(9\) "
                                          r"and its KV heads \(3"):
        check_tensor_parallel(str(tmp_path), 2)
    check_tensor_parallel(str(tmp_path), 3)


def _greedy(engine: VLLMEngine) -> list[list[int]]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    results = engine.llm.generate([TokensPrompt(prompt_token_ids=p) for p in PROMPTS],
                                  SamplingParams(temperature=0.0, max_tokens=12), use_tqdm=False)
    return [list(r.outputs[0].token_ids) for r in results]


@pytest.mark.slow
@pytest.mark.isolated
def test_tp2_engine_generates_as_tp1_after_a_weight_load(tiny_model):
    torch.manual_seed(0)
    new = {name: t + 0.5 * t.std() * torch.randn_like(t) for name, t in load_file(tiny_model / "model.safetensors").items()}
    new["lm_head.weight"] = new["model.embed_tokens.weight"]  # tied: vLLM keeps its own copy (rl/learner.py)
    greedy = {}
    for tp in (2, 1):
        engine = VLLMEngine(str(tiny_model), temperature=1.0, top_p=1.0, seed=0, dtype="float32", kv_cache_gb=0.25,
                            max_model_len=256, tensor_parallel_size=tp)
        before = _greedy(engine)
        engine.load_weights(iter(new.items()))
        greedy[tp] = _greedy(engine)
        assert greedy[tp] != before, "the load must change what the engine generates"
        engine.llm.llm_engine.engine_core.shutdown()  # TP=2: ends the worker processes now
        del engine
        gc.collect()
    assert greedy[2] == greedy[1]
