"""GRPO side by side: this pipeline (`rl train`) vs TRL's GRPOTrainer, same machine, same work.

    python benchmarks/vs_trl.py --out benchmarks/results/vs_trl.json          # the embedded benchmark
    python benchmarks/vs_trl.py --out /tmp/smoke.json --steps 2 --prompts 2 --group 4 --max-new-tokens 16

Both sides get the same model (default: the config's, SmolLM2-135M-Instruct), the same prompts in the
same order (our TaskMix draws for steps 0..N-1, rendered by our chat template; TRL receives the
rendered text and tokenises it to the same ids, which is checked), the same reward (each of the
task's reward components called in-process as a TRL reward function, with the same weights), the
same group size, max new tokens, batch (prompts x group per optimizer step, same micro-batch),
learning rate, optimizer settings, clipping, loss aggregation, and number of steps. TRL needs
`pip install -c .venv/constraints.txt -e '.[bench]'` (trl).

Runs alternate (ours, TRL, ours, TRL with --repeats 2), each in its own process, one at a time;
repeat r uses seed + r on both sides, so means over repeats average the reward over seeds as well.
Ours is `rl train configs/tiny.yaml` with the overrides below; TRL is benchmarks/trl_grpo.py.
After the repeats, TRL's strongest generation path is tried once (`--no-trl-vllm` skips it): vLLM in
colocate mode (benchmarks/trl_grpo.py --vllm-colocate). The JSON's trl_strongest_variant is the faster
of it and the plain variant among those that ran, with trl_strongest_tokens_per_s and
ratio_tokens_per_s_strongest; when colocate fails, trl_vllm_colocate_error holds the run's last lines.
ours_peak_gib / trl_peak_gib / ratio_peak_gib: peak process-tree memory (plain TRL).

Definitions (also written to the JSON):
- generated tokens/s end to end = generated tokens (completion tokens incl. EOS, all steps) / total
  step time (the sum of time/step: start-up, model loading and checkpointing are excluded);
- samples/s = prompts x group x steps / total step time;
- step split = mean seconds per step in generate / reward / weight sync / train; "step waits for
  rollouts" = the part of the step spent waiting for generate + reward + sync (all of it when
  synchronous; less with rollout.off_policy_steps=1, where they overlap the previous update);
  other = step - wait - train (collating, metrics; for TRL, tokenisation and advantages);
- peak memory = the largest sum of RSS over the run's process tree (Ray's raylet and actors are
  children of `rl train`), sampled every 0.5 s with psutil; shared pages count once per process;
- reward after N steps = reward/mean at the last step; also the mean over the last half of the steps.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, config_overrides, config_parser, fmt, machine_info, write_json  # noqa: E402
from rl.config import TrainConfig, load_config  # noqa: E402
from rl.config_io import to_dict  # noqa: E402

PHASES = ("generate", "reward", "train", "sync")
LOSS_TYPES = {"token-mean": "dapo", "seq-mean-token-mean": "grpo", "seq-mean-token-sum-norm": "dr_grpo"}
"""Our grpo.loss_agg -> TRL's loss_type with the same normalisation."""
FIXED_OVERRIDES = ["logging.wandb_mode=disabled", "logging.progress_bar=false", "checkpoint.save_optimizer=false"]
"""TRL logs nowhere and saves nothing here; ours still writes its final model checkpoint (outside step time)."""


# ------------------------------------------------------------------------------ the compared config
def our_overrides(args: argparse.Namespace) -> list[str]:
    """Dotted overrides for `rl train` (and for building the TRL side from the same config)."""
    chosen = {"run.steps": args.steps, "rollout.max_new_tokens": args.max_new_tokens, "learner.lr": args.lr}
    return config_overrides(args, chosen, FIXED_OVERRIDES)


