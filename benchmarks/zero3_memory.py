"""Peak host memory of each learner rank while it builds its models, ZeRO-0 vs ZeRO-3 (CPU, gloo).

    python benchmarks/zero3_memory.py --out benchmarks/results/zero3_memory.json
    python benchmarks/zero3_memory.py --out /tmp/z3.json --hidden 256 --layers 2      # quick

A random Qwen3 with the real 151,669-token vocabulary (tied embeddings), Qwen3-0.6B's layer shape and
`--layers` layers, saved once in fp32 and loaded in `--dtype`. For each stage, `--ranks` processes each build a rl.learner.Learner
(policy engine + the reference model, grpo.kl_coef > 0) and report their RSS before `setup()` and their
peak RSS (getrusage) after it; the difference is what building the models cost that rank. Under ZeRO-3
each rank loads into deepspeed.zero.Init partitions and the reference model is a partitioned engine.
"""
from __future__ import annotations

import argparse
import importlib
import json
import resource
import socket
import sys
import tempfile
from pathlib import Path

import psutil
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GIB = 2**30


def _rank(rank: int, model: str, stage: int, ranks: int, port: int, out: str, dtype: str) -> None:
    from rl.config import load_config
    from rl.learner import Learner

    cfg = load_config("configs/tiny.yaml", [f"model.path={model}", f"learner.zero_stage={stage}", "grpo.kl_coef=0.1",
                                            f"run.output_dir={out}", "learner.threads=1", f"model.dtype={dtype}"])
    learner = Learner(cfg, model, rank=rank, world_size=ranks)
    for library in ("deepspeed", "transformers"):  # imported before the baseline: libraries are not models
        importlib.import_module(library)
    before = psutil.Process().memory_info().rss
    params = learner.setup("127.0.0.1", port)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    Path(out, f"stage{stage}_rank{rank}.json").write_text(json.dumps(
        {"rss_before_gib": before / GIB, "peak_rss_gib": peak / GIB, "setup_gib": (peak - before) / GIB,
         "parameters": params}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16", help="the learner's (bfloat16 as on GPU: the fp32 file is copied, not mapped)")
    parser.add_argument("--ranks", type=int, default=2)
    args = parser.parse_args()
    from rl.models import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="zero3_memory_") as tmp:  # the model: ~1.6 GB in fp32
        work = Path(tmp)
        model = build_tiny_model(work / "model", hidden_size=args.hidden, num_layers=args.layers, num_heads=16,
                                 num_kv_heads=8, head_dim=128, intermediate_size=3 * args.hidden)
        result: dict = {"hidden": args.hidden, "layers": args.layers, "ranks": args.ranks, "dtype": args.dtype}
        for stage in (0, 3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            mp.spawn(_rank, args=(str(model), stage, args.ranks, port, str(work), args.dtype), nprocs=args.ranks)
            result[f"zero{stage}"] = [json.loads((work / f"stage{stage}_rank{r}.json").read_text())
                                      for r in range(args.ranks)]
        result["model_gib"] = result["zero0"][0]["parameters"] * (2 if "16" in args.dtype else 4) / GIB
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
