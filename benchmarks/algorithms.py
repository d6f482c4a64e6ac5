"""Policy-loss variants side by side on the embedded default: the presets in configs/algos/ (GRPO, DAPO,
Dr. GRPO, GSPO) and LoRA against full fine-tuning. Prints a table, writes JSON and a PNG of the reward
and entropy curves (docs/algorithms.md shows them).

    python benchmarks/algorithms.py --out benchmarks/results/algorithms.json                  # 20 steps each
    python benchmarks/algorithms.py --out /tmp/a.json --steps 2 --variants dapo lora_full lora_r8

Each variant is `rl train configs/tiny.yaml` (or --config) with the variant's overrides, one at a time
in its own process, the same seed; the runs differ only in the loss options (or in model.lora_rank).
Figures per variant: median step time, peak memory of the run's process tree (as benchmarks/vs_trl.py
measures it), mean reward over the first and last 5 steps, mean token entropy at the first and last step.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, config_overrides, config_parser, fmt, machine_info, write_json  # noqa: E402
from benchmarks.vs_trl import FIXED_OVERRIDES, read_metrics, run_side  # noqa: E402
from rl.cli import algo_overrides  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "grpo": algo_overrides("grpo"),
    "dapo": algo_overrides("dapo"),
    "dr_grpo": algo_overrides("dr_grpo"),
    "gspo": algo_overrides("gspo"),
    "dapo_entropy": [*algo_overrides("dapo"), "grpo.entropy_target=0.8", "grpo.entropy_coef_lr=0.05"],
    "dapo_entropy_strong": [*algo_overrides("dapo"), "grpo.entropy_target=0.8", "grpo.entropy_coef_lr=0.2",
                            "grpo.entropy_coef_max=0.5"],
    "lora_full": [],
    "lora_r8": ["model.lora_rank=8", "model.lora_alpha=16", "learner.lr=1e-4"],
}
"""Variant -> its overrides. dapo_entropy(_strong) aim the token entropy at 0.8 nats (the start is
~0.95) with the adaptive coefficient (default bound 0.05, and a 10x bound with a faster step). lora_full is the config as it is (full fine-tuning) for the LoRA pair;
LoRA takes a 10x learning rate, as is usual for adapters."""


def summary(metrics: list[dict[str, float]]) -> dict[str, Any]:
    rewards = [m["reward/mean"] for m in metrics]
    k = min(5, len(rewards))
    return {"step_s_median": statistics.median(m["time/step"] for m in metrics),
            "train_s_median": statistics.median(m["time/train"] for m in metrics),
            "reward_first": sum(rewards[:k]) / k, "reward_last": sum(rewards[-k:]) / k,
            "entropy_first": metrics[0]["actor/entropy"], "entropy_last": metrics[-1]["actor/entropy"],
            "reward_per_step": rewards, "entropy_per_step": [m["actor/entropy"] for m in metrics]}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, r in results.items():
        steps = range(1, len(r["reward_per_step"]) + 1)
        left.plot(steps, r["reward_per_step"], label=name)
        right.plot(steps, r["entropy_per_step"], label=name)
    left.set(xlabel="step", ylabel="reward/mean", title="reward")
    right.set(xlabel="step", ylabel="actor/entropy (nats)", title="mean token entropy")
    left.legend()
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = config_parser(__doc__, "experiment YAML the variants start from")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    args = parser.parse_args(argv)
    base = config_overrides(args, {"run.steps": args.steps}, FIXED_OVERRIDES)
    out = Path(args.out)
    results = {}
    for name in args.variants:
        run_dir = out.parent / f"{out.stem}_runs" / name
        cmd = [sys.executable, "-m", "rl.cli", "train", args.config,
               *(f"--{o}" for o in [*base, *VARIANTS[name], f"run.output_dir={run_dir}", "checkpoint.every=0"])]
        side = run_side(name, cmd, run_dir, args.timeout)
        results[name] = {**side, **summary(read_metrics(run_dir / "metrics.jsonl", args.steps)),
                         "overrides": VARIANTS[name]}
    print(f"\n{'variant':<10}{'step s':>8}{'train s':>9}{'peak GiB':>10}{'reward 1-5':>12}{'reward last 5':>15}"
          f"{'entropy 1st':>13}{'entropy last':>14}")
    for name, r in results.items():
        print(f"{name:<10}{fmt(r['step_s_median']):>8}{fmt(r['train_s_median']):>9}{fmt(r['peak_tree_rss_gib']):>10}"
              f"{fmt(r['reward_first'], 3):>12}{fmt(r['reward_last'], 3):>15}{fmt(r['entropy_first'], 3):>13}"
              f"{fmt(r['entropy_last'], 3):>14}")
    plot(results, out.with_suffix(".png"))
    write_json(out, {"benchmark": "algorithms", "machine": machine_info(), "steps": args.steps,
                     "config": str(Path(args.config).resolve().relative_to(REPO)), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
