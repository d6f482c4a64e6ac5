"""Peak learner memory against response length: log-probs and entropy in chunks vs all at once.

    python benchmarks/learner_memory.py --out benchmarks/results/learner_memory.json
    python benchmarks/learner_memory.py --out /tmp/lm.json --lengths 64 256 --vocab 4096 --hidden 64 --chunk 32  # toy

One GRPO forward + backward on a Qwen3-shaped model (the full 151,936-token vocabulary, tied embeddings,
`--layers` layers of `--hidden` width so that it fits in a laptop's memory), one row of `--prompt`
prompt tokens and N response tokens, through the learner's own code (rl/learner_logprobs.py
`token_logprobs`, rl/grpo.py `policy_loss` with an entropy bonus), in three modes:

- chunked: `learner.logits_chunk_tokens = --chunk` (the default config's value unless given),
- unchunked: `logits_chunk_tokens = 0` (the whole (1, N, V) fp32 logits, as the learner did before),
- body: the same forward and backward with a loss on the final hidden states and no vocabulary
  projection, so `peak - body` is the vocabulary part ("logits") of each mode's peak.

Memory is the peak resident set size (Linux VmHWM) of a fresh process per measurement, reset after the
model and batch are built (/proc/self/clear_refs), minus the RSS at that moment: what the step itself
adds. CPU only; the model is fp32 (the CPU learner's dtype). An unchunked point whose predicted peak
(see `unchunked_points`) exceeds `--max-gib` (default 60% of the available memory) is not run but
estimated, and marked so (`unchunked_measured`).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, write_json  # noqa: E402

GIB = 2**30
MODES = ("chunked", "unchunked", "body")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from rl.config import LearnerConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192], help="response tokens per row")
    p.add_argument("--chunk", type=int, default=LearnerConfig.logits_chunk_tokens,
                   help="logits_chunk_tokens of the chunked mode (default: the config's default)")
    p.add_argument("--vocab", type=int, default=151936, help="vocabulary size (Qwen3's by default)")
    p.add_argument("--hidden", type=int, default=256, help="hidden size")
    p.add_argument("--layers", type=int, default=2, help="decoder layers")
    p.add_argument("--prompt", type=int, default=64, help="prompt tokens per row")
    p.add_argument("--threads", type=int, default=2, help="torch threads in each measuring process")
    p.add_argument("--max-gib", type=float, default=0.0,
                   help="run an unchunked point only if its predicted peak is below this (default: 60%% of "
                        "the memory available when the unchunked points start)")
    p.add_argument("--measure", nargs=2, metavar=("MODE", "TOKENS"), help=argparse.SUPPRESS)  # one child process
    return p.parse_args(argv)


def qwen3_shaped(args: argparse.Namespace, response_tokens: int) -> Any:
    """A random fp32 Qwen3 of the given width and depth: 4 heads of 64 (2 KV heads), MLP 3 x hidden."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                         intermediate_size=3 * args.hidden, tie_word_embeddings=True,
                         max_position_embeddings=args.prompt + response_tokens + 1)
    return Qwen3ForCausalLM(config).train()


def grpo_step(model: Any, args: argparse.Namespace, mode: str, response_tokens: int) -> None:
    """Forward + GRPO loss (with an entropy bonus) + backward on one row, as the learner runs a pass."""
    import torch

    from rl import grpo
    from rl.learner_logprobs import LogprobSettings, token_logprobs
    from rl.types import TrainBatch

    width = args.prompt + response_tokens
    ids = torch.randint(0, args.vocab, (1, width), generator=torch.Generator().manual_seed(1))
    loss_mask = torch.zeros(1, width, dtype=torch.long)
    loss_mask[:, args.prompt:] = 1
    batch = TrainBatch(ids, torch.ones_like(ids), loss_mask, torch.ones(1), torch.zeros(1, width),
                       torch.tensor([args.prompt]))
    if mode == "body":  # the same model work, no vocabulary projection
        hidden = model.model(input_ids=ids).last_hidden_state
        (hidden * torch.randn_like(hidden)).sum().backward()
        return
    settings = LogprobSettings(temperature=1.0, chunk_tokens=args.chunk if mode == "chunked" else 0,
                               keeps_logits=True, shared_prefix=False)
    logprobs, entropy, _ = token_logprobs(model, batch, settings, entropy="grad")
    mask = torch.ones_like(logprobs)
    loss, _ = grpo.policy_loss(logprobs, logprobs.detach(), batch.advantages, mask)
    (loss - 0.01 * grpo.agg_loss(entropy, mask, "token-mean")).backward()


def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def measure(args: argparse.Namespace) -> dict[str, float]:
    """In this (fresh) process: what one step adds to the peak RSS, in GiB, and its seconds."""
    import torch

    torch.set_num_threads(args.threads)
    mode, tokens = args.measure[0], int(args.measure[1])
    model = qwen3_shaped(args, tokens)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    grpo_step(model, args, mode, tokens)
    seconds = time.perf_counter() - start
    return {"peak_gib": (_rss_kib("VmHWM") - before) * 1024 / GIB, "seconds": seconds}


