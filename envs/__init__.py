"""Task environments: task categories (`envs.tasks`), built-ins (`envs.builtin`), agents (`envs.agents`).

`get_env(name)` returns an `Env` class (the contract is in envs/base.py) for a built-in name or an
import string; docs/agents.md shows how to write your own.
"""
from envs.base import Env, EnvError, StepResult, get_env

__all__ = ["Env", "EnvError", "StepResult", "get_env"]
