"""GPU acceptance run: a few GRPO steps of a Qwen3-0.6B-shaped model through Ray + vLLM + DeepSpeed on one GPU.

    bash benchmarks/gpu_check.sh                      # one NVIDIA GPU: 3 steps, 4k-token responses (< 10 min)
    bash benchmarks/gpu_check.sh --device cpu         # anywhere: the same run at tiny sizes (CI runs this)

What runs: `rl.driver.train`, the code `rl train` runs, on a local Ray cluster: one vLLM rollout worker,
one reward worker and one DeepSpeed learner rank, the rollout engine and the learner sharing the GPU
(0.5 GPU each as Ray resources; vLLM takes `--gpu-memory-utilization` of it). The model is a randomly
initialised Qwen3 with Qwen3-0.6B's shape (hidden 1024, 28 layers, 16 heads, 8 KV heads, head_dim 128,
intermediate 3072, tied embeddings, the Qwen3 tokenizer's 151,669-token vocabulary), saved to a temporary
folder. A random model almost never writes EOS, so nearly every response is `--response-len` tokens long:
the learner trains on rows of ~4k tokens (chunked log-probs, a token budget per micro-batch).

Reported per step and as the mean over the steps after the first (which pays CUDA-graph capture and
allocator warm-up): generation tokens/s, learner tokens/s and MFU, weight-sync seconds and their share of
the step, step seconds; and the run's peak GPU memory (nvidia-smi polled every 0.2 s: vLLM's reservation
included) or, with --device cpu, the peak RSS of the process tree (driver, raylet, actors).

MFU = 6 x (body parameters x tokens the learner ran + output projection x response tokens) / train
seconds / the GPU's dense bf16 peak (H100 / H200 SXM: 989 TFLOP/s; --peak-tflops for another GPU).
Attention FLOPs are not counted, so MFU is understated, most at 4k tokens. With --device cpu the
"peak" is the fp32 matmul peak measured here: that run checks that the script and the topology work.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

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
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: tiny sizes, no GPU needed")
    p.add_argument("--size", choices=sorted(SIZES), help="model shape (default: qwen3-0.6b on cuda, tiny on cpu)")
    p.add_argument("--steps", type=int, default=3, help="GRPO steps (default 3)")
    p.add_argument("--prompts", type=int, help="prompts per step (default 4 on cuda, 2 on cpu)")
    p.add_argument("--group", type=int, help="samples per prompt (default 8 on cuda, 2 on cpu)")
    p.add_argument("--response-len", type=int, help="max new tokens (default 4096 on cuda, 16 on cpu)")
    p.add_argument("--sync-method", help="rollout.sync_method (default: the config's)")
    p.add_argument("--zero-stage", type=int, default=0, choices=(0, 1, 2, 3), help="DeepSpeed ZeRO stage")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.35, help="vLLM's share of the GPU")
    p.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: from its name)")
    p.add_argument("--override", action="append", default=[], help="more config overrides, section.field=value")
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    defaults = {"size": "qwen3-0.6b" if gpu else "tiny", "prompts": 4 if gpu else 2, "group": 8 if gpu else 2,
                "response_len": 4096 if gpu else 16}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def run_overrides(args: argparse.Namespace, model_dir: Path, run_dir: Path) -> list[str]:
    """configs/tiny.yaml turned into the one-GPU (or tiny CPU) acceptance run."""
    gpu = args.device == "cuda"
    share = ["rollout.gpus_per_worker=0.5", "learner.gpus_per_worker=0.5", "rollout.cpus_per_worker=2",
             "learner.cpus_per_worker=2", "reward.cpus_per_worker=1", "model.dtype=bfloat16",
             "rollout.dtype=bfloat16", "rollout.enforce_eager=false", "model.gradient_checkpointing=true",
             f"rollout.gpu_memory_utilization={args.gpu_memory_utilization}", "learner.micro_batch_size=4",
             "learner.max_tokens_per_micro_batch=16384"] if gpu else []
    return [f"model.path={model_dir}", f"run.output_dir={run_dir}", f"run.steps={args.steps}", "run.eval_every=0",
            "rollout.backend=vllm", f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}",
            f"rollout.max_new_tokens={args.response_len}",
            *([f"rollout.sync_method={args.sync_method}"] if args.sync_method else []),
            f"learner.zero_stage={args.zero_stage}", "checkpoint.every=0", "checkpoint.save_optimizer=false",
            "logging.wandb_mode=disabled", "logging.progress_bar=false", "logging.log_rollouts=false",
            *share, *args.override]


class PeakMemory:
    """Polls, in a thread, the GPU's used memory (nvidia-smi: every process on it) or, on CPU, the resident
    memory of this process and all its descendants (Ray's raylet is a child, the actors its children)."""

    def __init__(self, gpu: bool, every_s: float = 0.2):
        self.gpu, self.every_s, self.peak_bytes = gpu, every_s, 0
        self.last_error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.peak_bytes = max(self.peak_bytes, self._used())
            except (OSError, ValueError, IndexError, subprocess.SubprocessError) as e:
                self.last_error = e  # a process that ended between listing and reading; nvidia-smi hiccups

    def _used(self) -> int:
        if self.gpu:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                  "-i", "0"], capture_output=True, text=True, timeout=10).stdout
            return int(out.split()[0]) * 2**20
        import psutil

        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total


