"""Built-in rewards (one explicit table) and loading of user rewards by import string.

    from rewards import get_reward
    get_reward("math")("The answer is \\boxed{3/4}", answer="0.75")      # -> 1.0
    get_reward("my_pkg.rewards:score")                                  # a module attribute
    get_reward("path/to/file.py:score", weight_words=2)                 # kwargs bound (functools.partial)

The table maps a name to an import string, so a built-in's heavy dependencies (sandbox, judge)
are only imported when that reward is used.
"""
from __future__ import annotations

import functools
from typing import Any

from rewards.base import RewardFn
from rl.plugins import resolve

BUILTIN_REWARDS: dict[str, str] = {
    "math": "rewards.math:math_reward",
    "code": "rewards.code:code_reward",
    "ifeval": "rewards.ifeval:ifeval_reward",
    "function_call": "rewards.function_call:function_call_reward",
    "format": "rewards.format:format_reward",
    "think_mode": "rewards.format:think_mode_reward",
    "reasoning_gym": "rewards.puzzles:reasoning_gym_reward",
    "judge": "rewards.judge:judge_reward",
    "reward_model": "rewards.reward_model:reward_model_reward",
    "env": "rewards.env:env_reward",
    "length": "rewards.length:length_reward",
    "overlong": "rewards.length:overlong_reward",
    "json_schema": "rewards.structured:json_schema_reward",
    "rag": "rewards.rag:rag_reward",
    "premise": "rewards.premise:premise_reward",
    "language": "rewards.language:language_reward",
    "translation": "rewards.language:translation_reward",
    "choice": "rewards.choice:choice_reward",
}

def get_reward(name: str, **kwargs: Any) -> RewardFn:
    """Return the reward function for a built-in name or an import string, with `kwargs` bound."""
    fn = resolve(name, BUILTIN_REWARDS, "reward")
    if not callable(fn):
        raise TypeError(f"reward {name!r} resolved to {type(fn).__name__}, which is not callable")
    return functools.partial(fn, **kwargs) if kwargs else fn
