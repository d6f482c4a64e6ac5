"""Function calling (BFCL-style): single, multiple (pick the right function) and parallel (several
calls) categories over a small tool library; reward "function_call" (BFCL's AST-checker rules).

The tools are listed in the system message as compact signatures rather than JSON schemas, so that a
prompt with three tools stays well under the embedded default's 256 prompt tokens; calls are expected
in the Qwen3/Hermes format `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`.
Options: `categories` (subset of ["single", "multiple", "parallel"]).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Callable

from envs.builtin.common import check_options
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

CALL_FORMAT = ('To call a function, reply with <tool_call>{"name": NAME, "arguments": {...}}</tool_call>, '
               "one tag per call.")
Call = tuple[str, dict[str, list[Any]]]
"""(function name, {argument: acceptable values}); "" among the values marks an optional argument."""


@dataclass(frozen=True)
class Tool:
    schema: dict[str, Any]
    """BFCL function schema: {name, description, parameters: {type: "dict", properties, required}}."""
    query: Callable[[random.Random], tuple[str, Call]]
    """A user request in words and the call it asks for."""
    plural: Callable[[random.Random], tuple[str, list[Call]]]
    """A request that needs two calls of this tool (parallel category)."""

    @property
    def signature(self) -> str:
        props, required = self.schema["parameters"]["properties"], self.schema["parameters"]["required"]
        args = ", ".join(f"{k}: {v['type']}{'' if k in required else ' optional'}" for k, v in props.items())
        return f"- {self.schema['name']}({args}): {self.schema['description']}"


def _schema(name: str, description: str, required: list[str], **props: str) -> dict[str, Any]:
    return {"name": name, "description": description,
            "parameters": {"type": "dict", "properties": {k: {"type": t} for k, t in props.items()}, "required": required}}


CITIES = ["Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Delhi", "Rome", "Austin"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP", "INR"]
FOODS = ["rice", "tomato", "chicken", "lentils", "apple", "tofu"]


def _weather(r: random.Random) -> tuple[str, Call]:
    city = r.choice(CITIES)
    if r.random() < 0.5:
        unit = r.choice(["celsius", "fahrenheit"])
        return f"What's the weather in {city} in {unit}?", ("get_weather", {"city": [city], "unit": [unit]})
    return f"How is the weather in {city} right now?", ("get_weather", {"city": [city], "unit": ["", "celsius"]})


def _weather2(r: random.Random) -> tuple[str, list[Call]]:
    a, b = r.sample(CITIES, 2)
    return (f"Tell me the weather in {a} and in {b}.",
            [("get_weather", {"city": [a], "unit": ["", "celsius"]}), ("get_weather", {"city": [b], "unit": ["", "celsius"]})])


def _convert(r: random.Random) -> tuple[str, Call]:
    amount, (src, dst) = r.randint(5, 500), r.sample(CURRENCIES, 2)
    return f"Convert {amount} {src} to {dst}.", ("convert_currency", {"amount": [amount], "from_currency": [src],
                                                                      "to_currency": [dst]})


def _convert2(r: random.Random) -> tuple[str, list[Call]]:
    amount, src = r.randint(5, 500), r.choice(CURRENCIES)
    a, b = r.sample([c for c in CURRENCIES if c != src], 2)
    return (f"How much is {amount} {src} in {a} and in {b}?",
            [("convert_currency", {"amount": [amount], "from_currency": [src], "to_currency": [c]}) for c in (a, b)])


def _timer(r: random.Random) -> tuple[str, Call]:
    minutes = r.choice([3, 5, 10, 15, 25, 45])
    return f"Set a timer for {minutes} minutes.", ("set_timer", {"minutes": [minutes], "label": [""]})


def _timer2(r: random.Random) -> tuple[str, list[Call]]:
    a, b = r.sample([3, 5, 10, 15, 25, 45], 2)
    return (f"Set one timer for {a} minutes and another for {b} minutes.",
            [("set_timer", {"minutes": [m], "label": [""]}) for m in (a, b)])


def _recipes(r: random.Random) -> tuple[str, Call]:
    food, n = r.choice(FOODS), r.randint(2, 5)
    return f"Find {n} recipes with {food}.", ("search_recipes", {"ingredient": [food], "max_results": [n]})


def _recipes2(r: random.Random) -> tuple[str, list[Call]]:
    a, b = r.sample(FOODS, 2)
    return (f"Search recipes with {a}, and separately recipes with {b}.",
            [("search_recipes", {"ingredient": [f], "max_results": [""]}) for f in (a, b)])


TOOLS = [
    Tool(_schema("get_weather", "current weather in a city", ["city"], city="string", unit="string"), _weather, _weather2),
    Tool(_schema("convert_currency", "convert money between currencies", ["amount", "from_currency", "to_currency"],
                 amount="float", from_currency="string", to_currency="string"), _convert, _convert2),
    Tool(_schema("set_timer", "start a countdown timer", ["minutes"], minutes="integer", label="string"), _timer, _timer2),
    Tool(_schema("search_recipes", "find recipes that use an ingredient", ["ingredient"], ingredient="string",
                 max_results="integer"), _recipes, _recipes2),
]


def _row(tools: list[Tool], request: str, calls: list[Call], category: str) -> Row:
    system = "You can call these functions:\n" + "\n".join(t.signature for t in tools) + "\n" + CALL_FORMAT
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": request}],
            "function": [t.schema for t in tools], "possible_answer": [{name: args} for name, args in calls],
            "category": category}


def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("function_call", options, {"categories": ["single", "multiple", "parallel"]})
    if not opts["categories"] or set(opts["categories"]) - {"single", "multiple", "parallel"}:
        raise ValueError(f"function_call: categories must be a non-empty subset of single, multiple, parallel; "
                         f"got {opts['categories']}")
    rng = random.Random(f"function_call-{seed}")
    rows = []
    for _ in range(size):
        category = rng.choice(opts["categories"])
        tool = rng.choice(TOOLS)
        if category == "parallel":
            request, calls = tool.plural(rng)
            rows.append(_row([tool], request, calls, category))
            continue
        request, call = tool.query(rng)
        tools = [tool] if category == "single" else rng.sample(TOOLS, 3)
        if tool not in tools:
            tools[rng.randrange(3)] = tool
        rows.append(_row(tools, request, [call], category))
    return rows


def reference_calls(row: Row) -> str:
    """The expected calls with the first acceptable value of each argument ("" = left out)."""
    out = []
    for entry in row["possible_answer"]:
        (name, args), = entry.items()
        arguments = {k: v[0] for k, v in args.items() if v[0] != ""}
        out.append(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")
    return "\n".join(out)


FUNCTION_CALL = TaskSpec(
    name="function_call",
    description="BFCL-style function calling: single, multiple (choose the function) and parallel calls",
    generate=generate,
    rewards=[RewardSpec("function_call", 1.0)],
    source="procedural (4 tools; BFCL ground-truth format)",
    reference=reference_calls,
)
