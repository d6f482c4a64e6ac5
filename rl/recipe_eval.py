"""The recipe's evaluation suite: one set of numbers per model, the same after every stage.

    metrics, per_prompt = evaluate_suite(eval_cfg, suite, model="runs/recipe/general_rl/checkpoints/step_000020",
                                         out=DIR)

`eval_cfg` is a GRPO config (the recipe's `eval.config`): its tasks' eval splits, rollout settings and
thinking switch. On one set of rollout and reward workers (the actors `rl train` uses) it measures:
- per task, `<task>/accuracy`: pass@1 over `suite.prompts` eval prompts x `suite.samples` samples, a
  sample solved when the task's primary reward reaches its success threshold (rl/evaluate.py), each
  prompt in the mode its row or a seeded draw fixes. Math (the arithmetic task and a harder math
  split), instruction following (ifeval) and the agent tasks are tasks of the eval config;
- ToolUse, over the agent tasks' episodes: `tool/success` (the env's success, the agent tasks'
  accuracy pooled), `tool/called` (share of episodes with at least one tool call), `tool/well_formed`
  (share of attempted calls that parsed and ran: 1 - tool errors / tool calls; NaN without calls);
- ThinkFollow (rl/thinking/evals.py `think_follow`): multi-turn dialogs with random /think, /no_think
  or no flags, scored on whether each turn's think block follows the flag in force: `think_follow/score`,
  `think_follow/no_think` (turns that asked for /no_think), `think_follow/think`;
- accuracy vs thinking budget on the first task's eval questions (one sample each): `budget/<b>` for
  each budget and `budget/none` (thinking mode, no budget: what reasoning RL targets), and
  `no_think/accuracy`.
Noise: each accuracy gets `<metric>/ci95`, the half-width of a 95% bootstrap interval over prompts
(1000 resamples of the prompt set, seeded), and each ThinkFollow share the half-width of its 95% Wilson
interval over its turns. `per_prompt` keeps each accuracy's per-prompt scores (the same prompts after
every stage, in the same order), so the recipe's table can judge a change between two models on paired
prompts (rl/recipe_table.py).
Written to `out`: eval.json (the metrics and per-prompt scores) and samples.jsonl (every evaluated
completion and its reward).
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from rl.config import TrainConfig
from rl.recipe_config import EvalSuite


def bootstrap_interval(values: list[float], seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    """(low, high) of the 95% bootstrap interval of the mean of `values` (per-prompt scores, or per-prompt
    differences between two models); NaN for fewer than two values."""
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def bootstrap_ci(values: list[float]) -> float:
    """Half-width of the 95% bootstrap interval of the mean of `values`."""
    low, high = bootstrap_interval(values)
    return (high - low) / 2


def wilson_ci(share: float, n: int) -> float:
    """Half-width of the 95% Wilson interval of a share over n independent turns (sound at 0 and 1, where the
    normal approximation says +-0)."""
    if n < 1 or math.isnan(share):
        return float("nan")
    z = 1.96
    return z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)


def with_ci(name: str, per_prompt: list[float]) -> dict[str, float]:
    mean = sum(per_prompt) / len(per_prompt) if per_prompt else float("nan")
    return {name: mean, f"{name}/ci95": bootstrap_ci(per_prompt)}


def task_metrics(tasks: list[Any], groups: list[tuple[Any, int]], scored: list[Any], rollouts: list[Any],
                 k: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Accuracy per task, and the ToolUse numbers over the agent tasks' episodes; with the per-prompt
    scores of each accuracy."""
    from rl.evaluate import solved

    per_task: dict[str, list[float]] = {}
    tool = {"prompts": [], "episodes": 0, "called": 0, "calls": 0, "errors": 0}
    for g, (task, _) in enumerate(groups):
        results, episodes = scored[g * k:(g + 1) * k], rollouts[g * k:(g + 1) * k]
        rate = sum(solved(r, task) for r in results) / k
        per_task.setdefault(task.name, []).append(rate)
        if task.env:
            tool["prompts"].append(rate)
            for e in episodes:
                calls = int(e.env_info.get("tool_calls", 0))
                tool["episodes"] += 1
                tool["called"] += calls > 0
                tool["calls"] += calls
                tool["errors"] += int(e.env_info.get("tool_errors", 0))
    per_prompt = {f"{name}/accuracy": rates for name, rates in per_task.items()}
    if tool["episodes"]:
        per_prompt["tool/success"] = tool["prompts"]
    metrics: dict[str, float] = {}
    for name, rates in per_prompt.items():
        metrics.update(with_ci(name, rates))
    if tool["episodes"]:
        metrics["tool/called"] = tool["called"] / tool["episodes"]
        metrics["tool/well_formed"] = 1 - tool["errors"] / tool["calls"] if tool["calls"] else float("nan")
    return metrics, per_prompt