def run_child(args: argparse.Namespace, mode: str, tokens: int) -> dict[str, float]:
    flags = ["--out", args.out, "--chunk", str(args.chunk), "--vocab", str(args.vocab), "--hidden", str(args.hidden),
             "--layers", str(args.layers), "--prompt", str(args.prompt), "--threads", str(args.threads)]
    proc = subprocess.run([sys.executable, __file__, *flags, "--measure", mode, str(tokens)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} at {tokens} tokens failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def unchunked_points(args: argparse.Namespace, body: list[float]
                     ) -> tuple[list[float], list[bool], list[float | None]]:
    """Unchunked peaks (GiB), whether each was measured, and seconds (None where estimated). A point is
    run only if its predicted peak fits in `--max-gib`; the prediction (and the figure of a point not
    run) is the body's measured peak plus the measured points' vocabulary part per token times N: the
    whole logits are N x V floats in a fixed number of copies, so that part is proportional to N."""
    import psutil

    budget = args.max_gib or 0.6 * psutil.virtual_memory().available / GIB  # the machine may be shared
    peaks: list[float] = []
    measured: list[bool] = []
    seconds: list[float | None] = []
    for i, n in enumerate(args.lengths):
        per_token = [(peaks[j] - body[j]) / args.lengths[j] for j in range(i) if measured[j]]
        predicted = body[i] + sum(per_token) / len(per_token) * n if per_token else 0.0
        if predicted > budget:
            peaks.append(predicted)
            measured.append(False)
            seconds.append(None)
            print(f"  unchunked {n:>6} tokens: predicted {predicted:.2f} GiB > {budget:.1f} GiB: not run, "
                  "estimated", flush=True)
            continue
        point = run_child(args, "unchunked", n)
        peaks.append(point["peak_gib"])
        measured.append(True)
        seconds.append(point["seconds"])
        print(f"  unchunked {n:>6} tokens: {point['peak_gib']:.3f} GiB, {point['seconds']:.1f} s", flush=True)
    return peaks, measured, seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args)))
        return 0
    results: dict[str, list[Any]] = {}
    for mode in ("chunked", "body"):
        points = [run_child(args, mode, n) for n in args.lengths]
        results[f"peak_gib_{mode}"] = [p["peak_gib"] for p in points]
        results[f"seconds_{mode}"] = [p["seconds"] for p in points]
        for n, p in zip(args.lengths, points):
            print(f"  {mode:>9} {n:>6} tokens: {p['peak_gib']:.3f} GiB, {p['seconds']:.1f} s", flush=True)
    results["peak_gib_unchunked"], results["unchunked_measured"], results["seconds_unchunked"] = \
        unchunked_points(args, results["peak_gib_body"])
    for mode in ("chunked", "unchunked"):
        results[f"logits_gib_{mode}"] = [p - b for p, b in zip(results[f"peak_gib_{mode}"], results["peak_gib_body"])]
    report(args, results)
    write_json(args.out, {"response_tokens": args.lengths, **results, "machine": machine_info(),
                          "model": {"vocab": args.vocab, "hidden": args.hidden, "layers": args.layers,
                                    "dtype": "float32", "rows": 1, "prompt_tokens": args.prompt},
                          "chunk_tokens": args.chunk, "memory": "peak RSS (VmHWM) of a fresh process minus its RSS "
                          "before the step; logits = peak - body (same step without the vocabulary projection)"})
    return 0


def report(args: argparse.Namespace, r: dict[str, list[Any]]) -> None:
    print(f"\nQwen3-shaped, vocab {args.vocab}, hidden {args.hidden}, {args.layers} layers, fp32, 1 row, "
          f"chunk {args.chunk} tokens; GiB added by one forward + backward (peak RSS)")
    print(f"{'response tokens':>16} {'chunked':>9} {'unchunked':>10} {'body':>7} {'logits, chunked':>16} "
          f"{'logits, unchunked':>18} {'chunked/unchunked':>18}")
    for i, n in enumerate(args.lengths):
        star = "" if r["unchunked_measured"][i] else "*"
        print(f"{n:>16} {r['peak_gib_chunked'][i]:>9.3f} {r['peak_gib_unchunked'][i]:>9.3f}{star:1} "
              f"{r['peak_gib_body'][i]:>7.3f} {r['logits_gib_chunked'][i]:>16.3f} "
              f"{r['logits_gib_unchunked'][i]:>18.3f} {_ratio(r['peak_gib_chunked'][i], r['peak_gib_unchunked'][i]):>18.2f}")
    if not all(r["unchunked_measured"]):
        print("* not run (it would not fit in --max-gib here): body + the measured unchunked points' vocabulary "
              "part per token x N")
    flat = _ratio(max(r["logits_gib_chunked"]), min(r["logits_gib_chunked"]))
    print(f"logits part, chunked: largest / smallest = {flat:.2f} over {args.lengths[0]}..{args.lengths[-1]} tokens")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")  # toy sizes can add no measurable RSS


if __name__ == "__main__":
    sys.exit(main())
