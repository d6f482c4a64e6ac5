"""Step metrics and where they go: metrics.jsonl (one JSON object per step), wandb, a progress bar.

Names are namespaced and stable: `reward/mean`, `reward/<task>/mean`, `reward/<task>/<component>`,
`rollout/response_len`, `rollout/truncation_rate`, `rollout/zero_var_groups`, `time/generate`,
`time/reward`, `time/train`, `time/sync`, `perf/gen_tokens_per_s`, `perf/train_tokens`, `actor/*`, `pg/*`, `loss/*`;
agent envs: `env/turns`, `env/tool_calls`, `env/tool_errors`, `env/success`, `env/<task>/*`, `time/env`;
per task also `reward/<task>/accuracy`, `rollout/<task>/thinking_ratio`, `thinking/<task>/thought_rate`,
and from periodic evaluation (rl/evaluate.py) `eval/<task>/pass@1`, `eval/<task>/pass@<k>`.
`RunLogger.warn_if_idle` shouts when training is silently doing nothing.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from rewards.env import UNFINISHED
from rewards.spec import ScoreResult
from rl.thinking.tags import complies, parse_thinking
from rl.types import Rollout

log = logging.getLogger("rl")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def rollout_metrics(rollouts: list[Rollout], results: list[ScoreResult], completions: list[str],
                    rewards: torch.Tensor, group_size: int,
                    success: dict[str, tuple[str, float]] | None = None) -> dict[str, float]:
    """Reward, length, truncation and thinking-mode metrics, overall and per task and per mode.

    success: task -> (primary reward component, threshold); each task then gets `reward/<task>/accuracy`,
    the fraction of its samples whose primary component reached the threshold (see `task_metrics`)."""
    m: dict[str, float] = {
        "reward/mean": rewards.mean().item(),
        "reward/std": rewards.std().item() if len(rewards) > 1 else 0.0,
        "rollout/response_len": _mean([len(r.response_ids) for r in rollouts]),
        "rollout/truncation_rate": _mean([float(r.truncated) for r in rollouts]),
        "rollout/zero_var_groups": (rewards.view(-1, group_size).std(dim=1) < 1e-8).float().mean().item(),
        "rollout/budget_hit_rate": _mean([float(r.budget_hit) for r in rollouts]),
    }
    by_task: dict[str, list[int]] = defaultdict(list)
    by_mode: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rollouts):
        by_task[r.request.task].append(i)
        by_mode["think" if r.request.thinking else "no_think"].append(i)
    for name, idx in [*by_task.items(), *(("mode_" + k, v) for k, v in by_mode.items())]:
        prefix = name
        m[f"reward/{prefix}/mean"] = _mean([rewards[i].item() for i in idx])
        m[f"rollout/{prefix}/response_len"] = _mean([len(rollouts[i].response_ids) for i in idx])
        m[f"rollout/{prefix}/truncation_rate"] = _mean([float(rollouts[i].truncated) for i in idx])
        m[f"rollout/{prefix}/count"] = float(len(idx))
    for task, idx in by_task.items():
        components: dict[str, list[float]] = defaultdict(list)
        for i in idx:
            for key, value in results[i].components.items():
                if value is not None:
                    components[key].append(value)
        for key, values in components.items():
            m[f"reward/{task}/{key}"] = _mean(values)
    m.update(task_metrics(rollouts, results, completions, by_task, success or {}))
    # thinking: mode compliance and thinking length per mode
    for mode, idx in by_mode.items():
        parses = [parse_thinking(completions[i]) for i in idx]
        m[f"thinking/{mode}/compliance"] = _mean([float(complies(p, mode == "think")) for p, i in zip(parses, idx)])
        m[f"thinking/{mode}/thinking_chars"] = _mean([float(len(p.thinking)) for p in parses])
        m[f"thinking/{mode}/thinking_tokens"] = _mean([float(rollouts[i].thinking_tokens) for i in idx])
        m[f"thinking/{mode}/budget_hit_rate"] = _mean([float(rollouts[i].budget_hit) for i in idx])
    m.update(env_metrics(rollouts))
    return m


def task_metrics(rollouts: list[Rollout], results: list[ScoreResult], completions: list[str],
                 by_task: dict[str, list[int]], success: dict[str, tuple[str, float]]) -> dict[str, float]:
    """Per task: `reward/<task>/accuracy` (primary component >= threshold; a None component counts as
    unsolved), `rollout/<task>/thinking_ratio` (share of samples asked to think) and
    `thinking/<task>/thought_rate` (share of responses holding a non-empty thought)."""
    m: dict[str, float] = {}
    for task, idx in by_task.items():
        if task in success:
            key, threshold = success[task]
            m[f"reward/{task}/accuracy"] = _mean([float((results[i].components.get(key) or -math.inf) >= threshold)
                                                  for i in idx])
        m[f"rollout/{task}/thinking_ratio"] = _mean([float(rollouts[i].request.thinking) for i in idx])
        m[f"thinking/{task}/thought_rate"] = _mean([float(bool(parse_thinking(completions[i]).thinking)) for i in idx])
    return m


def env_metrics(rollouts: list[Rollout]) -> dict[str, float]:
    """Agent episodes (requests with an env), means per episode, overall and per task: `env/turns`,
    `env/tool_calls`, `env/tool_errors`, `env/success` (over episodes whose env reported it, and unfinished
    ones as failures),
    `env/error_rate` (env raised or timed out), `env/max_turns_rate`; `time/env` and `time/env_generation`
    (seconds an episode spent in env calls and in generation waves). Empty without agent episodes."""
    agent = [r for r in rollouts if r.request.env is not None]
    by_task: dict[str, list[Rollout]] = defaultdict(list)
    for r in agent:
        by_task[r.request.task].append(r)
    m: dict[str, float] = {}
    for prefix, group in ([("env", agent)] if agent else []) + [(f"env/{t}", g) for t, g in by_task.items()]:
        infos = [r.env_info for r in group]
        for key in ("turns", "tool_calls", "tool_errors"):
            m[f"{prefix}/{key}"] = _mean([float(i[key]) for i in infos])
        # An episode cut by max_turns or the token budget did not reach its goal (as the env reward says).
        outcomes = [float(bool(i["success"])) for i in infos
                    if i["success"] is not None or i["stop_reason"] in UNFINISHED]
        if outcomes:  # absent when no episode reported success: 0.0 would claim failures that did not happen
            m[f"{prefix}/success"] = _mean(outcomes)
        m[f"{prefix}/error_rate"] = _mean([float(i["stop_reason"] in ("env_error", "env_timeout")) for i in infos])
        m[f"{prefix}/max_turns_rate"] = _mean([float(i["stop_reason"] == "max_turns") for i in infos])
    if agent:
        m["time/env"] = _mean([r.env_info["env_s"] for r in agent])
        m["time/env_generation"] = _mean([r.env_info["generate_s"] for r in agent])
    return m


class RunLogger:
    """Appends to <run>/metrics.jsonl, logs to wandb, and drives a tqdm bar."""

    def __init__(self, out_dir: Path, config: dict[str, Any], *, mode: str, project: str, run_name: str,
                 total_steps: int, start_step: int, progress_bar: bool, run_id: str | None = None,
                 desc: str = "grpo", shown: tuple[str, str] = ("reward", "reward/mean")):
        self.path = out_dir / "metrics.jsonl"
        self.wandb = None
        if mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb = wandb.init(project=project, name=run_name, config=config, dir=str(out_dir), mode=mode,
                                    id=run_id, resume="allow")
        self.bar, self.shown = None, shown  # the bar's (label, metric) beside the step time
        if progress_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, unit="step", dynamic_ncols=True)

    @property
    def run_id(self) -> str | None:
        return self.wandb.id if self.wandb is not None else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        if self.bar is not None:
            self.bar.update(1)
            label, key = self.shown
            self.bar.set_postfix({label: f"{metrics.get(key, 0):.3f}", "step_s": f"{metrics.get('time/step', 0):.1f}"})

    @staticmethod
    def warn_if_idle(step: int, metrics: dict[str, float]) -> None:
        """Training that learns nothing should be loud, not a flat curve found a day later."""
        if metrics.get("rollout/zero_var_groups", 0.0) >= 1.0 and "distill/reverse_kl" not in metrics:
            log.warning("step %d: EVERY group has zero reward variance, so all advantages are 0 and this step "
                        "learns nothing. Tasks too hard/easy for the model, or a reward that always returns "
                        "the same value? Check reward/<task>/* in metrics.jsonl and the rollouts/ files.", step)
        if metrics.get("rollout/truncation_rate", 0.0) > 0.5:
            log.warning("step %d: %.0f%% of responses hit rollout.max_new_tokens and were truncated; raise "
                        "max_new_tokens or set a thinking budget.", step, 100 * metrics["rollout/truncation_rate"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.wandb is not None:
            self.wandb.finish()


def write_rollouts(path: Path, rollouts: list[Rollout], results: list[ScoreResult], completions: list[str],
                   advantages: torch.Tensor) -> None:
    """One JSON line per sample; written atomically so a kill never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for r, res, completion, adv in zip(rollouts, results, completions, advantages.tolist()):
            f.write(json.dumps({
                "uid": r.request.uid, "task": r.request.task, "thinking": r.request.thinking,
                "completion": completion, "reward": res.reward, "components": res.components,
                "errors": res.errors, "advantage": adv, "finish_reason": r.finish_reason,
                "response_tokens": len(r.response_ids), "budget_hit": r.budget_hit,
                "weights_version": r.weights_version, "env_info": r.env_info,
            }, default=str) + "\n")
    tmp.replace(path)
