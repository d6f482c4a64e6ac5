"""ToolEnv: an Env whose actions are Qwen3/Hermes tool calls, plus helpers to declare tools.

    class MyEnv(ToolEnv):
        def reset(self, row):
            self.tools = [tool_schema("add", "Add two integers.", {"a": "integer", "b": "integer"})]
            return row_messages(row)
        def functions(self):
            return {"add": lambda a, b: a + b}
        def finish(self, answer):
            return StepResult([], done=True, reward=float(answer.strip() == "5"))

One step: the turn's answer part (its think block dropped: a call written while thinking is not a
call) is searched for `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks
(`rewards.function_call.parse_tool_calls`). No call: the turn is the final answer and `finish(answer)`
ends the episode. Calls: each runs in a thread with `tool_timeout_s`, its result (JSON unless a string)
becomes one `tool` message, cut to `max_output_chars`. Failures become error observations the model can
react to, and count as tool errors: a malformed block (the whole turn is rejected), an unknown tool,
bad arguments, a tool that raises (`ToolError` for expected failures; anything else also logs its first
traceback, since it may be a bug in the tool), a timeout, or more than `max_calls_per_turn` calls.
`EnvError` is not caught: it ends the episode as an env failure.
"""
from __future__ import annotations

import inspect
import json
import logging
from typing import Any, Callable

from envs.base import Env, EnvError, Message, StepResult, call_with_timeout, truncate
from rewards.function_call import MalformedToolCall, ToolCall, parse_tool_calls
from rl.thinking.tags import split_thinking

log = logging.getLogger("envs")

CALL_FORMAT = '<tool_call>{"name": "<tool name>", "arguments": {<arguments as JSON>}}</tool_call>'


class ToolError(Exception):
    """An expected tool failure (unknown id, invalid value): its message is shown to the model."""


def tool_schema(name: str, description: str, parameters: dict[str, str | dict[str, Any]],
                required: list[str] | None = None) -> dict[str, Any]:
    """An OpenAI-style function schema; `parameters` maps argument -> JSON type name or a full schema.
    All arguments are required unless `required` says otherwise."""
    properties = {k: {"type": v} if isinstance(v, str) else v for k, v in parameters.items()}
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties,
                       "required": list(parameters) if required is None else required}}}


def tool_message(content: str) -> Message:
    return {"role": "tool", "content": content}


class ToolEnv(Env):
    max_turns = 6
    max_calls_per_turn: int = 4
    """Calls beyond this in one turn are not run (each gets an error observation)."""
    tool_timeout_s: float = 10.0
    """Wall-clock limit of one tool call."""
    max_output_chars: int = 2000
    """A tool result longer than this is cut."""

    def functions(self) -> dict[str, Callable[..., Any]]:
        """Tool name -> function called with the call's arguments as keywords (sync or async)."""
        raise NotImplementedError(f"{type(self).__name__} must implement functions() -> {{name: callable}}")

    def finish(self, answer: str) -> StepResult:
        """Score the final answer (a turn without tool calls); return a StepResult with done=True."""
        raise NotImplementedError(f"{type(self).__name__} must implement finish(answer) -> StepResult")

    def step(self, assistant_text: str) -> StepResult:
        _, answer = split_thinking(assistant_text)
        attempted = answer.count("<tool_call>")
        try:
            calls = parse_tool_calls(answer)
        except MalformedToolCall as exc:  # malformed model output: tell the model, let it retry
            return StepResult([tool_message(f"Error: {exc}. No tool was run. Write each call as {CALL_FORMAT}.")],
                              done=False, tool_calls=attempted, tool_errors=1)
        if not calls:
            return self.finish(answer)
        messages, errors = [], 0
        for k, call in enumerate(calls):
            if k >= self.max_calls_per_turn:
                text = f"Error: at most {self.max_calls_per_turn} tool calls per turn; {call.name} was not run."
                ok = False
            else:
                text, ok = self.call_tool(call)
            messages.append(tool_message(text))
            errors += not ok
        return StepResult(messages, done=False, tool_calls=len(calls), tool_errors=errors)

    def call_tool(self, call: ToolCall) -> tuple[str, bool]:
        """(observation text, succeeded) for one call."""
        functions = self.functions()
        fn = functions.get(call.name)
        if fn is None:
            return f"Error: unknown tool {call.name!r}; available tools: {sorted(functions)}.", False
        try:
            inspect.signature(fn).bind(**call.arguments)
        except TypeError as exc:
            return f"Error: bad arguments for {call.name}: {exc}.", False
        outcome = call_with_timeout(lambda: fn(**call.arguments), self.tool_timeout_s)
        if outcome.timed_out:
            return f"Error: {call.name} did not finish within {self.tool_timeout_s:g} s.", False
        error = outcome.error
        if isinstance(error, EnvError):
            raise error
        if isinstance(error, ToolError):
            return f"Error: {error}", False
        if error is not None:
            _log_first(type(self).__name__, call.name, outcome.traceback)
            return f"Error: {call.name} raised {type(error).__name__}: {error}", False
        value = outcome.value
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return truncate(text, self.max_output_chars), True


_logged: set[tuple[str, str]] = set()


def _log_first(env: str, tool: str, trace: str) -> None:
    """The first unexpected exception of each (env, tool) is logged with its traceback: it may be a bug
    in the tool rather than a bad call, and must not hide in observations."""
    if (env, tool) not in _logged:
        _logged.add((env, tool))
        log.warning("tool %s of %s raised (shown to the model as an error observation; later ones are not "
                    "logged):\n%s", tool, env, trace)
