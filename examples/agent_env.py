"""A custom agent environment in one file: a unit-conversion tool, and a reward on the final answer.

    python examples/agent_env.py          # plays two scripted episodes (one right, one wrong), no model

Train with it by naming the class in a task (docs/agents.md walks through it):

    data:
      tasks:
        - name: units
          source: examples/units.jsonl            # rows: {"prompt": "How many metres are 3 km?", "answer": 3000}
          env: examples/agent_env.py:UnitConverterEnv
          rewards: [{name: env, weight: 1.0}]

The rollout worker creates one `UnitConverterEnv` per sample, calls `reset(row)`, and then alternates
model turns and `step(text)`. `ToolEnv` (envs/agents/tools.py) does the tool-call parsing: a turn with
`<tool_call>{"name": "convert", "arguments": {...}}</tool_call>` gets the result as a tool message, a turn
without a call is the final answer and goes to `finish`.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from envs.agents.tools import ToolEnv, ToolError, tool_schema
from envs.base import StepResult, row_messages

METRES = {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0, "in": 0.0254, "ft": 0.3048, "mi": 1609.344}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class UnitConverterEnv(ToolEnv):
    max_turns = 3            # at most 3 assistant turns: e.g. call, call, answer
    tool_timeout_s = 2.0     # a tool call running longer becomes an error observation

    def reset(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        self.answer = float(row["answer"])
        self.tools = [tool_schema("convert", "Convert a length between units (mm, cm, m, km, in, ft, mi).",
                                  {"value": "number", "unit_from": "string", "unit_to": "string"})]
        return row_messages(row)  # the row's prompt as the user message

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {"convert": self.convert}

    def convert(self, value: float, unit_from: str, unit_to: str) -> float:
        if unit_from not in METRES or unit_to not in METRES:
            raise ToolError(f"units must be among {sorted(METRES)}")  # shown to the model, counted as a tool error
        return round(float(value) * METRES[unit_from] / METRES[unit_to], 6)

    def finish(self, answer: str) -> StepResult:
        numbers = _NUMBER.findall(answer.replace(",", ""))
        given = float(numbers[-1]) if numbers else None
        correct = given is not None and abs(given - self.answer) <= 1e-6 * max(1.0, abs(self.answer))
        return StepResult([], done=True, reward=float(correct), success=correct, info={"given": given})


def play(policy: Callable[[list[dict[str, Any]]], str], row: dict[str, Any]) -> StepResult:
    """One episode with a scripted policy (what the rollout worker does with a model)."""
    env = UnitConverterEnv()
    conversation = env.reset(row)
    for _ in range(env.max_turns):
        text = policy(conversation)
        result = env.step(text)
        conversation += [{"role": "assistant", "content": text}, *result.messages]
        print(f"assistant: {text!r}\n      env: {[m['content'] for m in result.messages]}")
        if result.done:
            return result
    raise RuntimeError("the scripted policy did not finish within max_turns")


def uses_the_tool(conversation: list[dict[str, Any]]) -> str:
    if conversation[-1]["role"] == "tool":
        return f"That is {conversation[-1]['content']} metres."
    call = {"name": "convert", "arguments": {"value": 3, "unit_from": "km", "unit_to": "m"}}
    return f"<tool_call>\n{json.dumps(call)}\n</tool_call>"


if __name__ == "__main__":
    row = {"prompt": "How many metres are 3 km?", "answer": 3000}
    for policy in (uses_the_tool, lambda conversation: "About 300 metres."):
        result = play(policy, row)
        print(f"reward={result.reward} success={result.success}\n")
