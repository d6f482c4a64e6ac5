"""The learner's passes: however a batch is cut (rows per pass, token budget, logits in chunks), one GRPO
update moves the weights the same way, and the logits window leaves the logprobs of trained tokens unchanged."""
from __future__ import annotations

import socket

import pytest
import torch

from rl.config import load_config
from rl.learner import Learner
from rl.learner_logprobs import loss_window
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


def _batch(groups: int = 2, group_size: int = 4, seed: int = 0) -> TrainBatch:
    """Right-padded rows like rl.round.collate makes: each group shares a prompt (their lengths
    differ between groups), responses differ in length within a group."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(10, 1000, (5 + 4 * k,), generator=g) for k in range(groups)]
    rows = [(prompts[k], torch.randint(10, 1000, (2 + (3 * i + k) % 7,), generator=g))
            for k in range(groups) for i in range(group_size)]
    width = max(len(p) + len(r) for p, r in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention, loss_mask = torch.zeros_like(input_ids), torch.zeros_like(input_ids)
    for i, (p, r) in enumerate(rows):
        input_ids[i, :len(p) + len(r)] = torch.cat([p, r])
        attention[i, :len(p) + len(r)] = 1
        loss_mask[i, len(p):len(p) + len(r)] = 1
    loss_mask[1, len(rows[1][0])] = 0  # an env/forced token inside a response: not trained
    advantages = torch.randn(len(rows), generator=g)
    prompt_lengths = torch.tensor([len(p) for p, _ in rows])
    return TrainBatch(input_ids, attention, loss_mask, advantages, torch.zeros(len(rows), width), prompt_lengths)


def _gradient_of_one_update(model, tmp_path, *overrides: str, batch: TrainBatch | None = None
                            ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
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
    metrics = learner.train(_batch() if batch is None else batch)
    assert grads, "the optimizer never stepped"
    return grads, metrics


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean"])
def test_update_does_not_depend_on_how_the_batch_is_cut(tiny_model, tmp_path, loss_agg):
    agg = f"grpo.loss_agg={loss_agg}"
    whole, m1 = _gradient_of_one_update(tiny_model, tmp_path / "a", "learner.micro_batch_size=8",
                                        "learner.shared_prefix=false", "learner.logits_chunk_tokens=0", agg)
    variants = {
        "pairs": ("learner.micro_batch_size=2", "learner.shared_prefix=false"),
        "logits in chunks": ("learner.micro_batch_size=8", "learner.shared_prefix=false", "learner.logits_chunk_tokens=7"),
        "budget": ("learner.micro_batch_size=8", "learner.max_tokens_per_micro_batch=40", "learner.shared_prefix=false"),
        "shared prompt": ("learner.micro_batch_size=8", "learner.shared_prefix=true"),
        "shared prompt, pairs": ("learner.micro_batch_size=2", "learner.shared_prefix=true"),
    }
    passes = {}
    scale = max(g.abs().max().item() for g in whole.values())
    assert scale > 0 and m1["learner/passes"] == 1
    for name, overrides in variants.items():
        grads, metrics = _gradient_of_one_update(tiny_model, tmp_path / name.replace(" ", "_").replace(",", ""),
                                                 *overrides, agg)
        passes[name] = metrics["learner/passes"]
        assert grads.keys() == whole.keys(), name
        gap = max((whole[k] - grads[k]).abs().max().item() for k in whole)
        assert gap < 1e-4 * scale, (name, gap, scale)
        assert metrics["actor/grad_norm"] == pytest.approx(m1["actor/grad_norm"], rel=1e-4), name
    assert passes["pairs"] == 4 and passes["shared prompt, pairs"] == 4
    assert 1 < passes["budget"] < 8       # the budget packs short rows together, long rows alone
    assert passes["shared prompt"] == 1


def test_mask_truncated_drops_exactly_the_truncated_rows(tiny_model, tmp_path):
    """grpo.mask_truncated: the update equals one where the truncated rows' tokens are simply not
    trained; the policy's entropy is still measured on every sampled token."""
    batch = _batch()
    batch.truncated = torch.tensor([1, 0, 0, 0, 0, 1, 0, 0])
    masked, m1 = _gradient_of_one_update(tiny_model, tmp_path / "a", "grpo.mask_truncated=true", batch=batch)
    by_hand = _batch()
    by_hand.loss_mask[[0, 5]] = 0
    expected, _ = _gradient_of_one_update(tiny_model, tmp_path / "b", batch=by_hand)
    scale = max(g.abs().max().item() for g in expected.values())
    assert max((masked[k] - expected[k]).abs().max().item() for k in expected) < 1e-4 * scale
    assert m1["pg/truncated_masked"] == pytest.approx(2 / 8)
    _, unmasked = _gradient_of_one_update(tiny_model, tmp_path / "c", batch=_batch())
    assert m1["actor/entropy"] == pytest.approx(unmasked["actor/entropy"], rel=1e-5)


