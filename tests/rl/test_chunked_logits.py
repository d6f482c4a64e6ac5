"""The learner's chunked vocabulary projection (rl/learner_logprobs.py `project`): log-probs and
entropies, and their gradients, equal those of the whole (B, W, V) logits; the learner-level updates
are compared in tests/rl/test_learner_batching.py."""
from __future__ import annotations

import pytest
import torch

from rl import grpo
from rl.config import ConfigError, load_config
from rl.learner_logprobs import project


def _full_logits(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor, temperature: float):
    """The unchunked reference: every logit at once, as the learner computed them before chunking."""
    logits = head(hidden).float() / temperature  # (B, W, V)
    return grpo.logprobs_from_logits(logits, labels), grpo.entropy_from_logits(logits)


@pytest.mark.parametrize("chunk", [0, 1, 4, 7, 21, 1000])  # 3 x 7 positions: chunks that divide it and not
@pytest.mark.parametrize("entropy", ["value", "grad"])
def test_project_equals_the_whole_logits(chunk, entropy):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(3, 7, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 7))
    weights = torch.randn(2, 3, 7)  # a loss that weighs every position differently

    def loss_and_grads(logprobs, ent):
        loss = (weights[0] * logprobs).sum() + (weights[1] * ent).sum() if entropy == "grad" \
            else (weights[0] * logprobs).sum()
        return torch.autograd.grad(loss, [hidden, head.weight])

    logprobs, ent = project(head, hidden, labels, 0.7, chunk, entropy)
    ref_logprobs, ref_ent = _full_logits(head, hidden, labels, 0.7)
    torch.testing.assert_close(logprobs, ref_logprobs, rtol=0, atol=1e-6)
    torch.testing.assert_close(ent, ref_ent, rtol=0, atol=1e-6)
    assert ent.requires_grad == (entropy == "grad")
    for got, want in zip(loss_and_grads(logprobs, ent), loss_and_grads(ref_logprobs, ref_ent)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_project_without_entropy_or_grad_keeps_no_graph():
    head = torch.nn.Linear(8, 30, bias=False)
    hidden, labels = torch.randn(2, 5, 8), torch.randint(0, 30, (2, 5))
    with torch.no_grad():
        logprobs, ent = project(head, hidden, labels, 1.0, 3)
    assert ent is None and not logprobs.requires_grad
    torch.testing.assert_close(logprobs, _full_logits(head, hidden, labels, 1.0)[0])


def test_low_precision_logits_go_to_float32_per_chunk():
    """A bf16 model's chunk is upcast before the softmax, like the whole bf16 logits were."""
    torch.manual_seed(1)
    head = torch.nn.Linear(16, 40, bias=False).bfloat16()
    hidden, labels = torch.randn(2, 6, 16).bfloat16(), torch.randint(0, 40, (2, 6))
    logprobs, ent = project(head, hidden, labels, 1.0, 5, "value")
    assert logprobs.dtype == ent.dtype == torch.float32
    ref = _full_logits(head, hidden, labels, 1.0)
    torch.testing.assert_close(logprobs, ref[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(ent, ref[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("value, message", [("-1", "must be a finite number >= 0"), ("1.5", "must be int")])
def test_chunk_size_is_validated(value, message):
    with pytest.raises(ConfigError, match=f"learner.logits_chunk_tokens {message}"):
        load_config("configs/tiny.yaml", [f"learner.logits_chunk_tokens={value}"])
