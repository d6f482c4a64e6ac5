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
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from rewards.base import RewardFn

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

ACCEPTED_FORMS = "a built-in name, 'package.module:{attr}', 'path/to/file.py:{attr}'"


def load_object(spec: str, kind: str = "object") -> Any:
    """Import `package.module:attr` or `path/to/file.py:attr`; errors say which form failed and why."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"cannot load {kind} {spec!r}: expected 'package.module:attr' or 'path/to/file.py:attr'")
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"cannot load {kind} {spec!r}: file {path} does not exist")
        unique = f"_user_{path.stem}_{abs(hash(str(path)))}"
        module = sys.modules.get(unique)
        if module is None:
            file_spec = importlib.util.spec_from_file_location(unique, path)
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[unique] = module
            file_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"cannot load {kind} {spec!r}: module {module_name!r} not importable ({exc}); "
                             "is its package installed or on PYTHONPATH?") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"cannot load {kind} {spec!r}: module {module_name!r} has no attribute {attr!r}") from None


def resolve(name: str, table: dict[str, str], kind: str, attr: str = "function") -> Any:
    """The one discovery mechanism for rewards, envs and tasks: a built-in name in `table`, or an
    import string. An unknown name lists the built-ins and the accepted forms."""
    if name in table:
        return load_object(table[name], kind)
    if ":" in name:
        return load_object(name, kind)
    raise ValueError(f"unknown {kind} {name!r}. Built-ins: {sorted(table)}; accepted forms: "
                     + ACCEPTED_FORMS.format(attr=attr))


def get_reward(name: str, **kwargs: Any) -> RewardFn:
    """Return the reward function for a built-in name or an import string, with `kwargs` bound."""
    fn = resolve(name, BUILTIN_REWARDS, "reward")
    if not callable(fn):
        raise TypeError(f"reward {name!r} resolved to {type(fn).__name__}, which is not callable")
    return functools.partial(fn, **kwargs) if kwargs else fn