class ActorGenerator:
    """What rl/thinking/evals.py needs of a rollout worker (`generate`, `tokenizer`), on Ray actors."""

    def __init__(self, workers: Any, tokenizer: Any):
        self.workers, self.tokenizer = workers, tokenizer

    def generate(self, requests: list[Any]) -> list[Any]:
        from rl.round import generate

        return generate(self.workers, requests)


def thinking_metrics(cfg: TrainConfig, task: Any, suite: EvalSuite, generator: ActorGenerator
                     ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """ThinkFollow and accuracy vs budget (rl/thinking/evals.py) on `task`'s eval questions; with the
    budget points' per-question scores."""
    from rl.thinking.evals import _question, budget_accuracy, make_dialogs, success_scorer, think_follow
    from rl.thinking.tags import STOP_THINKING, with_flag

    rows = task.eval[:suite.prompts]
    follow = think_follow(generator, make_dialogs([_question(r) for r in rows], suite.dialogs, suite.turns,
                                                  random.Random(cfg.run.seed)), cfg.rollout.max_new_tokens)
    think_turns = follow.turns - follow.no_think_turns
    metrics = {"think_follow/score": follow.score, "think_follow/no_think": follow.asked_no_think,
               "think_follow/think": follow.asked_think,
               "think_follow/score/ci95": wilson_ci(follow.score, follow.turns),
               "think_follow/no_think/ci95": wilson_ci(follow.asked_no_think, follow.no_think_turns),
               "think_follow/think/ci95": wilson_ci(follow.asked_think, think_turns)}
    score = success_scorer(task.rewards[0], task.success_threshold)
    stop = len(generator.tokenizer.encode(STOP_THINKING, add_special_tokens=False))
    chats = {mode: [with_flag(task.messages(r, mode), mode) for r in rows] for mode in (True, False)}
    per_question: dict[str, list[float]] = {}
    for budget in [*suite.budgets, None]:
        room = (max(suite.budgets, default=0) if budget is None else budget) + stop + suite.answer_tokens
        point = budget_accuracy(generator, chats[True], rows, score, budget, room)
        per_question[f"budget/{'none' if budget is None else budget}"] = [float(c) for c in point.correct]
    point = budget_accuracy(generator, chats[False], rows, score, None, suite.answer_tokens, thinking=False)
    per_question["no_think/accuracy"] = [float(c) for c in point.correct]
    for name, scores in per_question.items():
        metrics.update(with_ci(name, scores))
    return metrics, per_question


def write_samples(path: Path, result: Any) -> None:
    """Every evaluated completion with its task and reward, to read what a number stands for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for rollout, completion, score in zip(result.rollouts, result.completions, result.scored):
            f.write(json.dumps({"task": rollout.request.task, "completion": completion, "reward": score.reward,
                                "components": score.components}, default=str) + "\n")


def evaluate_suite(cfg: TrainConfig, suite: EvalSuite, model: str, out: Path
                   ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every number of the module docstring for `model`, and the accuracies' per-prompt scores; both also
    written to out/eval.json."""
    import ray
    from transformers import AutoTokenizer

    from envs.tasks import load_task
    from rl.actors import create_reward_workers, create_rollout_workers, init_ray
    from rl.evaluate import eval_requests
    from rl.models import resolve_model_path
    from rl.round import RoundWorkers, run_round

    model_path = resolve_model_path(model)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or model_path)
    tasks = [load_task(t, cfg.run.seed) for t in cfg.data.tasks]
    cfg.run.eval_prompts, cfg.run.eval_samples = suite.prompts, suite.samples
    started_ray = init_ray(cfg)
    try:
        workers = RoundWorkers(create_rollout_workers(cfg, model_path), create_reward_workers(cfg, tasks))
        requests, rows, prefixes, groups = eval_requests(0, tasks, cfg, tokenizer)
        result = run_round(requests, rows, prefixes, workers)
        metrics, per_prompt = task_metrics(tasks, groups, result.scored, result.rollouts, suite.samples)
        write_samples(out / "samples.jsonl", result)
        first = next(t for t in tasks if t.env is None)
        thinking, per_question = thinking_metrics(cfg, first, suite, ActorGenerator(workers, tokenizer))
        metrics.update(thinking)
        per_prompt.update(per_question)
    finally:
        if started_ray:
            ray.shutdown()
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps({"model": model_path, "metrics": metrics, "per_prompt": per_prompt},
                                              indent=2) + "\n")
    return metrics, per_prompt
