"""ZeRO-3 for big models, on CPU with gloo: two learner ranks (two processes) build the policy and the
reference model partitioned (no rank holds either whole), train as ZeRO-0 does, and save a HF folder
one shard at a time that from_pretrained loads as the gathered weights.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from rl.config import load_config
from rl.learner import Learner
from rl.learner_state import load_model, write_sharded, zero3_loading
from rl.types import TrainBatch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(model, out, *overrides: str):
    return load_config("configs/tiny.yaml", [
        f"model.path={model}", "rollout.prompts_per_step=2", "rollout.group_size=4", "learner.lr=1e-3",
        "learner.micro_batch_size=4", "grpo.kl_coef=0.1", f"run.output_dir={out}", *overrides])


def _batch() -> TrainBatch:
    """8 rows of random tokens, two groups of four sharing a prompt; responses of different lengths."""
    g = torch.Generator().manual_seed(0)
    rows, width = 8, 14
    input_ids = torch.randint(10, 1000, (rows, width), generator=g)
    input_ids[4:, :5] = input_ids[4, :5]
    input_ids[:4, :5] = input_ids[0, :5]
    lengths = torch.tensor([14, 12, 9, 7, 13, 10, 8, 6])
    attention = (torch.arange(width)[None] < lengths[:, None]).long()
    loss_mask = attention * (torch.arange(width)[None] >= 5)
    return TrainBatch(input_ids * attention, attention, loss_mask, torch.randn(rows, generator=g),
                      torch.zeros(rows, width), torch.full((rows,), 5))


def _local_share(module: torch.nn.Module) -> float:
    """Elements this rank stores of `module`'s parameters / elements of the whole model."""
    local = sum(p.ds_tensor.numel() for p in module.parameters())
    return local / sum(p.ds_numel for p in module.parameters())


def _rank(rank: int, model: str, out: str, port: int) -> None:
    """One ZeRO-3 learner rank: setup, one GRPO update on the whole batch (each rank the same rows, so
    the averaged gradient is that of one rank on the batch), checkpoint, gathered weights."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    learner = Learner(_config(model, out, "learner.zero_stage=3"), model, rank=rank, world_size=2)
    learner.setup("127.0.0.1", port)
    shares = {"policy": _local_share(learner.engine.module), "reference": _local_share(learner.ref_model.module)}
    with zero3_loading(learner._ds_config(torch.float32)):
        shares["loaded"] = _local_share(load_model(model, torch.float32))  # before deepspeed.initialize
    assert not is_deepspeed_zero3_enabled()  # a later from_pretrained in this process loads a whole model
    metrics = learner.train(_batch())
    learner.save(f"{out}/ckpt", {"step": 1})
    write_sharded(learner.engine.module, Path(out) / "small_shards", rank, shard_bytes=2**20)
    weights = learner.named_weights()
    kl = learner.train(_batch())["loss/kl"]  # the policy has moved from the reference now
    if rank == 0:
        torch.save({"shares": shares, "metrics": metrics, "weights": dict(weights), "kl": kl}, f"{out}/rank0.pt")


def _moe_rank(rank: int, model: str, out: str, port: int) -> None:
    """A Qwen3-MoE ZeRO-3 rank: each rank its own rows (the routers pick different experts on each)."""
    learner = Learner(_config(model, out, "learner.zero_stage=3"), model, rank=rank, world_size=2)
    learner.setup("127.0.0.1", port)
    rows = slice(4 * rank, 4 * rank + 4)
    learner.train(TrainBatch(*(t[rows] for t in _batch().tensors())))
    learner.save(f"{out}/ckpt", {"step": 1})
    weights = learner.named_weights()
    if rank == 0:
        torch.save(dict(weights), f"{out}/rank0.pt")


@pytest.mark.isolated
def test_two_zero3_ranks_partition_train_like_zero0_and_save_loadable_shards(tiny_model, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    mp.spawn(_rank, args=(str(tiny_model), str(tmp_path), _free_port()), nprocs=2)
    got = torch.load(tmp_path / "rank0.pt")
    # each rank stores half of every partitioned parameter: the policy's and the reference's
    assert all(share < 0.55 for share in got["shares"].values()), got["shares"]

    plain = Learner(_config(tiny_model, tmp_path / "z0"), str(tiny_model), rank=0, world_size=1)
    plain.setup("127.0.0.1", _free_port())
    expected = plain.train(_batch())
    for key in ("loss/pg", "loss/kl", "actor/grad_norm"):
        assert abs(got["metrics"][key] - expected[key]) <= 1e-4 * abs(expected[key]) + 1e-7, key
    weights = dict(plain.named_weights())
    initial = load_file(tiny_model / "model.safetensors")
    assert weights.keys() == got["weights"].keys()
    moved = max((weights[k] - initial[k]).abs().max().item() for k in initial)
    gap = max((weights[k] - got["weights"][k]).abs().max().item() for k in weights)
    # Adam's first step moves each weight by about lr * sign(gradient); where a gradient is ~0 the sign
    # follows the summation order, which differs between ZeRO-3's reduce-scatter and ZeRO-0
    assert moved > 0.5e-3 and gap < 0.05e-3, (moved, gap)
    kl = plain.train(_batch())["loss/kl"]  # the partitioned reference model gives the whole one's KL
    assert kl > 0 and abs(got["kl"] - kl) <= 1e-3 * kl, (got["kl"], kl)

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "model", torch_dtype=torch.float32)
    for name, p in saved.named_parameters():
        assert torch.equal(p.detach(), got["weights"][name]), name
    index = json.loads((tmp_path / "small_shards" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    for file in files:
        for name, t in load_file(tmp_path / "small_shards" / file).items():
            assert index["weight_map"][name] == file and torch.equal(t, got["weights"][name]), name


@pytest.mark.isolated
def test_qwen3_moe_under_zero3_trains_and_saves_per_expert_weights(tiny_moe_model, tmp_path):
    """MoE blocks are ZeRO-3 leaves (the ranks route to different experts and neither waits on a gather
    the other skips); the checkpoint holds the per-expert names vLLM loads, not transformers' fused
    in-memory experts tensors, and loads back as the trained weights."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    mp.spawn(_moe_rank, args=(str(tiny_moe_model), str(tmp_path), _free_port()), nprocs=2)
    weights = torch.load(tmp_path / "rank0.pt")
    assert "model.layers.0.mlp.experts.gate_up_proj" in weights  # fused in memory
    saved = load_file(tmp_path / "ckpt" / "model" / "model.safetensors")
    assert saved.keys() == load_file(tiny_moe_model / "model.safetensors").keys()  # per expert on disk
    assert "model.layers.0.mlp.experts.3.gate_proj.weight" in saved
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "model", torch_dtype=torch.float32)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), weights[name]), name
