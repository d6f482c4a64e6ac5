"""One place decides each engine setting: the dtype by capability (rl.models.device_and_dtype, used by
the learner, the transformers engine, the judge and the reward model), and a rollout worker's settings
from the config (rl.actors.rollout_worker_kwargs, used by the driver's actors and the thinking eval)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rl.actors import rollout_worker_kwargs
from rl.config import load_config
from rl.models import device_and_dtype
from tests.helpers import ROOT



def test_dtype_by_capability_and_by_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_and_dtype() == (torch.device("cpu"), torch.float32)
    assert device_and_dtype("auto") == (torch.device("cpu"), torch.float32)  # the judge used to refuse "auto"
    assert device_and_dtype("bfloat16")[1] == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    # A GPU without bf16 (e.g. a V100): fp16, where the learner and the engine used to pick bf16.
    assert device_and_dtype("auto") == (torch.device("cuda"), torch.float16)
    with pytest.raises(ValueError, match="'float33' is not a torch dtype"):
        device_and_dtype("float33")


def test_reward_model_worker_takes_auto_dtype(tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from rewards.reward_model import RewardModelWorker
    from rl.models import qwen3_tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id or 0)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    worker = RewardModelWorker(str(tmp_path), dtype="auto")
    assert worker.dtype == torch.float32  # CPU
    assert len(worker.score_batch([("What is 2+2?", "4")])) == 1


def test_thinking_eval_builds_its_engine_from_the_rollout_settings(monkeypatch, tiny_model, tmp_path):
    """The thinking eval used to copy the engine settings and drop rollout.dtype."""
    import rl.rollout.worker
    from rl.thinking.evals import evaluate_thinking

    seen = {}

    class Stop(Exception):
        pass

    def fake_worker(model_path, backend, **kwargs):
        seen.update(kwargs, backend=backend)
        raise Stop

    monkeypatch.setattr(rl.rollout.worker, "RolloutWorker", fake_worker)
    cfg = load_config(ROOT / "configs/thinking_tiny.yaml", [f"model.path={tiny_model}", "rollout.dtype=bfloat16",
                                                            "rollout.temperature=0.7", "rollout.kv_cache_gb=0.3"])
    with pytest.raises(Stop):
        evaluate_thinking(cfg, tmp_path / "eval", dialogs=1, turns=1, budgets=[4], problems=2)
    expected = rollout_worker_kwargs(cfg, cfg.run.seed)
    assert seen["engine_kwargs"]["dtype"] == "bfloat16"
    assert seen["temperature"] == 0.7 and seen["engine_kwargs"]["kv_cache_gb"] == 0.3
    assert {k: v for k, v in seen["engine_kwargs"].items() if k != "max_model_len"} == \
        {k: v for k, v in expected["engine_kwargs"].items() if k != "max_model_len"}
    assert seen["backend"] == cfg.rollout.backend
