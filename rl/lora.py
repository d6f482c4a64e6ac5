"""LoRA for the learner (`model.lora_rank` > 0), with peft: adapters on the chosen linear layers, the
base weights frozen. The rollout engines never see an adapter: the weight sync sends merged weights,
W + (alpha / r) * B @ A, under the base model's own parameter names, so vLLM and transformers load them
as a full fine-tune's. Checkpoints hold the adapter (`adapter/`, peft's format) and a merged model
(`model/`, a plain HF folder).

    model = apply_lora(model, cfg.model)                # before deepspeed.initialize
    params, merges = sync_parameters(engine.module)     # what the weight sync sends, and how to merge
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PEFT_PREFIX = "base_model.model."
"""peft wraps the model: its parameters are named base_model.model.<the model's own name>."""

Merge = Callable[[torch.Tensor], torch.Tensor]
"""base weight -> merged weight (same shape and dtype)."""


def apply_lora(model: Any, model_cfg: Any) -> Any:
    """`model` with LoRA adapters (rank `lora_rank`, scale `lora_alpha / lora_rank`) on
    `lora_target_modules`; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(model_cfg.lora_target_modules) - present)
    if missing:
        raise ValueError(f"model.lora_target_modules {missing} are not module names of {type(model).__name__}; "
                         f"choose among its linear layers, e.g. {sorted(present & {'q_proj', 'v_proj', 'up_proj'})}")
    config = LoraConfig(r=model_cfg.lora_rank, lora_alpha=model_cfg.lora_alpha,
                        target_modules=list(model_cfg.lora_target_modules), lora_dropout=0.0, bias="none",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def is_lora(module: Any) -> bool:
    return hasattr(module, "peft_config")  # a peft model


def sync_parameters(module: Any) -> tuple[list[tuple[str, Any]], dict[str, Merge]]:
    """What the weight sync sends for `module`: (name, parameter) in declaration order under the base
    model's names, and for each name whose layer has an adapter, the function that merges it in. For a
    model without adapters: its parameters as they are, and no merges."""
    if not is_lora(module):
        return list(module.named_parameters()), {}
    params, merges = [], {}
    for name, p in module.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            continue  # folded into their base layer's weight below
        clean = name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")
        params.append((clean, p))
    for name, layer in module.named_modules():
        if hasattr(layer, "lora_A") and "default" in getattr(layer, "lora_A", {}):
            clean = name.removeprefix(PEFT_PREFIX) + ".weight"
            merges[clean] = _merger(layer)
    return params, merges


def _merger(layer: Any) -> Merge:
    a, b, scale = layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.scaling["default"]

    def merge(weight: torch.Tensor) -> torch.Tensor:
        delta = (b.detach().float() @ a.detach().float()) * scale  # (out, r) @ (r, in)
        return (weight.float() + delta.to(weight.device)).to(weight.dtype)

    return merge


def merged_state_dict(module: Any) -> dict[str, torch.Tensor]:
    """Every weight of `module` under the base model's names, adapters merged in (CPU copies)."""
    params, merges = sync_parameters(module)
    out = {}
    for name, p in params:
        weight = p.detach().to("cpu", copy=True)
        out[name] = merges[name](weight) if name in merges else weight
    return out


def save_lora(module: Any, folder: Path, tokenizer_path: str) -> None:
    """peft's adapter into folder/adapter, the merged model into folder/model (both loadable alone)."""
    from transformers import AutoTokenizer

    module.save_pretrained(folder / "adapter")
    base = module.get_base_model()
    base.save_pretrained(folder / "model", state_dict=merged_state_dict(module), safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(folder / "model")
