"""Scripted policies that solve the built-in agent envs: the demonstrations of agent cold-start SFT.

    text = DEMO_POLICIES["python"](row, transcript)   # the next assistant turn's answer (no think block)

A tiny model never calls a tool on its own, so agent RL on it has no reward to learn from; the Qwen3
recipe cold-starts with SFT on good trajectories first. These policies play the envs the way a model
must: from the row's prompt and the observations so far (`transcript`: the messages after reset, the
assistant turns and the env's answers), never from hidden fields such as the game's secret. Their
episodes, run through the real env and rendered in the model's chat format, are the cold-start data
(`rl build-agent-data`, rl/agent_data.py). Add one for your env by name in DEMO_POLICIES.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from envs.base import Message

Policy = Callable[[dict[str, Any], list[Message]], str]


def call(tool: str, /, **arguments: Any) -> str:
    """One Qwen3/Hermes tool call."""
    return f'<tool_call>\n{json.dumps({"name": tool, "arguments": arguments})}\n</tool_call>'


def guess_number(row: dict[str, Any], transcript: list[Message]) -> str:
    """Binary search: the middle of the range the feedback still allows."""
    low, high = int(row["low"]), int(row["high"])
    guess = None
    for message in transcript:
        if message["role"] == "assistant":
            guess = int(re.findall(r"-?\d+", message["content"].split("</think>")[-1])[-1])
        elif guess is not None and message["content"].startswith("Higher"):
            low = guess + 1
        elif guess is not None and message["content"].startswith("Lower"):
            high = guess - 1
    return str((low + high) // 2)


# The python env's question kinds (envs/agents/python.py `_question`) -> a program that prints the answer.
_PROGRAMS: list[tuple[re.Pattern[str], Callable[..., str]]] = [
    (re.compile(r"sum of all prime numbers below (\d+)"),
     lambda n: f"n = {n}\nprint(sum(p for p in range(2, n) if all(p % d for d in range(2, int(p ** 0.5) + 1))))"),
    (re.compile(r"from 1 to (\d+) are divisible by (\d+) or by (\d+)"),
     lambda n, a, b: f"print(sum(1 for i in range(1, {n} + 1) if i % {a} == 0 or i % {b} == 0))"),
    (re.compile(r"remainder when (\d+)\^(\d+) is divided by (\d+)"),
     lambda a, b, m: f"print(pow({a}, {b}, {m}))"),
    (re.compile(r"Fibonacci number F\((\d+)\) modulo (\d+)"),
     lambda k, m: f"x, y = 1, 1\nfor _ in range({k} - 2):\n    x, y = y, x + y\nprint(y % {m})"),
    (re.compile(r"sum of the digits of (\d+)!"),
     lambda n: f"import math\nprint(sum(int(d) for d in str(math.factorial({n}))))"),
]


def python(row: dict[str, Any], transcript: list[Message]) -> str:
    """Write a program for the question, then answer with what it printed."""
    results = [m["content"] for m in transcript if m["role"] == "tool"]
    if results:
        return f"The program printed {results[-1].strip()}, so the answer is \\boxed{{{results[-1].strip()}}}."
    for pattern, program in _PROGRAMS:
        match = pattern.search(row["prompt"])
        if match:
            return call("python", code=program(*match.groups()))
    raise ValueError(f"no scripted program for the question {row['prompt']!r}")


def store(row: dict[str, Any], transcript: list[Message]) -> str:
    """Look the user up, list their orders, then act on the goal the request states (or total it)."""
    request = row["prompt"]
    results = [json.loads(m["content"]) if m["content"].startswith(("{", "[")) else m["content"]
               for m in transcript if m["role"] == "tool"]
    name = re.search(r"([A-Z][a-z]+ [A-Z][a-z]+)(?:'s| moved| spent)", request) or \
        re.search(r"has ([A-Z][a-z]+ [A-Z][a-z]+)", request)
    if not results:
        return call("find_user", name=name.group(1))
    if len(results) == 1:
        return call("list_orders", user_id=results[0]["user_id"])
    orders = results[1]
    if "spent" in request:
        return f"The total is {sum(o['price'] for o in orders if o['status'] == 'delivered')}."
    if len(results) == 3:
        return "Done."
    item = re.search(r"order of a ([a-z ]+?)(?:\.| to )", request).group(1)
    target = next(o for o in orders if o["status"] == "pending" and o["item"] == item)
    if "moved" in request:
        city = re.search(r" to ([A-Z][a-z]+) instead", request).group(1)
        return call("set_shipping_city", order_id=target["order_id"], city=city)
    return call("cancel_order", order_id=target["order_id"])


DEMO_POLICIES: dict[str, Policy] = {"guess_number": guess_number, "python": python, "store": store}
"""Env name -> scripted policy."""