def check_comparable(cfg: TrainConfig) -> None:
    """Refuse configs for which TRL's GRPOTrainer would not be doing the same work."""
    problems = []
    for t in cfg.data.tasks:
        if t.env or t.thinking_budget is not None:
            problems.append(f"task {t.name!r} uses an agent env or a thinking budget (TRL has neither here)")
    if cfg.learner.mini_batches != 1:
        problems.append("learner.mini_batches must be 1 (TRL takes one optimizer step per generation batch here)")
    if cfg.data.dynamic_sampling:
        problems.append("data.dynamic_sampling must be false (ours would generate more samples than TRL)")
    if problems:
        raise ValueError("vs_trl: this config cannot be compared like for like: " + "; ".join(problems))


def trl_grpo_config(cfg: TrainConfig, reward_weights: list[float]) -> dict[str, Any]:
    """GRPOConfig keywords that do what `cfg` does (see benchmarks/trl_grpo.py for the fixed ones)."""
    r, lrn, g = cfg.rollout, cfg.learner, cfg.grpo
    # Our learner (1 rank, 1 mini-batch) runs micro-batches of min(micro_batch_size, batch) rows and one
    # optimizer step per batch: TRL's per-device batch x accumulation steps = one generation batch.
    micro = min(lrn.micro_batch_size, cfg.samples_per_step)
    if cfg.samples_per_step % micro:
        raise ValueError(f"vs_trl: {cfg.samples_per_step} samples per step do not split into micro-batches of "
                         f"{micro}; set learner.micro_batch_size to a divisor")
    return {"max_steps": cfg.run.steps, "seed": cfg.run.seed, "num_generations": r.group_size,
            "per_device_train_batch_size": micro, "gradient_accumulation_steps": cfg.samples_per_step // micro,
            "max_completion_length": r.max_new_tokens, "temperature": r.temperature, "top_p": r.top_p,
            "learning_rate": lrn.lr, "adam_beta1": lrn.betas[0], "adam_beta2": lrn.betas[1],
            "weight_decay": lrn.weight_decay, "max_grad_norm": lrn.grad_clip,
            "lr_scheduler_type": "constant_with_warmup", "warmup_steps": lrn.warmup_steps,
            "epsilon": g.clip_low, "epsilon_high": g.clip_high, "loss_type": LOSS_TYPES[g.loss_agg],
            "scale_rewards": "group" if g.normalize_std else "none", "beta": g.kl_coef,
            "num_iterations": lrn.epochs, "reward_weights": reward_weights,
            "gradient_checkpointing": cfg.model.gradient_checkpointing,
            "shuffle_dataset": False}  # prompts arrive in our step order: step s sees our step s's prompts


def trl_spec(cfg: TrainConfig, threads: int) -> dict[str, Any]:
    """Everything the TRL process needs: model folder, prompts of every step in order, rewards, config."""
    from transformers import AutoTokenizer

    from envs.tasks import load_task
    from rl.data import TaskMix
    from rl.round import build_requests
    from rl.models import resolve_model_path

    check_comparable(cfg)
    model_path = resolve_model_path(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or model_path)
    tasks = [load_task(t, cfg.run.seed) for t in cfg.data.tasks]
    mix, group = TaskMix(tasks, cfg.run.seed), cfg.rollout.group_size
    prompts = []
    for step in range(cfg.run.steps):
        requests, rows, prefixes = build_requests(step, cfg, mix, tokenizer)
        for i in range(0, len(requests), group):  # one dataset row per prompt: TRL repeats it `group` times
            ids = requests[i].prompt_ids
            text = tokenizer.decode(ids)
            if tokenizer(text)["input_ids"] != ids:  # what TRL does with a plain-text prompt
                raise ValueError(f"vs_trl: TRL would tokenise step {step}'s prompt {text!r} differently from ours "
                                 "(special tokens added?); the comparison would not be like for like")
            prompts.append({"prompt": text, "row": json.dumps(rows[i]), "prefix": prefixes[i]})
    specs = {tuple((s.key, s.name, s.weight, json.dumps(s.kwargs)) for s in t.rewards) for t in tasks}
    if len(specs) != 1:
        raise ValueError("vs_trl: the tasks have different reward lists; TRL applies one list to every sample")
    rewards = tasks[0].rewards
    return {"model_path": model_path, "threads": threads, "prompts": prompts,
            "rewards": [{"key": s.key, "name": s.name, "kwargs": s.kwargs} for s in rewards],
            "grpo_config": trl_grpo_config(cfg, [s.weight for s in rewards])}


