"""Data for the fusion SFT stage (`rl sft`): rejection sampling with the pipeline's actors, or arithmetic.

    rl build-fusion-data configs/thinking_tiny.yaml --out runs/fusion.jsonl --prompts 64 --threshold 1.0
    rl build-fusion-data --arithmetic 256 --out configs/data/fusion_arithmetic.jsonl

Rejection sampling (Qwen3 report, section 4.3: thinking data "generated via rejection sampling" with
the model itself): the config's tasks are rolled out exactly as `rl train` rolls them out (same
RolloutWorkers, thinking budget, TaskMix with each task's `thinking_ratio`) and scored by the same
RewardWorkers with the task's rewards. A sample is kept when
- thinking mode: its think block is well formed with a real thought (status "ok"; a thought cut by the
  budget is not a finished thought, and a malformed block would teach malformed blocks) AND its reward
  is >= `threshold`;
- non-thinking mode: it has the empty block and a non-empty answer (status "empty"), and its reward is
  >= `no_think_threshold` when one is given;
- and fewer than `per_prompt` samples of the same prompt were kept already.
Each kept sample becomes a chat row: the task's messages with the mode's flag on the last user turn
(`/think` or `/no_think`, unless the dialog already asks for that mode) and the assistant
response `<think>\\n{thought}\\n</think>\\n\\n{answer}` (empty block for non-thinking).
"""
from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl.config import ConfigError, TrainConfig
from rl.thinking.tags import assistant_response, parse_thinking, with_flag

log = logging.getLogger("rl")

@dataclass
class FusionStats:
    """What rejection sampling saw and kept, per mode ("think" / "no_think")."""

    sampled: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    """"<mode>/<reason>" -> count; reasons: malformed (with the parse status), reward, per_prompt."""

    def as_dict(self) -> dict[str, Any]:
        return {"sampled": dict(self.sampled), "kept": dict(self.kept), "rejected": dict(self.rejected)}


def select(completion: str, thinking: bool, reward: float | None, threshold: float,
           no_think_threshold: float | None) -> tuple[str | None, str]:
    """(assistant response to keep or None, reason: "kept" or why not) for one sample."""
    parse = parse_thinking(completion)
    wanted = "ok" if thinking else "empty"
    if parse.status != wanted or not parse.answer:
        return None, f"malformed_{parse.status}" if parse.status != wanted else "malformed_no_answer"
    bar = threshold if thinking else no_think_threshold
    if bar is not None and (reward is None or reward < bar):
        return None, "reward"
    return assistant_response(parse.thinking if thinking else None, parse.answer), "kept"


def build_fusion_data(cfg: TrainConfig, out: Path, *, prompts: int, threshold: float = 1.0,
                      no_think_threshold: float | None = None, per_prompt: int = 1) -> FusionStats:
    """Roll out `prompts` prompts (rounded up to whole steps of rollout.prompts_per_step) of the
    config's tasks, score them, and write the kept samples to `out` as chat rows."""
    import ray
    from transformers import AutoTokenizer

    from envs.tasks import load_task
    from rl.actors import create_reward_workers, create_rollout_workers, init_ray
    from rl.data import TaskMix
    from rl.round import RoundWorkers, build_requests, run_round
    from rl.models import resolve_model_path

    if prompts < 1 or per_prompt < 1:
        raise ConfigError(f"--prompts and --per-prompt must be >= 1, got {prompts} and {per_prompt}")
    model_path = resolve_model_path(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or model_path)
    tasks = {t.name: load_task(t, cfg.run.seed) for t in cfg.data.tasks}
    model_based = sorted({f"{t.name}: {s.name}" for t in tasks.values() for s in t.rewards if s.is_model_based})
    if model_based:
        raise ConfigError(f"rl build-fusion-data scores with rule-based rewards only; these need a judge or reward "
                          f"model actor: {model_based}. Drop them from the tasks' rewards for this step.")
    mix = TaskMix(list(tasks.values()), cfg.run.seed)
    stats = FusionStats()
    out.parent.mkdir(parents=True, exist_ok=True)
    started_ray = init_ray(cfg)
    try:
        workers = RoundWorkers(create_rollout_workers(cfg, model_path), create_reward_workers(cfg, list(tasks.values())))
        tmp = out.with_suffix(out.suffix + ".tmp")  # renamed when complete: a killed run leaves no half file
        with open(tmp, "w") as f:
            for step in range(math.ceil(prompts / cfg.rollout.prompts_per_step)):
                requests, rows, prefixes = build_requests(step, cfg, mix, tokenizer)
                batch = run_round(requests, rows, prefixes, workers)  # scored exactly as `rl train` scores
                for kept in keep_samples(requests, rows, batch.completions, batch.scored, tasks, stats,
                                         threshold=threshold, no_think_threshold=no_think_threshold,
                                         per_prompt=per_prompt):
                    f.write(json.dumps(kept) + "\n")
                log.info("fusion data: step %d, kept %s of %s", step + 1, dict(stats.kept), dict(stats.sampled))
        tmp.replace(out)
    finally:
        if started_ray:
            ray.shutdown()
    return stats


