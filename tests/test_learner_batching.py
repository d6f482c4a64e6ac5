"""The learner's passes: however a batch is cut (rows per pass, token budget), one GRPO update moves
the weights the same way, and the logits window leaves the logprobs of trained tokens unchanged."""
from __future__ import annotations

import socket

import pytest
import torch

from rl.config import load_config
from rl.learner import Learner, _loss_window
from rl.types import TrainBatch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _learner(model, tmp_path, *overrides: str) -> Learner:
    cfg = load_config("configs/tiny.yaml", [f"model.path={model}", "rollout.prompts_per_step=2", "rollout.group_size=4",
                                            "learner.lr=1e-2", f"run.output_dir={tmp_path}", *overrides])
    learner = Learner(cfg, str(model), rank=0, world_size=1)
    learner.setup("127.0.0.1", _free_port())
    return learner


def _batch(rows: int = 8, seed: int = 0) -> TrainBatch:
    """Right-padded rows of different prompt and response lengths, like rl.driver.collate makes."""
    g = torch.Generator().manual_seed(seed)
    prompts = [3 + (i * 5) % 7 for i in range(rows)]
    responses = [2 + (i * 3) % 9 for i in range(rows)]
    width = max(p + r for p, r in zip(prompts, responses))
    input_ids = torch.zeros(rows, width, dtype=torch.long)
    attention, loss_mask = torch.zeros_like(input_ids), torch.zeros_like(input_ids)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        input_ids[i, :p + r] = torch.randint(10, 1000, (p + r,), generator=g)
        attention[i, :p + r] = 1
        loss_mask[i, p:p + r] = 1
    advantages = torch.randn(rows, generator=g)
    return TrainBatch(input_ids, attention, loss_mask, advantages, torch.zeros(rows, width))


def _gradient_of_one_update(model, tmp_path, *overrides: str) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The accumulated gradient the optimizer steps with (captured just before its step)."""
    learner = _learner(model, tmp_path, *overrides)
    names = {id(p): n for n, p in learner.engine.module.named_parameters()}
    grads: dict[str, torch.Tensor] = {}

    def capture(optimizer, *_):
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    grads[names[id(p)]] = p.grad.detach().clone()

    optimizer = learner.engine.optimizer
    assert isinstance(optimizer, torch.optim.Optimizer), type(optimizer)  # ZeRO-0 keeps the client AdamW
    optimizer.register_step_pre_hook(capture)
    metrics = learner.train(_batch())
    assert grads, "the optimizer never stepped"
    return grads, metrics


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean"])
def test_update_does_not_depend_on_how_the_batch_is_cut(tiny_model, tmp_path, loss_agg):
    agg = f"grpo.loss_agg={loss_agg}"
    whole, m1 = _gradient_of_one_update(tiny_model, tmp_path / "a", "learner.micro_batch_size=8", agg)
    pairs, m2 = _gradient_of_one_update(tiny_model, tmp_path / "b", "learner.micro_batch_size=2", agg)
    budget, m3 = _gradient_of_one_update(tiny_model, tmp_path / "c", "learner.micro_batch_size=8",
                                         "learner.max_tokens_per_micro_batch=40", agg)
    assert (m1["learner/passes"], m2["learner/passes"]) == (1, 4)
    assert 1 < m3["learner/passes"] < 8  # the budget packs short rows together, long rows alone
    scale = max(g.abs().max().item() for g in whole.values())
    assert scale > 0
    for other in (pairs, budget):
        assert other.keys() == whole.keys()
        gap = max((whole[k] - other[k]).abs().max().item() for k in whole)
        assert gap < 1e-4 * scale, (gap, scale)
    assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-4)


def test_logits_window_keeps_trained_logprobs(tiny_model, tmp_path):
    learner = _learner(tiny_model, tmp_path)
    batch = _batch()
    windowed = learner.logprobs(batch)                        # (B, T-1), 0 outside trained labels
    model = learner.engine.module
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        full = torch.log_softmax(logits.float() / learner.cfg.rollout.temperature, -1)
        full = full.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    mask = batch.loss_mask[:, 1:].bool()
    assert torch.allclose(windowed[mask], full[mask], atol=1e-5)
    assert (windowed[~mask] == 0).all() or _loss_window(batch.loss_mask).start > 0


def test_loss_window():
    mask = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 0, 0]])
    assert _loss_window(mask) == slice(1, 4)   # columns 1..3 of mask[:, 1:]
    assert _loss_window(torch.zeros(2, 4, dtype=torch.long)) == slice(0, 1)