# ------------------------------------------------------------------------------------ running a side
class TreeMemory:
    """Peak RSS of a process and all its descendants, sampled in a thread (psutil)."""

    def __init__(self, pid: int, interval_s: float = 0.5):
        import psutil

        self.root, self.interval_s = psutil.Process(pid), interval_s
        self.peak_total = self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = single = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.NoSuchProcess:  # exited between listing and reading: not part of this sample
                    continue
                total, single = total + rss, max(single, rss)
            self.peak_total, self.peak_single = max(self.peak_total, total), max(self.peak_single, single)
            self._stop.wait(self.interval_s)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"peak_tree_rss_gib": self.peak_total / 2**30, "peak_process_rss_gib": self.peak_single / 2**30}


def run_side(name: str, cmd: list[str], run_dir: Path, timeout_s: float) -> dict[str, Any]:
    """Run one side to completion with its output in run_dir/output.log; wall time and peak memory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("RAY_ADDRESS", None)  # a local cluster of its own, not whatever cluster the caller points at
    log = run_dir / "output.log"
    print(f"[vs_trl] {name}: {' '.join(cmd)}  (log: {log})", flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        memory = TreeMemory(proc.pid)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the whole session: Ray's raylet and actors too
            proc.wait()
            rc = None
        peak = memory.stop()
    wall = time.perf_counter() - start
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        why = f"timed out after {timeout_s:.0f} s" if rc is None else f"exited with {rc}"
        raise RuntimeError(f"vs_trl: the {name} run {why}; last lines of {log}:\n{tail}")
    return {"wall_s": wall, **peak}


def read_metrics(path: Path, steps: int) -> list[dict[str, float]]:
    if not path.exists():
        raise FileNotFoundError(f"vs_trl: {path} was not written; see output.log next to it")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if len(records) != steps:
        raise RuntimeError(f"vs_trl: {path} has {len(records)} steps, expected {steps}")
    return records


def summarize(steps: list[dict[str, float]], samples_per_step: int) -> dict[str, Any]:
    """Throughput, step split and reward of one run (definitions: module docstring)."""
    n = len(steps)
    step_s = sum(s["time/step"] for s in steps)
    tokens = sum(s["perf/gen_tokens"] for s in steps)
    split = {p: sum(s[f"time/{p}"] for s in steps) / n for p in PHASES}
    # The step waits for its rollouts (generate + reward + sync, or less when they were made while the
    # previous update ran: rollout.off_policy_steps), then trains; TRL's step does it all in sequence.
    split["wait_rollout"] = sum(s.get("time/wait_rollout", sum(s[f"time/{p}"] for p in ("generate", "reward", "sync")))
                                for s in steps) / n
    split["other"] = step_s / n - split["wait_rollout"] - split["train"]
    rewards = [s["reward/mean"] for s in steps]
    out = {"steps": n, "gen_tokens": tokens, "step_time_s_total": step_s, "step_time_s_mean": step_s / n,
           "tokens_per_s": tokens / step_s, "samples_per_s": n * samples_per_step / step_s,
           "split_s": split, "split_pct": {k: 100 * v / (step_s / n) for k, v in split.items()},
           "reward_per_step": rewards, "reward_final": rewards[-1],
           "reward_last_half_mean": sum(rewards[n // 2:]) / len(rewards[n // 2:])}
    if n > 1:  # the first step also pays one-off costs (first JIT, allocator warm-up)
        rest = steps[1:]
        out["tokens_per_s_after_step1"] = sum(s["perf/gen_tokens"] for s in rest) / sum(s["time/step"] for s in rest)
    return out


def mean_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over repeats of every number (nested dicts too) and, element by element, of every list of
    numbers of the same length (reward per step); anything else becomes the list of each run's value."""
    def numeric(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [r[key] for r in runs]
        if isinstance(value, dict):
            out[key] = mean_of(values)
        elif numeric(value):
            out[key] = sum(values) / len(runs)
        elif (isinstance(value, list) and all(isinstance(v, list) and len(v) == len(value) for v in values)
              and all(numeric(x) for v in values for x in v)):
            out[key] = [sum(column) / len(runs) for column in zip(*values)]
        else:
            out[key] = values if len(runs) > 1 else value
    return out


# ---------------------------------------------------------------------------------------- reporting
def table(ours: dict[str, Any], trl: dict[str, Any]) -> str:
    def row(label: str, a: float | None, b: float | None, digits: int = 2, ratio: bool = True) -> str:
        r = f"{a / b:.2f}x" if ratio and a is not None and b else ""
        return f"{label:<38}{fmt(a, digits):>12}{fmt(b, digits):>12}{r:>10}"

    lines = [f"{'':<38}{'ours':>12}{'TRL':>12}{'ours/TRL':>10}",
             row("generated tokens/s (end to end)", ours["tokens_per_s"], trl["tokens_per_s"]),
             row("  same, steps 2..N", ours.get("tokens_per_s_after_step1"), trl.get("tokens_per_s_after_step1")),
             row("samples/s", ours["samples_per_s"], trl["samples_per_s"], 3),
             row("generated tokens (all steps)", ours["gen_tokens"], trl["gen_tokens"], 0),
             row("step time, mean (s)", ours["step_time_s_mean"], trl["step_time_s_mean"])]
    for phase, label in (("generate", "generate"), ("reward", "reward"), ("sync", "weight sync"),
                         ("wait_rollout", "step waits for rollouts"), ("train", "train"), ("other", "other")):
        lines.append(row(f"  {label} (s/step)", ours["split_s"][phase], trl["split_s"][phase], 2, ratio=False))
    lines += [row("peak memory, process tree (GiB)", ours["peak_tree_rss_gib"], trl["peak_tree_rss_gib"]),
              row("reward, step 1", ours["reward_per_step"][0], trl["reward_per_step"][0], 3, ratio=False),
              row(f"reward after {ours['steps']:.0f} steps", ours["reward_final"], trl["reward_final"], 3, ratio=False),
              row("reward, mean of last half", ours["reward_last_half_mean"], trl["reward_last_half_mean"], 3,
                  ratio=False),
              row("wall time incl. start-up (s)", ours["wall_s"], trl["wall_s"], 0)]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = config_parser(__doc__, "our config (TRL's is derived)")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per run (default 10)")
    p.add_argument("--max-new-tokens", type=int, help="max generated tokens per sample (default: the config's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the config's)")
    p.add_argument("--repeats", type=int, default=2, help="runs per side, alternating ours/TRL (default 2)")
    p.add_argument("--only", choices=("both", "ours", "trl"), default="both", help="run one side only (debugging)")
    p.add_argument("--trl-vllm", action=argparse.BooleanOptionalAction, default=True,
                   help="also try TRL with vLLM colocated once (its strongest variant; default on)")
    p.add_argument("--workdir", help="run folders (default: runs/vs_trl-<time>)")
    p.add_argument("--run-timeout-s", type=float, default=1800, help="kill a run after this long")
    return p.parse_args(argv)


def side_command(side: str, args: argparse.Namespace, overrides: list[str], run_dir: Path, spec_path: Path
                 ) -> list[str]:
    if side == "ours":
        return [sys.executable, "-m", "rl.cli", "train", str(Path(args.config).resolve()), "--output-dir",
                str(run_dir), *overrides]
    command = [sys.executable, str(REPO / "benchmarks" / "trl_grpo.py"), "--spec", str(spec_path), "--out", str(run_dir)]
    return command + (["--vllm-colocate"] if side == "trl-vllm" else [])


def headline(ours: dict[str, Any], trl: dict[str, Any], vllm: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures the issue asks for, at the top of the JSON. `vllm`: TRL's vLLM-colocate attempt, a
    summarised run or {"error": why it could not run}; the strongest TRL variant is the faster of it
    and the plain one among those that ran."""
    out = {"ours_tokens_per_s": ours["tokens_per_s"], "trl_tokens_per_s": trl["tokens_per_s"],
           "ratio_tokens_per_s": ours["tokens_per_s"] / trl["tokens_per_s"],
           "ours_samples_per_s": ours["samples_per_s"], "trl_samples_per_s": trl["samples_per_s"],
           "ratio_samples_per_s": ours["samples_per_s"] / trl["samples_per_s"],
           "ours_reward_final": ours["reward_final"], "trl_reward_final": trl["reward_final"],
           "ours_peak_gib": ours["peak_tree_rss_gib"], "trl_peak_gib": trl["peak_tree_rss_gib"],
           "ratio_peak_gib": ours["peak_tree_rss_gib"] / trl["peak_tree_rss_gib"]}
    ran = vllm is not None and "error" not in vllm
    strongest = ("vllm-colocate", vllm) if ran and vllm["tokens_per_s"] > trl["tokens_per_s"] else ("plain", trl)
    out |= {"trl_strongest_variant": strongest[0], "trl_strongest_tokens_per_s": strongest[1]["tokens_per_s"],
            "ratio_tokens_per_s_strongest": ours["tokens_per_s"] / strongest[1]["tokens_per_s"],
            "trl_vllm_colocate_tokens_per_s": vllm["tokens_per_s"] if ran else None,
            "trl_vllm_colocate_error": None if ran or vllm is None else vllm["error"]}
    return out


def try_trl_vllm(args: argparse.Namespace, overrides: list[str], run_dir: Path, spec_path: Path,
                 samples_per_step: int, steps: int) -> dict[str, Any]:
    """One run of TRL with vLLM colocated; its summary, or {"error": the run's last lines} when it fails
    (on the CPU build of vLLM it did: benchmarks/README.md)."""
    try:
        info = run_side("trl-vllm", side_command("trl-vllm", args, overrides, run_dir, spec_path), run_dir,
                        args.run_timeout_s)
        return {**summarize(read_metrics(run_dir / "metrics.jsonl", steps), samples_per_step), **info}
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"[vs_trl] TRL with vLLM colocate could not run; the plain variant is the strongest that runs "
              f"here: {str(exc)[-300:]}", flush=True)
        return {"error": str(exc)[-3000:]}


def compared(cfg: TrainConfig, spec: dict[str, Any], overrides: list[str], repeats: int) -> dict[str, Any]:
    weights = spec["grpo_config"]["reward_weights"]
    return {"model": cfg.model.path, "model_path": spec["model_path"], "steps": cfg.run.steps,
            "prompts_per_step": cfg.rollout.prompts_per_step, "group_size": cfg.rollout.group_size,
            "samples_per_step": cfg.samples_per_step, "max_new_tokens": cfg.rollout.max_new_tokens,
            "lr": cfg.learner.lr, "tasks": [t.name for t in cfg.data.tasks],
            "rewards": {r["key"]: w for r, w in zip(spec["rewards"], weights)}, "threads": spec["threads"],
            "repeats": repeats, "seeds": [cfg.run.seed + r for r in range(repeats)],
            "our_overrides": overrides, "ours_config": to_dict(cfg),
            "trl_grpo_config": spec["grpo_config"], "trl_dtype": "float32 on CPU, bfloat16 on CUDA",
            "ours_engines": f"rollout {cfg.rollout.backend}, learner DeepSpeed ZeRO-{cfg.learner.zero_stage}"}


DEFINITIONS = {
    "tokens_per_s": "generated tokens (completion tokens incl. EOS, all steps) / sum of step times; start-up, "
                    "model loading and checkpointing are excluded",
    "samples_per_s": "prompts x group x steps / sum of step times",
    "split_s": "mean seconds per step in each phase; wait_rollout = waiting for generate + reward + sync "
               "(they overlap training when off-policy); other = step time - wait_rollout - train",
    "peak_tree_rss_gib": "largest sum of RSS over the run's process tree, psutil every 0.5 s",
    "reward_final": "reward/mean (weighted sum of the task's reward components) at the last step"}


def require_trl() -> None:
    """Fail before any run when the TRL side cannot run, saying how to install it."""
    import importlib.util

    if importlib.util.find_spec("trl") is None:
        raise SystemExit("vs_trl: TRL is not installed in this environment; install the benchmark extra with "
                         f"`{sys.executable} -m pip install -c .venv/constraints.txt -e '.[bench]'` "
                         "(or pass --only ours)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only != "ours":
        require_trl()
    overrides = our_overrides(args)
    cfg = load_config(args.config, overrides)  # fails here, before anything runs, on a bad override
    workdir = Path(args.workdir or REPO / "runs" / f"vs_trl-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # Repeat r runs both sides with seed + r (prompts, sampling, init of nothing else), so that the
    # means over repeats average the reward over seeds too, not only the timings.
    seeded = [overrides + [f"run.seed={cfg.run.seed + rep}"] for rep in range(args.repeats)]
    specs = []
    for rep in range(args.repeats):
        spec = trl_spec(load_config(args.config, seeded[rep]), threads=cfg.learner.threads or os.cpu_count() or 1)
        specs.append(workdir / f"trl_spec-{rep + 1}.json")
        specs[-1].write_text(json.dumps(spec, indent=1))

    machine = machine_info()  # before the runs: its load average says whether the machine was idle
    sides = ["ours", "trl"] if args.only == "both" else [args.only]
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    for rep in range(args.repeats):
        for side in sides:  # alternating, so slow drift of the machine hits both sides alike
            run_dir = workdir / f"{side}-{rep + 1}"
            command = side_command(side, args, seeded[rep], run_dir, specs[rep])
            info = run_side(side, command, run_dir, args.run_timeout_s)
            summary = summarize(read_metrics(run_dir / "metrics.jsonl", cfg.run.steps), cfg.samples_per_step)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # ours' final model: not needed, ~0.5 GB
            results[side].append({**summary, **info, "run_dir": str(run_dir), "seed": cfg.run.seed + rep})
            print(f"[vs_trl] {side} run {rep + 1}: {summary['tokens_per_s']:.2f} generated tokens/s, "
                  f"reward after {cfg.run.steps} steps {summary['reward_final']:.3f}", flush=True)

    agg = {side: mean_of(runs) for side, runs in results.items()}
    vllm = try_trl_vllm(args, seeded[0], workdir / "trl-vllm-1", specs[0], cfg.samples_per_step, cfg.run.steps) \
        if args.only == "both" and args.trl_vllm else None
    result: dict[str, Any] = headline(agg["ours"], agg["trl"], vllm) if args.only == "both" else {}
    result |= {"command": " ".join(["python", *(sys.argv if argv is None else ["benchmarks/vs_trl.py", *argv])]),
               "machine": {**machine, "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]},
               "compared": compared(cfg, spec, overrides, args.repeats), "definitions": DEFINITIONS,
               "ours": agg.get("ours"), "trl": agg.get("trl"), "trl_vllm_colocate": vllm, "runs": results}
    write_json(args.out, result)  # first: a problem in printing must not lose the runs
    if args.only == "both":
        print(f"\nGRPO, {cfg.run.steps} steps x {cfg.rollout.prompts_per_step} prompts x {cfg.rollout.group_size} "
              f"samples, <= {cfg.rollout.max_new_tokens} new tokens ({args.repeats} run(s) per side, means)")
        print(table(agg["ours"], agg["trl"]))
        if vllm is not None:
            print(f"TRL with vLLM colocate: {vllm['tokens_per_s']:.2f} generated tokens/s" if "error" not in vllm
                  else "TRL with vLLM colocate: could not run (trl_vllm_colocate_error in the JSON)")
        print(f"strongest TRL variant that ran: {result['trl_strongest_variant']}, ours/TRL "
              f"{result['ratio_tokens_per_s_strongest']:.2f}x tokens/s; peak memory ours/TRL "
              f"{result['ratio_peak_gib']:.2f}x")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
