"""GPU check: the learner on CUDA for a Qwen3-0.6B-sized random model; tokens/s and MFU.

    bash benchmarks/gpu_check.sh --out benchmarks/results/gpu_check.json     # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --size tiny --out /tmp/g.json # no GPU: check the script

What runs: a randomly initialised Qwen3 with Qwen3-0.6B's shape (hidden 1024, 28 layers, 16 heads,
8 KV heads, head_dim 128, intermediate 3072, tied embeddings, the Qwen3 tokenizer's vocabulary) is
saved to a temporary folder, and rl.learner.Learner (world size 1, DeepSpeed, bf16 on CUDA) runs one
warm-up and `--steps` GRPO updates on a synthetic batch of prompts x group rows of prompt_len +
response_len tokens (benchmarks/learner_flops.py, `measure_learner`).

MFU = the learner's model FLOP/s (6 x (body parameters x tokens + output projection x trained
tokens), benchmarks/learner_flops.py) / the GPU's dense bf16 peak (H100 / H200 SXM: 989 TFLOP/s; pass
--peak-tflops for another GPU). Attention FLOPs are not counted, so MFU is slightly understated.
With --device cpu the model is tiny and the "peak" is the fp32 matmul peak measured here: that run
only checks that the script works.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, flops, machine_info, write_json  # noqa: E402

SIZES = {
    "qwen3-0.6b": {"hidden_size": 1024, "num_layers": 28, "num_heads": 16, "num_kv_heads": 8, "head_dim": 128,
                   "intermediate_size": 3072},
    "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 64,
             "intermediate_size": 128},
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
"""Dense bf16 tensor-core peaks (vendor figures, SXM parts), matched against the device name."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_check.json"), help="JSON result")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: check the script without a GPU")
    p.add_argument("--size", choices=sorted(SIZES), help="model shape (default: qwen3-0.6b on cuda, tiny on cpu)")
    p.add_argument("--prompts", type=int, help="prompts per step (default 8 on cuda, 2 on cpu)")
    p.add_argument("--group", type=int, help="samples per prompt (default 8 on cuda, 2 on cpu)")
    p.add_argument("--prompt-len", type=int, help="prompt tokens per row (default 256 on cuda, 16 on cpu)")
    p.add_argument("--response-len", type=int, help="trained tokens per row (default 768 on cuda, 16 on cpu)")
    p.add_argument("--micro-batch-size", type=int, default=8, help="rows per forward/backward (default 8)")
    p.add_argument("--steps", type=int, default=5, help="timed updates after one warm-up (default 5)")
    p.add_argument("--zero-stage", type=int, default=0, choices=(0, 1, 2, 3), help="DeepSpeed ZeRO stage")
    p.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: from its name)")
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    defaults = {"size": "qwen3-0.6b" if gpu else "tiny", "prompts": 8 if gpu else 2, "group": 8 if gpu else 2,
                "prompt_len": 256 if gpu else 16, "response_len": 768 if gpu else 16}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def gpu_peak_flops(name: str, override_tflops: float | None) -> float:
    if override_tflops is not None:
        return override_tflops * 1e12
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    raise SystemExit(f"gpu_check: no known bf16 peak for {name!r}; pass --peak-tflops (dense bf16 TFLOP/s)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch starts: the Learner picks CUDA whenever it sees one
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch "
              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}). Run it on a machine with an "
              "NVIDIA GPU and a CUDA build of torch, or check the script here with --device cpu.", file=sys.stderr)
        return 2

    from benchmarks.learner_flops import matmul_peak, measure_learner
    from rl.config import load_config
    from rl.models import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        print(f"building a random {args.size} model in {tmp} ...", flush=True)
        model_dir = build_tiny_model(Path(tmp) / "model", **SIZES[args.size])
        cfg = load_config(REPO / "configs" / "tiny.yaml", [
            f"model.path={model_dir}", f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}",
            f"rollout.max_new_tokens={args.response_len}", f"learner.micro_batch_size={args.micro_batch_size}",
            f"learner.zero_stage={args.zero_stage}", "model.dtype=auto"])
        result = measure_learner(cfg, str(model_dir), args.steps, args.prompt_len, args.response_len)

    if args.device == "cuda":
        name = torch.cuda.get_device_name(0)
        peak, peak_kind = gpu_peak_flops(name, args.peak_tflops), "dense bf16 peak (vendor figure)"
        measured = matmul_peak(8192, "bfloat16", "cuda")
    else:
        name, peak_kind = "cpu", "fp32 matmul peak measured here"
        peak = measured = matmul_peak(2048, "float32", "cpu")
    mfu = result["flops_per_s"] / peak
    summary = (f"{args.size} ({result['params'] / 1e6:.0f}M params) on {name}: {result['rows']} rows x "
               f"{result['seq_len']} tokens, {result['step_s_mean']:.2f} s/step, {result['tokens_per_s']:.0f} "
               f"tokens/s, {flops(result['flops_per_s'])} (6N), MFU {100 * mfu:.1f}% of {flops(peak)} ({peak_kind}); "
               f"{'bf16' if args.device == 'cuda' else 'fp32'} matmul measured here: {flops(measured)}")
    print(summary)
    info = machine_info()
    print(f"for the docs: | {info['date'][:10]} | {name} | {args.size} | {result['rows']}x{result['seq_len']} | "
          f"{result['tokens_per_s']:.0f} tokens/s | MFU {100 * mfu:.1f}% |")
    write_json(args.out, {"machine": info, "device": name, "size": args.size, "shape": SIZES[args.size],
                          "zero_stage": args.zero_stage, "learner": result, "peak_flops_per_s": peak,
                          "peak_kind": peak_kind, "matmul_measured_flops_per_s": measured, "mfu": mfu,
                          "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
