"""Tensor-parallel vLLM (rollout.tensor_parallel_size): the resources and head counts are named config
errors. That a TP=2 engine (two worker processes, one core each on CPU) samples with the learner's
log-probs after a weight load, through both transports, is tests/rl/test_weight_sync.py's vllm-tp2 case."""
from __future__ import annotations

import pytest

from rl.config import ConfigError, load_config
from rl.rollout.engines import check_tensor_parallel


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