def keep_samples(requests: list, rows: list[dict[str, Any]], completions: list[str], scored: list, tasks: dict,
                 stats: FusionStats, *, threshold: float, no_think_threshold: float | None, per_prompt: int
                 ) -> list[dict[str, Any]]:
    """The chat rows to write for one step's samples (see `select`), counting everything in `stats`. A
    prompt's samples are tried best-scored first, so `per_prompt` keeps its best well-formed ones."""
    kept_per_uid: Counter = Counter()
    kept = []
    order = sorted(range(len(requests)), key=lambda i: -(scored[i].reward or 0.0))  # stable: ties keep order
    for req, row, completion, result in ((requests[i], rows[i], completions[i], scored[i]) for i in order):
        mode = "think" if req.thinking else "no_think"
        stats.sampled[mode] += 1
        response, reason = select(completion, req.thinking, None if result.all_none else result.reward,
                                  threshold, no_think_threshold)
        if response is not None and kept_per_uid[req.uid] >= per_prompt:
            response, reason = None, "per_prompt"
        if response is None:
            stats.rejected[f"{mode}/{reason}"] += 1
            continue
        kept_per_uid[req.uid] += 1
        stats.kept[mode] += 1
        messages = with_flag(tasks[req.task].messages(row, req.thinking), req.thinking)
        kept.append({"messages": messages + [{"role": "assistant", "content": response}], "task": req.task,
                     "thinking": req.thinking, "reward": result.reward})
    return kept


# ------------------------------------------------------------------------------- procedural arithmetic
def arithmetic_fusion_rows(size: int, seed: int = 0, think_ratio: float = 0.5, multi_turn: float = 0.25
                           ) -> list[dict[str, Any]]:
    """Mixed-mode chats about small sums, with the reference thought written out step by step.

    Modes are drawn with `think_ratio`; flags vary the way users write them (end of the user turn, a
    system message, or none at all for thinking, the default); a `multi_turn` share of the rows has an
    earlier exchange in another mode, so the last flag has to win.
    """
    rng = random.Random(f"fusion-arithmetic-{seed}")
    rows = []
    for _ in range(size):
        thinking = rng.random() < think_ratio
        messages: list[dict[str, Any]] = []
        if rng.random() < multi_turn:
            first = not thinking if rng.random() < 0.7 else thinking
            question, thought, answer = _problem(rng)
            messages += [{"role": "user", "content": f"{question} {'/think' if first else '/no_think'}"},
                         {"role": "assistant", "content": assistant_response(thought if first else None, answer)}]
        question, thought, answer = _problem(rng)
        style = rng.random()
        if style < 0.15 and not messages:
            messages.append({"role": "system", "content": f"You are a careful calculator. {_flag(thinking)}"})
            messages.append({"role": "user", "content": question})
        elif style < 0.3 and thinking and not messages:
            messages.append({"role": "user", "content": question})  # no flag: thinking is the default
        else:
            messages.append({"role": "user", "content": f"{question} {_flag(thinking)}"})
        messages.append({"role": "assistant", "content": assistant_response(thought if thinking else None, answer)})
        rows.append({"messages": messages, "thinking": thinking, "answer": answer})
    return rows


def _flag(thinking: bool) -> str:
    return "/think" if thinking else "/no_think"


def _problem(rng: random.Random) -> tuple[str, str, str]:
    """(question, step-by-step thought, answer) for a sum of 2-3 one- or two-digit terms."""
    terms = [rng.randint(0, 20) for _ in range(rng.choice((2, 3)))]
    ops = [rng.choice("+-") for _ in terms[1:]]
    expr = str(terms[0]) + "".join(f" {op} {n}" for op, n in zip(ops, terms[1:]))
    value, steps = terms[0], [f"Start with {terms[0]}."]
    for op, n in zip(ops, terms[1:]):
        new = value + n if op == "+" else value - n
        steps.append(f"{value} {op} {n} = {new}.")
        value = new
    steps.append(f"So {expr} = {value}.")
    return f"What is {expr}? Answer with just the number.", "\n".join(steps), str(value)


def write_rows(rows: list[dict[str, Any]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
