"""Thinking-mode evaluation: ThinkFollow (flag following in multi-turn dialogs) and accuracy vs budget.

    rl eval-thinking configs/thinking_tiny.yaml --out runs/eval_thinking \\
        [--model runs/thinking/checkpoints/step_000002/model] [--dialogs 16 --turns 3]
        [--budgets 0,16,32,64 --problems 32 --answer-tokens 32]

writes `results.json` and `budget_accuracy.png` into --out. The model, backend, sampling temperature
and `max_new_tokens` come from the config's `model` and `rollout` sections; the questions and the
scoring reward (its first reward, a success when the score is >= --success) from its first task.

ThinkFollow (Qwen3 report, section 4.3): dialogs of `turns` user turns, each with a random flag
(`/think`, `/no_think` or none), answered by the model turn after turn with its own earlier answers
in the history. Prompts are rendered in thinking mode (no think block pre-filled), so the model
itself must write an empty block after `/no_think` and a thought otherwise. A turn follows the flag
when its response complies with `wants_thinking(dialog so far)` (the last flag wins; no flag at all =
thinking), judged by `rl.thinking.tags.parse_thinking` / `complies`. Score = share of turns that follow.

Budget accuracy: the task's eval questions in thinking mode with each thinking budget (the rollout
worker's two-phase generation: cut at the budget, STOP_THINKING, answer), each budget with
`--answer-tokens` tokens of room after the stop text; plus the same questions without a budget and
in non-thinking mode, for reference lines.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rl.config import ConfigError, TrainConfig
from rl.thinking.tags import complies, parse_thinking, response_prefix, wants_thinking, with_flag
from rl.thinking.chat import render_chat
from rl.types import RolloutRequest

FLAGS = ("/think", "/no_think", None)


@dataclass
class FollowResult:
    score: float
    """Share of all turns whose response follows the flag in force (the headline number)."""
    last_turn: float
    """Share of dialogs whose final turn follows."""
    asked_think: float
    """Score over turns where thinking was asked."""
    asked_no_think: float
    """Score over turns where non-thinking was asked."""
    turns: int
    statuses: dict[str, int]
    no_think_turns: int = 0
    """Turns where non-thinking was asked (the rest asked for thinking)."""


@dataclass
class BudgetPoint:
    budget: int | None
    """Thinking budget in tokens; None: no budget (think as long as max tokens allow)."""
    accuracy: float
    budget_hit_rate: float
    thinking_tokens: float
    n: int
    correct: list[bool] = field(default_factory=list)
    """Per question, in the order asked: whether it was answered right (paired comparisons of models)."""


def make_dialogs(questions: list[str], n: int, turns: int, rng: random.Random) -> list[list[str]]:
    """`n` dialogs of `turns` user messages: a random question each, with a random flag (or none)."""
    return [[q if flag is None else f"{q} {flag}" for q, flag in
             ((rng.choice(questions), rng.choice(FLAGS)) for _ in range(turns))] for _ in range(n)]


def think_follow(worker: Any, dialogs: list[list[str]], max_new_tokens: int) -> FollowResult:
    """Answer every dialog turn by turn (all dialogs batched per turn) and score flag following."""
    tokenizer = worker.tokenizer
    histories: list[list[dict[str, Any]]] = [[] for _ in dialogs]
    follows: list[tuple[bool, bool, bool]] = []   # (asked thinking, followed, is last turn)
    statuses: dict[str, int] = {}
    turns = len(dialogs[0])
    for t in range(turns):
        chats = [h + [{"role": "user", "content": d[t]}] for h, d in zip(histories, dialogs)]
        prompts = [render_chat(tokenizer, chat, thinking=True) for chat in chats]
        requests = [RolloutRequest(uid=f"follow-{i}-{t}", task="think_follow", max_new_tokens=max_new_tokens,
                                   prompt_ids=tokenizer.encode(p, add_special_tokens=False), thinking=True)
                    for i, p in enumerate(prompts)]
        for chat, prompt, rollout, history in zip(chats, prompts, worker.generate(requests), histories):
            response = response_prefix(prompt) + rollout.text
            parse = parse_thinking(response)
            asked = wants_thinking(chat)
            follows.append((asked, complies(parse, asked), t == turns - 1))
            statuses[parse.status] = statuses.get(parse.status, 0) + 1
            history[:] = chat + [{"role": "assistant", "content": response}]
    return FollowResult(score=_share([f for _, f, _ in follows]), last_turn=_share([f for _, f, last in follows if last]),
                        asked_think=_share([f for a, f, _ in follows if a]),
                        asked_no_think=_share([f for a, f, _ in follows if not a]), turns=len(follows), statuses=statuses,
                        no_think_turns=sum(not a for a, _, _ in follows))


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def budget_accuracy(worker: Any, chats: list[list[dict[str, Any]]], rows: list[dict[str, Any]], score: Any,
                    budget: int | None, max_new_tokens: int, thinking: bool = True) -> BudgetPoint:
    """Accuracy of `chats` answered in the given mode with thinking budget `budget` (None: no budget)."""
    tokenizer = worker.tokenizer
    prompts = [render_chat(tokenizer, chat, thinking=thinking) for chat in chats]
    requests = [RolloutRequest(uid=f"budget-{budget}-{i}", task="budget", prompt_ids=tokenizer.encode(p, add_special_tokens=False),
                               max_new_tokens=max_new_tokens, thinking=thinking, thinking_budget=budget)
                for i, p in enumerate(prompts)]
    rollouts = worker.generate(requests)
    correct = [score(response_prefix(p) + r.text, row) for p, r, row in zip(prompts, rollouts, rows)]
    return BudgetPoint(budget, _share(correct), _share([r.budget_hit for r in rollouts]),
                       sum(r.thinking_tokens for r in rollouts) / len(rollouts), len(rollouts), correct)


def success_scorer(spec: Any, success: float) -> Any:
    """`(response, row) -> bool`: the task reward `spec` (a RewardSpec), called as the reward workers
    call it (`rewards.base.call_reward`), and a score >= `success` is a success."""
    from rewards import get_reward
    from rewards.base import call_reward

    fn = get_reward(spec.name, **spec.kwargs)

    def score(response: str, row: dict[str, Any]) -> bool:
        result = call_reward(fn, spec.name, response, row).score
        return result is not None and result >= success

    return score


def plot_budget_accuracy(points: list[BudgetPoint], no_think: BudgetPoint | None, path: Path, title: str) -> None:
    """Accuracy against the budget; the no-budget point sits at the right end, labelled "none"."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    budgeted = sorted((p for p in points if p.budget is not None), key=lambda p: p.budget)
    xs = [p.budget for p in budgeted]
    labels = [str(x) for x in xs]
    free = [p for p in points if p.budget is None]
    if free:
        xs.append((xs[-1] * 1.25 + 8) if xs else 1)
        labels.append("none")
    ys = [p.accuracy for p in budgeted + free]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, marker="o", label="thinking")
    if no_think is not None:
        ax.axhline(no_think.accuracy, linestyle="--", color="gray", label="non-thinking")
    ax.set_xticks(xs, labels)
    ax.set(xlabel="thinking budget (tokens)", ylabel="accuracy", ylim=(-0.02, 1.02), title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate_thinking(cfg: TrainConfig, out: Path, *, model: str | None = None, dialogs: int = 16, turns: int = 3,
                      budgets: list[int] | None = None, problems: int = 32, answer_tokens: int = 32,
                      success: float = 1.0) -> dict[str, Any]:
    """Run both evaluations with an in-process rollout worker; write results.json and the plot."""
    from envs.tasks import load_task
    from rl.actors import rollout_worker_kwargs
    from rl.models import resolve_model_path
    from rl.rollout.worker import RolloutWorker

    budgets = [0, 16, 32, 64] if budgets is None else budgets
    if dialogs < 1 or turns < 1 or problems < 1 or answer_tokens < 1 or any(b < 0 for b in budgets):
        raise ConfigError("--dialogs, --turns, --problems, --answer-tokens must be >= 1 and budgets >= 0")
    task = load_task(cfg.data.tasks[0], cfg.run.seed)
    rows = (task.eval + task.train)[:problems]
    if not task.rewards:
        raise ConfigError(f"task {task.name!r} has no rewards to score answers with")
    score = success_scorer(task.rewards[0], success)
    rc = cfg.rollout
    model_path = resolve_model_path(model or cfg.model.path)
    longest = max([*budgets, 0]) + 64 + answer_tokens  # 64: room for the stop text (~23 tokens)
    room = turns * (rc.max_prompt_tokens + max(rc.max_new_tokens, longest)) + 256
    worker = RolloutWorker(model_path, rc.backend, **rollout_worker_kwargs(cfg, cfg.run.seed, max_model_len=room))
    stop = len(worker.budget.stop_ids)

    questions = [_question(row) for row in rows]
    follow = think_follow(worker, make_dialogs(questions, dialogs, turns, random.Random(cfg.run.seed)),
                          rc.max_new_tokens)
    chats = {mode: [with_flag(task.messages(row, mode), mode) for row in rows] for mode in (True, False)}
    points = [budget_accuracy(worker, chats[True], rows, score, b, b + stop + answer_tokens) for b in budgets]
    points.append(budget_accuracy(worker, chats[True], rows, score, None, max(budgets, default=0) + stop + answer_tokens))
    no_think = budget_accuracy(worker, chats[False], rows, score, None, answer_tokens, thinking=False)

    out.mkdir(parents=True, exist_ok=True)
    results = {"model": model_path, "task": task.name, "reward": task.rewards[0].name, "success": success,
               "think_follow": asdict(follow), "budget_accuracy": [asdict(p) for p in points],
               "no_think_accuracy": asdict(no_think)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_budget_accuracy(points, no_think, out / "budget_accuracy.png",
                         f"{task.name}: accuracy vs thinking budget ({len(rows)} problems)")
    return results


def _question(row: dict[str, Any]) -> str:
    """A row's question without any flag: its `prompt`, or the last user turn of its `messages`."""
    if "prompt" in row:
        return row["prompt"]
    return [m for m in row["messages"] if m["role"] == "user"][-1]["content"]
