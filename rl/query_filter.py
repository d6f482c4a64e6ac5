"""Query selection for reasoning RL (Qwen3 report, section 4.2): keep the queries the current model
solves sometimes but not always, judged by sampling k responses to each.

    rl filter configs/tiny.yaml --out runs/arith_filtered.jsonl --k 8 --band 0.1 0.9 [--model DIR]

The config's task (or `--task NAME` of several) is rolled out exactly as `rl train` rolls it out: the
same RolloutWorkers and prompt rendering (thinking.switch; each row's mode and thinking budget fixed as
the periodic evaluation fixes them, rl/evaluate.py `row_requests`), the rollout temperature, and the same RewardWorkers with the task's rewards. A sample
passes when the task's primary (first) reward reaches its success_threshold, the rule behind
`reward/<task>/accuracy` and eval pass@k. A query is kept when its pass rate over its k samples lies
in the band [low, high]: a query solved always (too easy) or never (too hard) gives GRPO a group whose
rewards agree, so zero advantages and nothing to learn.

Written:
- FILE: the kept rows, JSONL, each row as the task built it plus `pass_rate`, `passes`, `samples`; a
  data file `rl train` reads as a task (`rl filter` prints the task entry to paste into data.tasks);
- FILE.scored.jsonl: every query scored so far (row index, passes, samples), appended as each batch is
  scored, so a killed run resumes where it stopped instead of sampling again;
- FILE.stats.json: queries, kept, too easy, too hard, and the pass-rate histogram.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.tasks import Task
from rl.config import ConfigError, TrainConfig
from rl.config_io import to_dict

log = logging.getLogger("rl")


@dataclass
class FilterPlan:
    """What to sample: the task, how many of its train rows, k samples each, and the band kept."""

    task: Task
    queries: int
    k: int
    low: float
    high: float


def plan_filter(cfg: TrainConfig, task_name: str | None, k: int, band: tuple[float, float],
                max_queries: int | None) -> FilterPlan:
    """Check the arguments against the config; names what to change when they do not fit."""
    from envs.tasks import load_task

    names = [t.name for t in cfg.data.tasks]
    if task_name is None and len(names) > 1:
        raise ConfigError(f"the config has {len(names)} tasks {names}: choose one with --task NAME (one file per task)")
    chosen = task_name or names[0]
    if chosen not in names:
        raise ConfigError(f"--task {chosen!r} is not one of the config's tasks {names}")
    low, high = band
    if not 0.0 <= low <= high <= 1.0:
        raise ConfigError(f"--band {low} {high}: give 0 <= low <= high <= 1 (pass rates)")
    if k < 2:
        raise ConfigError(f"--k {k}: a pass rate needs at least 2 samples per query")
    task = load_task(next(t for t in cfg.data.tasks if t.name == chosen), cfg.run.seed)
    if any(s.is_model_based for s in task.rewards):
        raise ConfigError(f"rl filter scores with rule-based rewards only; task {chosen!r} lists a judge or reward "
                          "model reward: drop it from the task's rewards for filtering")
    queries = len(task.train) if max_queries is None else min(max_queries, len(task.train))
    if queries < 1:
        raise ConfigError(f"task {chosen!r} has no train rows to filter (data.tasks size)")
    return FilterPlan(task, queries, k, low, high)


def read_scored(path: Path) -> dict[int, tuple[int, int]]:
    """Row index -> (passes, samples) of the queries a previous run of the same filter scored."""
    if not path.is_file():
        return {}
    done = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            done[int(item["index"])] = (int(item["passes"]), int(item["samples"]))
        except (ValueError, KeyError, TypeError) as exc:  # a line cut by a kill: score that query again
            log.warning("%s: line %d unreadable (%s); that query is scored again", path, line_no, exc)
    return done


def filter_queries(cfg: TrainConfig, out: Path, *, task: str | None = None, k: int = 8,
                   band: tuple[float, float] = (0.1, 0.9), max_queries: int | None = None,
                   model: str | None = None) -> dict[str, Any]:
    """Sample, score, and write the kept rows (module docstring); returns the stats."""
    import ray
    from transformers import AutoTokenizer

    from rl.actors import create_reward_workers, create_rollout_workers, init_ray
    from rl.models import resolve_model_path
    from rl.round import RoundWorkers

    plan = plan_filter(cfg, task, k, band, max_queries)
    model_path = resolve_model_path(model or cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or model_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    scored_path = out.with_name(out.name + ".scored.jsonl")
    done = read_scored(scored_path)
    todo = [i for i in range(plan.queries) if i not in done]
    log.info("filter: %d queries of %s, %d scored before, k=%d", plan.queries, plan.task.name, len(done), k)
    if todo:
        started_ray = init_ray(cfg)
        try:
            workers = RoundWorkers(create_rollout_workers(cfg, model_path), create_reward_workers(cfg, [plan.task]))
            with open(scored_path, "a+b") as log_file:
                if log_file.tell():  # append mode starts at the end: look at the last byte only
                    log_file.seek(-1, 2)
                    if log_file.read(1) != b"\n":
                        log_file.write(b"\n")  # a line cut by a kill stays alone, not glued to the next record
                score_queries(cfg, plan, todo, tokenizer, workers, log_file, done)
        finally:
            if started_ray:
                ray.shutdown()
    return write_results(out, plan, done)


def score_queries(cfg: TrainConfig, plan: FilterPlan, todo: list[int], tokenizer: Any, workers: Any,
                  log_file: Any, done: dict[int, tuple[int, int]]) -> None:
    """Roll out and score `todo` queries, rollout.prompts_per_step at a time; each batch's pass counts
    are appended to the scored log (and `done`) as soon as they are known."""
    from rl.evaluate import row_requests, solved
    from rl.round import run_round

    per_batch = cfg.rollout.prompts_per_step
    for start in range(0, len(todo), per_batch):
        batch = todo[start:start + per_batch]
        requests, rows, prefixes = [], [], []
        for i in batch:
            group = row_requests(plan.task, plan.task.train[i], i, cfg, tokenizer, plan.k, uid=f"filter-{i}")
            for part, acc in zip(group, (requests, rows, prefixes)):
                acc.extend(part)
        result = run_round(requests, rows, prefixes, workers)
        for j, i in enumerate(batch):
            passes = sum(solved(r, plan.task) for r in result.scored[j * plan.k:(j + 1) * plan.k])
            done[i] = (passes, plan.k)
            log_file.write((json.dumps({"index": i, "passes": passes, "samples": plan.k}) + "\n").encode())
        log_file.flush()
        log.info("filter: %d of %d queries scored", len(done), plan.queries)


def write_results(out: Path, plan: FilterPlan, done: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """FILE (kept rows) and FILE.stats.json from every scored query."""
    kept, verdicts, histogram = [], Counter(), Counter()
    for i in range(plan.queries):
        passes, samples = done[i]
        rate = passes / samples
        histogram[f"{passes}/{samples}"] += 1
        verdict = "too_easy" if rate > plan.high else "too_hard" if rate < plan.low else "kept"
        verdicts[verdict] += 1
        if verdict == "kept":
            kept.append({**plan.task.train[i], "pass_rate": rate, "passes": passes, "samples": samples})
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(row, default=str) + "\n" for row in kept))
    tmp.replace(out)  # complete or absent: never a half-written task file
    stats = {"task": plan.task.name, "queries": plan.queries, "k": plan.k, "band": [plan.low, plan.high],
             "kept": verdicts["kept"], "too_easy": verdicts["too_easy"], "too_hard": verdicts["too_hard"],
             "pass_histogram": dict(sorted(histogram.items(), key=lambda kv: int(kv[0].split("/")[0]))),
             "out": str(out), "task_entry": task_entry(plan.task, out)}
    out.with_name(out.name + ".stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def task_entry(task: Task, out: Path) -> dict[str, Any]:
    """The data.tasks entry that trains on the kept rows with the task's own rewards and prompt."""
    entry: dict[str, Any] = {"name": task.name, "source": str(out),  # the rows say which task they are
                             "rewards": [to_dict(spec) for spec in task.rewards],
                             "success_threshold": task.success_threshold,
                             "thinking_ratio": task.config.thinking_ratio}
    if task.system_prompt:
        entry["system_prompt"] = task.system_prompt
    if task.config.thinking_budget is not None:
        entry["thinking_budget"] = task.config.thinking_budget
    return entry