def model_parameters(model_dir: Path) -> tuple[int, int]:
    """(all parameters, output projection's) of the saved model, counted on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()), config.vocab_size * config.hidden_size


def step_figures(rows: list[dict[str, Any]], params: int, head: int, peak_flops: float) -> list[dict[str, float]]:
    """Per step: tokens/s of generation and of the learner, learner MFU, sync seconds and share of the step."""
    body = params - head  # tied embeddings: the input embedding is a lookup, the output projection a matmul
    out = []
    for m in rows:
        train_tokens, gen_tokens = m["perf/train_tokens"], m["perf/gen_tokens"]
        learner_flops = 6 * (body * train_tokens + head * gen_tokens)
        out.append({"step": m["step"], "step_s": m["time/step"], "generate_s": m["time/generate"],
                    "train_s": m["time/train"], "sync_s": m["time/sync"],
                    "sync_share": m["time/sync"] / m["time/step"], "gen_tokens": gen_tokens,
                    "gen_tokens_per_s": m["perf/gen_tokens_per_s"], "train_tokens": train_tokens,
                    "learner_tokens_per_s": train_tokens / m["time/train"],
                    "learner_mfu": learner_flops / m["time/train"] / peak_flops,
                    "response_len": m["rollout/response_len"]})
    return out


def peak_flops_of(device: str, override_tflops: float | None) -> tuple[str, float, str]:
    """(device name, peak FLOP/s, what the peak is)."""
    import torch

    if device == "cpu":
        from benchmarks.learner_flops import matmul_peak

        return "cpu", matmul_peak(1024, "float32", "cpu", seconds=1.0), "fp32 matmul peak measured here"
    name = torch.cuda.get_device_name(0)
    if override_tflops is not None:
        return name, override_tflops * 1e12, "dense bf16 peak (--peak-tflops)"
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return name, tflops * 1e12, "dense bf16 peak (vendor figure)"
    raise SystemExit(f"gpu_check: no known bf16 peak for {name!r}; pass --peak-tflops (dense bf16 TFLOP/s)")


def summarise(steps: list[dict[str, float]]) -> dict[str, float]:
    """Means over the steps after the first (warm-up), or over the one step there is."""
    timed = steps[1:] or steps
    keys = ("step_s", "generate_s", "train_s", "sync_s", "sync_share", "gen_tokens_per_s",
            "learner_tokens_per_s", "learner_mfu", "response_len")
    return {k: statistics.mean(s[k] for s in timed) for k in keys}


def train_and_measure(args: argparse.Namespace, tmp: Path) -> tuple[list[dict[str, Any]], int, int, int]:
    """Build the model, run the GRPO steps; returns (metrics rows, parameters, head parameters, peak bytes)."""
    from rl.config import load_config
    from rl.driver import train
    from rl.models import build_tiny_model

    print(f"building a random {args.size} model in {tmp} ...", flush=True)
    model_dir = build_tiny_model(tmp / "model", **SIZES[args.size],
                                 max_position_embeddings=max(2048, args.response_len + 1024))
    params, head = model_parameters(model_dir)
    cfg = load_config(REPO / "configs" / "tiny.yaml", run_overrides(args, model_dir, tmp / "run"))
    with PeakMemory(gpu=args.device == "cuda") as memory:
        run_dir = train(cfg)
    if memory.peak_bytes == 0:  # not one reading succeeded: say why rather than report 0 GiB
        raise SystemExit(f"gpu_check: could not read the memory in use ({memory.last_error!r})")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return rows, params, head, memory.peak_bytes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch starts: the roles pick CUDA whenever they see one
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch "
              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}). Run it on a machine with an "
              "NVIDIA GPU and a CUDA build of torch, or check the script here with --device cpu.", file=sys.stderr)
        return 2
    name, peak, peak_kind = peak_flops_of(args.device, args.peak_tflops)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        rows, params, head, peak_bytes = train_and_measure(args, Path(tmp))
    steps = step_figures(rows, params, head, peak)
    mean = summarise(steps)
    memory_key = "peak_gpu_gib" if args.device == "cuda" else "peak_host_rss_gib"
    print(f"{'step':>4} {'step s':>8} {'gen tok/s':>10} {'learn tok/s':>11} {'MFU %':>6} {'sync s':>7} {'sync %':>6}")
    for s in steps:
        print(f"{s['step']:>4} {s['step_s']:>8.2f} {s['gen_tokens_per_s']:>10.0f} {s['learner_tokens_per_s']:>11.0f} "
              f"{100 * s['learner_mfu']:>6.1f} {s['sync_s']:>7.2f} {100 * s['sync_share']:>6.1f}")
    summary = (f"{args.size} ({params / 1e6:.0f}M params) on {name}, {args.prompts}x{args.group} rows, "
               f"responses {mean['response_len']:.0f} tokens: {mean['step_s']:.1f} s/step, generation "
               f"{mean['gen_tokens_per_s']:.0f} tokens/s, learner {mean['learner_tokens_per_s']:.0f} tokens/s "
               f"(MFU {100 * mean['learner_mfu']:.1f}% of {flops(peak)}, {peak_kind}), sync {mean['sync_s']:.2f} s "
               f"({100 * mean['sync_share']:.1f}% of the step), {memory_key} {peak_bytes / 2**30:.1f}")
    print(summary)
    write_json(args.out, {"machine": machine_info(), "device": name, "size": args.size, "shape": SIZES[args.size],
                          "params": params, "zero_stage": args.zero_stage, "sync_method": args.sync_method,
                          "prompts": args.prompts, "group": args.group, "response_len_max": args.response_len,
                          "steps": steps, "mean_after_first": mean, memory_key: peak_bytes / 2**30,
                          "peak_flops_per_s": peak, "peak_kind": peak_kind, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
