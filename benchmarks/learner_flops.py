"""The learner's achieved FLOP/s against a matmul peak measured on the same machine.

    python benchmarks/learner_flops.py --out benchmarks/results/learner_flops.json
    python benchmarks/learner_flops.py --out /tmp/lf.json --prompts 2 --group 4 --steps 2   # quick

1. Peak: `torch.mm` of two n x n matrices (n = 2048, fp32 on CPU) in a loop for ~2 s: 2 n^3 FLOPs each.
2. Learner: rl.learner.Learner in this process (world size 1, DeepSpeed as configured), fed a synthetic
   batch of prompts x group rows of prompt_len + response_len tokens (random ids; compute does not
   depend on them), for 1 warm-up + `steps` calls of `train()`. Each call is one GRPO update: forward,
   loss, backward, optimizer step, the same code path as in `rl train`.
   Achieved FLOP/s = 6 x (N_body x tokens + N_head x trained tokens) per call / seconds per call
   (2N forward + 4N backward per token; N_head = vocab x hidden, the output projection, which the
   learner applies only where labels are trained; the input embedding is a lookup; attention's own
   FLOPs and the softmax over the vocabulary are not counted, so this slightly understates the work).
   Every row has its own prompt here, so the shared-prompt pass (`learner.shared_prefix`) saves nothing.

benchmarks/gpu_check.py uses the same two measurements on CUDA.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import config_overrides, config_parser, flops, machine_info, write_json  # noqa: E402


def matmul_peak(n: int = 2048, dtype: str = "float32", device: str = "cpu", seconds: float = 2.0) -> float:
    """FLOP/s of back-to-back n x n matmuls: the practical peak the learner's matmuls can reach."""
    import torch

    a = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    b = torch.randn(n, n, dtype=getattr(torch, dtype), device=device)
    for _ in range(3):  # warm-up: thread pool, allocator, CUDA kernels
        torch.mm(a, b)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        count += 1
        if device == "cuda" and count % 50:  # queue many kernels, then time them together
            continue
        sync()
    sync()
    return 2 * n**3 * count / (time.perf_counter() - start)


def synthetic_batch(rows: int, prompt_len: int, response_len: int, vocab_size: int, seed: int = 0) -> Any:
    """A TrainBatch of random tokens with the loss on the last `response_len` positions of each row."""
    import torch

    from rl.types import TrainBatch

    gen = torch.Generator().manual_seed(seed)
    width = prompt_len + response_len
    input_ids = torch.randint(0, vocab_size, (rows, width), generator=gen)
    loss_mask = torch.zeros(rows, width, dtype=torch.long)
    loss_mask[:, prompt_len:] = 1
    return TrainBatch(input_ids, torch.ones(rows, width, dtype=torch.long), loss_mask,
                      torch.randn(rows, generator=gen), torch.zeros(rows, width),
                      torch.full((rows,), prompt_len, dtype=torch.long))


def measure_learner(cfg: Any, model_path: str, steps: int, prompt_len: int, response_len: int) -> dict[str, Any]:
    """Time `steps` Learner.train() calls (after one warm-up call) on a synthetic batch of
    cfg.samples_per_step rows; returns tokens/s and 6N FLOP/s."""
    from transformers import AutoConfig

    from rl.learner import Learner

    learner = Learner(cfg, model_path, 0, 1)
    addr, port = learner.rendezvous()
    params = learner.setup(addr, port)
    config = AutoConfig.from_pretrained(model_path)
    vocab = config.vocab_size
    batch = synthetic_batch(cfg.samples_per_step, prompt_len, response_len, vocab, cfg.run.seed)
    tokens = int(batch.attention_mask.sum())
    # The learner projects onto the vocabulary only where labels are trained (rl/learner.py), so the
    # output matrix's FLOPs count for the response tokens; the input embedding is a lookup (0 FLOPs).
    head = vocab * config.hidden_size
    body = params - head * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    trained = int(batch.loss_mask.sum())
    flops_per_step = 6 * (body * tokens + head * trained)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        learner.train(batch)
        times.append(time.perf_counter() - start)
    step_s = statistics.mean(times[1:])
    return {"params": params, "rows": cfg.samples_per_step, "seq_len": prompt_len + response_len,
            "micro_batch_size": min(cfg.learner.micro_batch_size, cfg.samples_per_step),
            "tokens_per_step": tokens, "warmup_s": times[0], "step_s": times[1:], "step_s_mean": step_s,
            "tokens_per_s": tokens / step_s, "flops_per_step": flops_per_step, "flops_per_s": flops_per_step / step_s}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = config_parser(__doc__, "learner settings and model")
    p.add_argument("--prompt-len", type=int, default=32, help="prompt tokens per row (default 32)")
    p.add_argument("--response-len", type=int, default=32, help="trained tokens per row (default 32)")
    p.add_argument("--steps", type=int, default=3, help="timed train() calls after one warm-up (default 3)")
    p.add_argument("--matmul-n", type=int, default=2048, help="matrix size of the peak measurement")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rl.config import load_config
    from rl.models import resolve_model_path

    cfg = load_config(args.config, config_overrides(args))
    model_path = resolve_model_path(cfg.model.path)
    threads = cfg.learner.threads or os.cpu_count() or 1

    import torch

    torch.set_num_threads(threads)
    peak = matmul_peak(args.matmul_n)
    print(f"fp32 matmul peak ({args.matmul_n}^2, {threads} threads): {flops(peak)}", flush=True)
    learner = measure_learner(cfg, model_path, args.steps, args.prompt_len, args.response_len)
    fraction = learner["flops_per_s"] / peak
    print(f"learner ({learner['params'] / 1e6:.0f}M params, {learner['rows']} rows x {learner['seq_len']} tokens): "
          f"{learner['step_s_mean']:.2f} s/step, {learner['tokens_per_s']:.0f} tokens/s, "
          f"{flops(learner['flops_per_s'])} = {100 * fraction:.0f}% of the matmul peak")
    write_json(args.out, {"machine": machine_info(), "model": cfg.model.path, "threads": threads,
                          "matmul_peak_flops_per_s": peak, "matmul": {"n": args.matmul_n, "dtype": "float32"},
                          "learner": learner, "learner_fraction_of_peak": fraction,
                          "definition": "learner FLOP/s = 6 x params x tokens per train() / seconds per train()"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