@pytest.mark.parametrize("overrides", [("learner.shared_prefix=true",), ("learner.shared_prefix=false",),
                                       ("learner.shared_prefix=true", "model.lora_rank=4")])
def test_chunked_logits_give_the_unchunked_update(tiny_model, tmp_path, overrides):
    """The vocabulary projection in checkpointed chunks of 5 positions (not dividing any pass's
    width) gives the loss, entropy and gradients of projecting a pass at once, entropy bonus on."""
    common = ("learner.micro_batch_size=4", "grpo.entropy_coef=0.05", "rollout.temperature=0.7", *overrides)
    whole, m_whole = _gradient_of_one_update(tiny_model, tmp_path / "whole", *common, "learner.logits_chunk_tokens=0")
    chunked, m_chunked = _gradient_of_one_update(tiny_model, tmp_path / "chunked", *common,
                                                 "learner.logits_chunk_tokens=5")
    scale = max(g.abs().max().item() for g in whole.values())
    assert chunked.keys() == whole.keys() and scale > 0
    assert max((whole[k] - chunked[k]).abs().max().item() for k in whole) < 1e-5 * scale
    for key in ("loss/pg", "loss/entropy_bonus", "actor/entropy", "actor/grad_norm"):
        assert m_chunked[key] == pytest.approx(m_whole[key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_learner_logprobs_equal_a_plain_forward(tiny_model, tmp_path, shared_prefix):
    learner = _learner(tiny_model, tmp_path, f"learner.shared_prefix={str(shared_prefix).lower()}",
                       "learner.micro_batch_size=3", "rollout.temperature=0.7", "learner.logits_chunk_tokens=4")
    batch = _batch()
    got = learner.logprobs(batch)                             # (B, T-1), 0 outside trained labels
    model = learner.engine.module
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        full = torch.log_softmax(logits.float() / 0.7, -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    mask = batch.loss_mask[:, 1:].bool()
    assert torch.allclose(got[mask], full[mask], atol=1e-5), (got[mask] - full[mask]).abs().max()
    prompt_cols = torch.arange(batch.input_ids.shape[1] - 1)[None] < batch.prompt_lengths[:, None] - 1
    if shared_prefix:
        assert (got[prompt_cols] == 0).all()                  # prompt labels are never computed


def test_loss_window():
    mask = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 0, 0]])
    assert loss_window(mask) == slice(1, 4)   # columns 1..3 of mask[:, 1:]
    assert loss_window(torch.zeros(2, 4, dtype=torch.long)) == slice(0, 1)


@pytest.mark.parametrize("stage", [2, 3])
def test_shared_prefix_under_zero_sharding(tiny_model, tmp_path, stage):
    """ZeRO-3 gathers parameters per forward; the prompt pass and the response pass are two forwards
    before one backward, which must give the same gradient as ZeRO-0. The output layer runs once per
    logits chunk, again in backward (checkpointed), gathered each time."""
    chunks = "learner.logits_chunk_tokens=5"
    plain = _learner(tiny_model, tmp_path / "z0", "learner.micro_batch_size=4", chunks).train(_batch())
    sharded = _learner(tiny_model, tmp_path / f"z{stage}", "learner.micro_batch_size=4", chunks,
                       f"learner.zero_stage={stage}").train(_batch())
    assert sharded["actor/grad_norm"] == pytest.approx(plain["actor/grad_norm"], rel=1e-4)
    assert sharded["loss/pg"] == pytest.approx(plain["loss/pg"], rel=1e-5, abs=1e-7)


def test_optimizer_state_offloaded_to_the_host_gives_the_same_update(tiny_model, tmp_path):
    """learner.offload_optimizer: ZeRO-2 keeps the fp32 master weights and Adam moments in host memory and
    steps them with DeepSpeed's CPU Adam (DeepSpeed refuses a torch optimizer there)."""
    on_device = _learner(tiny_model, tmp_path / "dev", "learner.zero_stage=2")
    offloaded = _learner(tiny_model, tmp_path / "off", "learner.zero_stage=2", "learner.offload_optimizer=true")
    assert type(offloaded.engine.optimizer).__name__ == "DeepSpeedZeroOptimizer"
    assert type(offloaded.engine.optimizer.optimizer).__name__ == "DeepSpeedCPUAdam"
    before = {n: p.detach().clone() for n, p in offloaded.engine.module.named_parameters()}
    plain, off = on_device.train(_batch()), offloaded.train(_batch())
    assert off["actor/grad_norm"] == pytest.approx(plain["actor/grad_norm"], rel=1e-4)
    moved = 0
    for (name, p), (_, q) in zip(offloaded.engine.module.named_parameters(), on_device.engine.module.named_parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=name)
        moved += int(not torch.equal(p, before[name]))
    assert moved > 0
