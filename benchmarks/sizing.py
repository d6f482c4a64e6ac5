"""Cluster sizing: memory per GPU of the learner and the rollout engines for each GPU config.

    .venv/bin/python benchmarks/sizing.py --out benchmarks/results/sizing.json
    .venv/bin/python benchmarks/sizing.py --check benchmarks/results/learner_memory.json   # formulas vs CPU

For every GPU config (configs/qwen3_0.6b.yaml, qwen3_8b.yaml, qwen3_moe.yaml) and its model's shape
(the published Hugging Face configs of Qwen3-0.6B, Qwen3-8B and Qwen3-30B-A3B, written out below
because no hub is reachable here), per GPU:
  learner   model states (bf16 weights, gradients, fp32 master weights and Adam moments) from DeepSpeed's
            own estimators (`estimate_zero2/3_model_states_mem_needs`), plus activations of one
            micro-batch under gradient checkpointing (each layer's bf16 input kept, one layer's working
            set of ~34 x hidden bytes per token recomputed at a time: Korthikanti et al. 2022 with
            fused attention) plus the log-prob working set (fp32 logits of one chunk of
            `logits_chunk_tokens` positions, LOGIT_COPIES copies at the peak)
  rollout   bf16 weights / TP, and the KV cache the rest of `gpu_memory_utilization` holds: tokens and
            full-length sequences (prompt + response) per engine, against the sequences each engine
            gets per step.
`--check` compares the log-prob formula with benchmarks/learner_memory.py's CPU measurements (the same
formula at that benchmark's vocabulary and chunk).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, machine_info, write_json  # noqa: E402

GIB = 2**30
GPU_GIB = 80.0
"""H100 / A100 80 GB (an H200 has 141 GB: everything that fits here fits there)."""
RUNTIME_GIB = 2.5
"""CUDA context, NCCL buffers, allocator slack per process (a rule of thumb; vLLM's non-KV activations too)."""
SHAPES = {
    "Qwen/Qwen3-0.6B": dict(hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128, inter=3072,
                            vocab=151936, tied=True),
    "Qwen/Qwen3-8B": dict(hidden=4096, layers=36, heads=32, kv_heads=8, head_dim=128, inter=12288,
                          vocab=151936, tied=False),
    "Qwen/Qwen3-30B-A3B": dict(hidden=2048, layers=48, heads=32, kv_heads=4, head_dim=128, inter=0,
                               experts=128, top_k=8, moe_inter=768, vocab=151936, tied=False),
}
CONFIGS = ("qwen3_0.6b.yaml", "qwen3_8b.yaml", "qwen3_moe.yaml")


def parameters(shape: dict[str, Any]) -> dict[str, float]:
    """Total, active (per token) and largest-layer parameter counts of a Qwen3 / Qwen3-MoE shape."""
    h, d = shape["hidden"], shape["head_dim"]
    attention = h * d * (shape["heads"] * 2 + shape["kv_heads"] * 2) + 2 * d  # q, o, k, v; q/k norms
    if shape.get("experts"):
        expert = 3 * h * shape["moe_inter"]
        mlp, mlp_active = shape["experts"] * expert + h * shape["experts"], shape["top_k"] * expert
    else:
        mlp = mlp_active = 3 * h * shape["inter"]
    embed = shape["vocab"] * h
    layer = attention + mlp + 2 * h
    total = shape["layers"] * layer + embed * (1 if shape["tied"] else 2) + h
    active = shape["layers"] * (attention + mlp_active) + embed * (1 if shape["tied"] else 2)
    return {"total": total, "active": active, "largest_layer": max(layer, embed), "embedding": embed}


def model_states_gib(params: dict[str, float], ranks: int, zero_stage: int, offload: bool) -> float:
    """GPU memory per learner rank for weights, gradients and optimizer state, by DeepSpeed's estimators."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    if zero_stage == 3:
        _, gpu, _ = estimate_zero3_model_states_mem_needs(
            params["total"], params["largest_layer"], num_gpus_per_node=ranks, cpu_offload=offload,
            cpu_offload_params=False, zero_init=True, additional_buffer_factor=1.0)
    else:  # stages 1-2 (stage 1 keeps whole gradients: a little more than this)
        _, gpu = estimate_zero2_model_states_mem_needs(params["total"], num_gpus_per_node=ranks,
                                                       cpu_offload=offload, additional_buffer_factor=1.0)
    return gpu / GIB


def activations_gib(shape: dict[str, Any], tokens: int, checkpointing: bool, bytes_per: int = 2) -> float:
    """One micro-batch's activations: with checkpointing each layer's input plus one layer's working set."""
    per_layer = 34 * shape["hidden"] * tokens * bytes_per / 2  # Korthikanti's 34sbh counts 2-byte activations
    kept = shape["layers"] * shape["hidden"] * tokens * bytes_per
    return (kept + per_layer if checkpointing else shape["layers"] * per_layer) / GIB


LOGIT_COPIES = 8
"""fp32 (chunk x vocabulary) tensors alive at the peak of one chunk's forward + backward: the logits, the
temperature-scaled and max-shifted copies, softmax, the entropy's product, their gradients. Counted from
the measurement (benchmarks/learner_memory.py: 2.2-2.3 GiB for 512 positions x 151,936), not derived."""


def logits_gib(vocab: int, chunk_tokens: int) -> float:
    """The log-prob working set of one chunk (`learner.logits_chunk_tokens` positions)."""
    return LOGIT_COPIES * 4 * vocab * chunk_tokens / GIB


def learner_row(cfg: Any, shape: dict[str, Any], params: dict[str, float]) -> dict[str, float]:
    lrn, r = cfg.learner, cfg.rollout
    seq = r.max_prompt_tokens + r.max_new_tokens
    tokens = lrn.max_tokens_per_micro_batch or lrn.micro_batch_size * seq
    chunk = lrn.logits_chunk_tokens or tokens  # 0: a pass's positions all at once
    states = model_states_gib(params, lrn.num_workers, lrn.zero_stage, lrn.offload_optimizer)
    acts = activations_gib(shape, tokens, cfg.model.gradient_checkpointing)
    logits = logits_gib(shape["vocab"], chunk)
    return {"ranks": lrn.num_workers, "zero_stage": lrn.zero_stage, "offload_optimizer": lrn.offload_optimizer,
            "tokens_per_micro_batch": tokens, "logits_chunk_tokens": chunk, "model_states_gib": states,
            "activations_gib": acts, "logits_gib": logits, "total_gib": states + acts + logits + RUNTIME_GIB}


def rollout_row(cfg: Any, shape: dict[str, Any], params: dict[str, float]) -> dict[str, float]:
    r = cfg.rollout
    tp = r.tensor_parallel_size
    weights = 2 * params["total"] / tp / GIB
    kv_per_token = 2 * shape["layers"] * max(shape["kv_heads"] // tp, 1) * shape["head_dim"] * 2
    kv_gib = r.gpu_memory_utilization * GPU_GIB - weights - RUNTIME_GIB
    seq = r.max_prompt_tokens + r.max_new_tokens
    engines = r.num_workers
    return {"engines": engines, "tensor_parallel_size": tp, "gpus": engines * tp, "weights_gib": weights,
            "kv_cache_gib": kv_gib, "kv_tokens": kv_gib * GIB / kv_per_token,
            "full_length_sequences": kv_gib * GIB / kv_per_token / seq,
            "sequences_per_engine_per_step": r.prompts_per_step * r.group_size / engines}


def size_config(name: str) -> dict[str, Any]:
    from rl.config import load_config

    cfg = load_config(REPO / "configs" / name, [])
    shape = SHAPES[cfg.model.path]
    params = parameters(shape)
    learner, rollout = learner_row(cfg, shape, params), rollout_row(cfg, shape, params)
    return {"config": f"configs/{name}", "model": cfg.model.path, "params_b": params["total"] / 1e9,
            "active_params_b": params["active"] / 1e9, "learner": learner, "rollout": rollout,
            "learner_fits": learner["total_gib"] <= GPU_GIB, "rollout_fits": rollout["kv_cache_gib"] > 0}


def check(measured_path: Path) -> list[dict[str, float]]:
    """The log-prob formula at benchmarks/learner_memory.py's vocabulary and chunk vs its measurement."""
    data = json.loads(measured_path.read_text())
    rows = []
    for i, tokens in enumerate(data["response_tokens"]):
        predicted = logits_gib(data["model"]["vocab"], min(data["chunk_tokens"], tokens))
        rows.append({"response_tokens": tokens, "logits_gib_measured": data["logits_gib_chunked"][i],
                     "logits_gib_formula": predicted})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"per GPU, {GPU_GIB:.0f} GB GPUs | {'config':<24} {'params':>8} {'rollout':>14} {'KV seqs':>12} "
          f"{'learner':>16} {'states':>7} {'acts':>6} {'logits':>7} {'total':>7}")
    for row in rows:
        lrn, ro = row["learner"], row["rollout"]
        print(f"{'':17}| {row['config']:<24} {row['params_b']:>6.1f}B "
              f"{ro['engines']:>3} x TP{ro['tensor_parallel_size']:<2} {ro['weights_gib']:>4.0f}G "
              f"{ro['full_length_sequences']:>5.0f}/{ro['sequences_per_engine_per_step']:<5.0f} "
              f"{lrn['ranks']:>3} x ZeRO-{lrn['zero_stage']}{'+off' if lrn['offload_optimizer'] else '    '} "
              f"{lrn['model_states_gib']:>6.1f}G {lrn['activations_gib']:>5.1f}G {lrn['logits_gib']:>6.1f}G "
              f"{lrn['total_gib']:>6.1f}G{'' if row['learner_fits'] else ' DOES NOT FIT'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sizing.json"), help="JSON result")
    p.add_argument("--check", type=Path, help="learner_memory.py's JSON: compare the formulas with it")
    args = p.parse_args(argv)
    rows = [size_config(name) for name in CONFIGS]
    print_table(rows)
    result: dict[str, Any] = {"machine": machine_info(), "gpu_gib": GPU_GIB, "configs": rows}
    if args.check:
        result["check"] = check(args.check)
        for c in result["check"]:
            print(f"learner_memory {c['response_tokens']:>6} tokens: logits {c['logits_gib_measured']:.2f} GiB "
                  f"measured on CPU, {c['logits_gib_formula']:.2f} GiB by the formula")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
