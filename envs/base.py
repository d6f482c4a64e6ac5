"""The Env contract: one instance per rollout; a single-turn task is the same contract with one turn.

    from envs import get_env
    env = get_env("guess_number")()        # a built-in name, or "pkg.module:Class" / "path/to/file.py:Class"
    messages = env.reset(row)              # the chat the episode starts from (the driver renders it)
    result = env.step(assistant_text)      # StepResult(messages, done, reward, info, tool_calls, ...)

The rollout worker (rl/rollout/agent_loop.py) drives an env like this:
    prompt = chat template(task system prompt + env.reset(row), tools=env.tools)
    loop: the model writes one assistant turn -> env.step(turn text) -> the StepResult's messages (tool
          or user messages) are rendered by the chat template and appended as env tokens (masked out
          of the loss) -> the model writes the next turn ... until done, max_turns or the token budget.

The contract (verifiers' design: single-turn is multi-turn with max_turns=1):
- `reset(row)` returns the initial messages and sets the episode's state from the dataset row. It must be
  deterministic in `row` and cheap: the driver calls it once per prompt to render the prompt (and once
  per row at start-up to check prompt lengths), and every sample's own env calls it again, so all
  samples of a GRPO group start from the same state. Attributes read after reset (`max_turns`,
  `tools`) may be set per row there.
- `step(assistant_text)` gets one assistant turn as generated (its think block included, no
  end-of-turn token) and returns a `StepResult`. `step` (and `reset`) may be `async def`.
- `max_turns`: the most assistant turns of an episode. The token budget (`rollout.max_new_tokens`,
  model and env tokens of all turns together) belongs to the rollout worker, not to the env.
- `tools`: tool schemas (OpenAI style) that the chat template lists in the system prompt; tool calls
  use the Qwen3/Hermes format `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (see
  envs/agents/tools.py for an env base class that parses and runs them).
- Failures: a reset or step that raises or runs past `step_timeout_s` ends that episode; the rollout
  reports it in `env_info` (stop_reason "env_error"/"env_timeout", the error text) and the run goes
  on. Raise `EnvError` for failures of the environment itself (infrastructure, not the model's
  action). Observations longer than `max_observation_chars` are cut.
"""
from __future__ import annotations

import asyncio
import inspect
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from rl.plugins import resolve

Message = dict[str, Any]
"""A chat message: {"role": "system" | "user" | "assistant" | "tool", "content": str, ...}."""


@dataclass
class StepResult:
    """What one env step returns."""

    messages: list[Message]
    """Observations appended after the assistant turn: `tool` messages (tool results) or `user` messages."""
    done: bool
    """The episode is over (the messages are kept in the transcript but not shown to the model)."""
    reward: float | None = None
    """Reward for this step; the episode's env reward is the sum of the non-None ones (None if none)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Env-specific details (JSON-serialisable), merged into env_info["info"]."""
    tool_calls: int = 0
    """Tool calls the assistant turn attempted (counted into env_info and env/tool_calls)."""
    tool_errors: int = 0
    """Of those, calls that failed: malformed, unknown tool, bad arguments, raised or timed out."""
    success: bool | None = None
    """Whether the episode reached its goal (set when known, usually with done=True)."""


class EnvError(RuntimeError):
    """The environment itself failed (infrastructure, not the model's action): the episode ends as an
    env error instead of showing the model an error observation."""


class Env:
    """The default environment: single-turn. It starts from the row's chat and ends after one turn,
    leaving the scoring to the task's reward functions. Subclass it for multi-turn environments."""

    max_turns: int = 1
    """Most assistant turns in one episode."""
    tools: list[dict[str, Any]] | None = None
    """Tool schemas rendered into the system prompt by the chat template (None: no tools)."""
    step_timeout_s: float = 60.0
    """Wall-clock limit of one reset or step; past it the episode ends as "env_timeout"."""
    max_observation_chars: int = 8000
    """Each observation message's content is cut to this many characters by the rollout worker."""

    def reset(self, row: dict[str, Any]) -> list[Message] | Awaitable[list[Message]]:
        return row_messages(row)

    def step(self, assistant_text: str) -> StepResult | Awaitable[StepResult]:
        return StepResult([], done=True)


def row_messages(row: dict[str, Any]) -> list[Message]:
    """The chat a row holds: its `messages`, or its `prompt` as one user message."""
    if "messages" in row:
        return [dict(m) for m in row["messages"]]
    if "prompt" in row:
        return [{"role": "user", "content": row["prompt"]}]
    raise ValueError(f"row has neither `messages` nor `prompt` (fields: {sorted(row)}); an env cannot start from it")


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was cut (so the model knows it is partial)."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [truncated: {len(text) - limit} more characters]"


# ------------------------------------------------------------------------------------------ lookup
BUILTIN_ENVS: dict[str, str] = {
    "single_turn": "envs.base:Env",
    "python": "envs.agents.python:PythonEnv",
    "search": "envs.agents.search:SearchEnv",
    "guess_number": "envs.agents.game:GuessNumberEnv",
    "store": "envs.agents.store:StoreEnv",
}



def get_env(name: str) -> type[Env]:
    """The Env class for a built-in name or an import string; errors list the choices."""
    cls = resolve(name, BUILTIN_ENVS, "env", attr="Class")
    if not (isinstance(cls, type) and issubclass(cls, Env)):
        raise TypeError(f"env {name!r} resolved to {cls!r}, which is not a subclass of envs.base.Env; "
                        "subclass it and implement reset(row) and step(assistant_text)")
    return cls


def env_prompt(name: str, row: dict[str, Any]) -> tuple[list[Message], list[dict[str, Any]] | None]:
    """The initial messages and tool schemas of env `name` for `row` (what the driver renders)."""
    env = get_env(name)()
    messages = run_sync(env.reset(row))
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise TypeError(f"env {name!r}: reset(row) must return a list of chat messages, got {messages!r:.200}")
    return messages, env.tools


# -------------------------------------------------------------------------- calls with a time limit
def run_sync(value: Any) -> Any:
    """`value`, awaited to completion when it is awaitable (async reset/step/tool)."""
    if not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    return asyncio.run(wait())


@dataclass
class CallOutcome:
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""
    timed_out: bool = False
    seconds: float = 0.0


class _Call:
    """fn() in a daemon thread. Daemon, not a ThreadPoolExecutor: a hung env or tool cannot be killed,
    and an executor's threads are joined at interpreter exit, so one hung call would keep the worker
    process from ever exiting. An abandoned daemon thread only costs its memory."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn, self.outcome, self.start = fn, CallOutcome(), time.perf_counter()
        self.thread = threading.Thread(target=self._run, daemon=True, name="env-call")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome.value = run_sync(self.fn())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, which decides
            self.outcome.error, self.outcome.traceback = exc, traceback.format_exc()

    def wait(self, timeout_s: float) -> CallOutcome:
        self.thread.join(max(0.0, self.start + timeout_s - time.perf_counter()))
        self.outcome.seconds = time.perf_counter() - self.start
        if self.thread.is_alive():
            return CallOutcome(timed_out=True, seconds=self.outcome.seconds)
        return self.outcome


def call_all(fns: list[Callable[[], Any]], timeouts_s: list[float]) -> list[CallOutcome]:
    """Run every fn concurrently, each in its own thread with its own time limit; never raises."""
    calls = [_Call(fn) for fn in fns]
    return [call.wait(timeout) for call, timeout in zip(calls, timeouts_s)]


def call_with_timeout(fn: Callable[[], Any], timeout_s: float) -> CallOutcome:
    return call_all([fn], [timeout_s])[0]
