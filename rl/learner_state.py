"""The learner's models by ZeRO stage: building the policy and the reference model, and saving the HF
model folder of a checkpoint. Under ZeRO-3 no rank ever holds the whole model:

    with zero3_loading(ds_config):      # from_pretrained loads straight into deepspeed.zero.Init partitions
        model = load_model(path, dtype)
    ref = build_reference(path, dtype, ds_config, device)   # a ZeRO-3 engine without optimizer under ZeRO-3
    save_hf_model(engine.module, folder, rank, zero3=True)  # one shard file gathered at a time

(as TRL's and OpenRLHF's ZeRO-3 paths do). What a rank holds whole at once is one module while
transformers loads it (it gathers each module's parameters to copy the checkpoint in: the embedding is
the largest) and one shard file's parameters while saving.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from rl.config import LearnerConfig
from rl.weight_sync import bucket_groups

SHARD_BYTES = 2 * 2**30
"""Largest safetensors file of a ZeRO-3 checkpoint (a bigger single tensor gets its own): also the
most every rank gathers at once while saving, and the most rank 0 holds in host memory."""


def deepspeed_config(lrn: LearnerConfig, dtype: torch.dtype, micro: int, gas: int) -> dict[str, Any]:
    """The DeepSpeed config of the policy engine (the reference engine's is derived from it)."""
    zero: dict[str, Any] = {"stage": lrn.zero_stage}
    if lrn.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": gas,
        "gradient_clipping": lrn.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        "zero_allow_untested_optimizer": True,  # torch AdamW: no JIT-compiled cpu_adam needed
        "steps_per_print": 10**9,
    }


def make_optimizer(params: list[torch.nn.Parameter], lrn: LearnerConfig) -> torch.optim.Optimizer:
    """AdamW. With the optimizer state offloaded to the host, DeepSpeed's CPU Adam (vectorised C++,
    compiled on first use, cached in ~/.cache/torch_extensions), which DeepSpeed requires there: it
    steps the fp32 master weights in host memory several times faster than torch's AdamW would."""
    if lrn.offload_optimizer:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=lrn.lr, betas=lrn.betas, weight_decay=lrn.weight_decay, adamw_mode=True)
    return torch.optim.AdamW(params, lr=lrn.lr, betas=lrn.betas, weight_decay=lrn.weight_decay)


@contextmanager
def zero3_loading(ds_config: dict[str, Any]) -> Iterator[None]:
    """Inside: `from_pretrained` builds the model under `deepspeed.zero.Init` (each rank allocates only
    its partition of every parameter and loads its part of the checkpoint) when `ds_config` is ZeRO-3.
    transformers sees ZeRO-3 through a weak reference to a live `HfDeepSpeedConfig`; it lives only
    for the build, so a later from_pretrained in the same process (a test's) loads a whole model."""
    if ds_config["zero_optimization"]["stage"] != 3:
        yield
        return
    from transformers.integrations import HfDeepSpeedConfig

    alive = HfDeepSpeedConfig(ds_config)
    try:
        yield
    finally:
        del alive


def load_model(model_path: str, dtype: torch.dtype) -> Any:
    """The causal LM at `model_path`, its sparse MoE blocks marked as ZeRO-3 leaves: the router picks
    different experts per batch, so per-expert hooks would see a changing module order (ZeRO-3's
    prefetch trace breaks, ranks can wait on different gathers); a leaf gathers all its experts on
    entry. Harmless below ZeRO-3."""
    from deepspeed.utils import set_z3_leaf_modules
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    if blocks := moe_blocks(model):
        set_z3_leaf_modules(model, blocks)
    return model


def moe_blocks(model: torch.nn.Module) -> list[type]:
    """The sparse MoE block classes of `model` (a class name ending in SparseMoeBlock: Qwen3Moe,
    Qwen2Moe, Mixtral, OLMoE, ...); none for a dense model."""
    return sorted({type(m) for m in model.modules() if type(m).__name__.endswith("SparseMoeBlock")},
                  key=lambda c: c.__name__)


def build_reference(model_path: str, dtype: torch.dtype, ds_config: dict[str, Any], device: str) -> Any:
    """The frozen reference model for the KL term. Under ZeRO-3 it is partitioned like the policy: a
    DeepSpeed engine with no optimizer, whose hooks gather each layer for its forward (TRL's
    `prepare_deepspeed`); below ZeRO-3, a whole copy on this rank's device."""
    with zero3_loading(ds_config):
        model = load_model(model_path, dtype)
    model.eval().requires_grad_(False)
    if ds_config["zero_optimization"]["stage"] != 3:
        return model.to(device)
    import deepspeed

    config = {k: v for k, v in ds_config.items() if k != "gradient_clipping"}
    config["zero_optimization"] = {"stage": 3}  # no optimizer state to offload
    engine, *_ = deepspeed.initialize(model=model, config=config)
    engine.eval()  # DeepSpeedEngine.eval returns None, not the engine
    return engine


def total_parameters(model: torch.nn.Module) -> int:
    """Parameters of the whole model (a ZeRO-3 partition's local numel is only this rank's share)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())


def save_hf_model(model: Any, folder: Path, rank: int, zero3: bool) -> None:
    """`model` as a HF model folder (config, generation config, safetensors weights), the format of
    `save_pretrained`. Every rank calls it. Below ZeRO-3: rank 0's `save_pretrained`. Under ZeRO-3
    `write_sharded` gathers one shard at a time instead of the whole model on every rank."""
    if not zero3:
        if rank == 0:
            model.save_pretrained(folder, safe_serialization=True)
        return
    write_sharded(model, folder, rank)
    if rank == 0:
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(folder)
        if model.can_generate():
            model.generation_config.save_pretrained(folder)


def write_sharded(model: Any, folder: Path, rank: int, shard_bytes: float = SHARD_BYTES) -> None:
    """The weights of a ZeRO-3 `model` into folder/model*.safetensors (+ the index json when there is
    more than one file), as `save_pretrained` names and lays them out: each file's parameters are
    gathered on every rank, copied to host memory on rank 0 and written before the next file's.
    transformers' reverse weight conversion runs per file (Qwen3-MoE's fused experts tensor is
    written as the per-expert weights vLLM and from_pretrained load); each fused tensor is whole in
    one file, which is all it needs."""
    import deepspeed
    from safetensors.torch import save_file
    from transformers.core_model_loading import revert_weight_conversion

    shards = bucket_groups(_saved_tensors(model), None, shard_bytes)
    names = ["model.safetensors"] if len(shards) == 1 else \
        [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map: dict[str, str] = {}
    total = 0
    folder.mkdir(parents=True, exist_ok=True)
    for name, group in zip(names, shards):
        with deepspeed.zero.GatheredParameters([p for _, p in group]):
            tensors = {n: p.detach().to("cpu", copy=True) for n, p in group} if rank == 0 else {}
        if rank != 0:
            continue
        tensors = {n: t.contiguous() for n, t in revert_weight_conversion(model, tensors).items()}
        save_file(tensors, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    if rank == 0 and len(shards) > 1:
        index = {"metadata": {"total_size": total, "total_parameters": total_parameters(model)},
                 "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _saved_tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, parameter or persistent buffer) in state_dict order, a tied weight once under its first
    name (the embedding, as save_pretrained keeps it). Buffers are whole on every rank under ZeRO-3."""
    seen: set[int] = set()
    out = []
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            out.append((name, t))
    return out
