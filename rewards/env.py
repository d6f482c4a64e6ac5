"""The env reward: what an agent environment scored the episode, so it combines with other rewards.

    rewards: [{name: env, weight: 1.0}, {name: format, weight: 0.1}]

The rollout worker puts the episode's `env_info` into the row (rl/rollout/agent_loop.py lists its keys).
Score: env_info["reward"], the sum of the rewards the env's steps returned. When the env gave none:
0.0 if the episode was cut by max_turns or the token budget (the model did not finish: a failure, like
malformed output), None otherwise (the env scores nothing, or it failed: not the model's doing, and a
sample whose components are all None is counted as such by the reward runner).
"""
from __future__ import annotations

from typing import Any

from rewards.base import RewardResult, reward_spec

UNFINISHED = ("max_turns", "token_budget")


@reward_spec()  # env_info is added after the rollout, so it cannot be a load-time required field
def env_reward(completion: str, *, env_info: dict[str, Any] | None = None, **row: Any) -> RewardResult:
    if env_info is None:
        raise ValueError(f"reward 'env' needs row field 'env_info', which only agent tasks have (task "
                         f"{row.get('task')!r} has no env); set the task's `env`, or drop the `env` reward")
    score = env_info["reward"]
    if score is None and env_info["stop_reason"] in UNFINISHED:
        score = 0.0
    details = {k: env_info[k] for k in ("success", "turns", "tool_calls", "tool_errors", "stop_reason", "error")}
    return RewardResult(score, details)
