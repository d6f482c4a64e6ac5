"""Function-call reward: the tool calls in a completion against BFCL's ground truth (AST checker rules).

    from rewards.function_call import function_call_reward
    function_call_reward('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
                         function=[{"name": "get_weather", "parameters": {"type": "dict",
                                   "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
                         possible_answer=[{"get_weather": {"city": ["Paris", "paris, france"]}}])  # -> 1.0

Row fields (BFCL's own format, so its data files load as they are):
- `function`: the tool schemas, a list of `{name, description, parameters: {type: "dict", properties,
  required}}` (OpenAI-style `{"type": "function", "function": {...}}` entries are unwrapped).
- `possible_answer`: BFCL's `ground_truth`, a list of `{function_name: {arg: [acceptable values]}}`, one
  entry per expected call; `""` among the acceptable values marks the argument optional. `[]` means
  "no call expected". Both fields may be JSON strings: Arrow cannot store lists that mix types
  (`["units", ""]`, `["", true]`), so datasets often keep these columns serialised.

The completion's calls are read in the Qwen3/Hermes format, `<tool_call>{"name": ..., "arguments":
{...}}</tool_call>` (one or several; "arguments" may itself be a JSON string). A tool call that is not
valid JSON of that shape scores 0 (malformed model output), and so does one nested deeper than
`MAX_DEPTH` arrays/objects or longer than `MAX_CALL_CHARS`: both are checked before `json.loads`,
which recurses (thousands of `[` would raise RecursionError instead of scoring 0). Text outside the tags is ignored, and so is
a `<think>...</think>` block still in the completion.

Matching follows BFCL's `ast_checker` for Python (bfcl_eval/eval_checker/ast_eval/ast_checker.py): the
calls are matched to the expected ones in any order (its `parallel_function_checker_no_order`, which
covers the simple, multiple, parallel and parallel-multiple categories: one expected call is the
simple case), greedily in the order of the expected calls as BFCL does. Per call: same function name;
no missing required argument; no argument that the schema or the ground truth does not know; types
checked as BFCL does (an int is accepted for a float; one level of nested array types); strings compared
after BFCL's normalisation (lower case, without spaces and `,./-_*^`), also inside lists and dicts;
every ground-truth argument without `""` must be given.

Why this is written here instead of importing `bfcl-eval`: its checker module imports BFCL's model
registry (every API client: openai, anthropic, mistralai, cohere, google-genai, ...) and the package pins
numpy==1.26.4 and pulls sentence-transformers and faiss, far too much for a rule-based reward.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from rewards.base import RewardResult, json_depth, json_object, json_value, reward_spec
from rl.thinking.tags import split_thinking

# Qwen3/Hermes tool calls. Like vLLM's hermes parser, a last call left open (generation stopped at the
# closing tag or at the token limit) is still read; if its JSON is cut, it is malformed.
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)\Z", re.DOTALL)

# BFCL's Python type names, plus JSON-schema's "number"/"object" for tools written in that dialect.
_PYTHON_TYPES: dict[str, type] = {
    "string": str, "integer": int, "float": float, "number": float, "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "object": dict, "any": str,
}
_NESTED_TYPES = ("array", "tuple")
MAX_DEPTH = 64
"""Deepest nesting of arrays/objects a tool call may have (BFCL's deepest is 4)."""
MAX_CALL_CHARS = 1 << 20
"""Longest tool call body read (1 MiB); a longer one is malformed."""
_STRING_NOISE = re.compile(r"[ ,./\-_*^]")


class MalformedToolCall(ValueError):
    """A `<tool_call>` whose body is not `{"name": str, "arguments": dict or JSON of a dict}`."""


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]


def parse_tool_calls(text: str) -> list[ToolCall]:
    """All `<tool_call>` blocks of `text`, in order; raises MalformedToolCall on a bad block."""
    return [_parse_call(m.group(1) if m.group(1) is not None else m.group(2)) for m in _TOOL_CALL.finditer(text)]


def _parse_call(body: str) -> ToolCall:
    call = _load_json(body, "tool call")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or "arguments" not in call:
        raise MalformedToolCall(f'tool call must be {{"name": str, "arguments": {{...}}}}, got {body.strip()!r:.200}')
    arguments = call["arguments"]
    if isinstance(arguments, str):  # arguments as a JSON string: bounded like the call itself
        arguments = _load_json(arguments, "tool call arguments")
    return ToolCall(call["name"], json_object(arguments, "tool call arguments", MalformedToolCall))


def _load_json(text: str, what: str) -> Any:
    """json.loads of model output, refused (MalformedToolCall) when too long or too deep to parse safely."""
    if len(text) > MAX_CALL_CHARS:
        raise MalformedToolCall(f"{what} is too long ({len(text)} characters, at most {MAX_CALL_CHARS})")
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise MalformedToolCall(f"{what} is nested too deep ({depth} levels of arrays/objects, at most {MAX_DEPTH})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: also an int of over 4300 digits
        raise MalformedToolCall(f"{what} is not valid JSON ({exc}): {text.strip()!r:.200}") from None


@reward_spec(required=("function", "possible_answer"))
def function_call_reward(completion: str, *, function: Any, possible_answer: Any, **row: Any) -> RewardResult:
    """1.0 if the completion's tool calls match BFCL's `possible_answer`, else 0.0 (details say why)."""
    functions = _load_functions(function)
    expected = _load_possible_answer(possible_answer)
    _, answer_part = split_thinking(completion)  # a call written while thinking is not a call
    try:
        calls = parse_tool_calls(answer_part)
    except MalformedToolCall as exc:
        return RewardResult(0.0, {"error": str(exc)})  # malformed model output scores 0
    error = check_calls(functions, [{c.name: c.arguments} for c in calls], expected)
    details: dict[str, Any] = {"calls": [c.name for c in calls]}
    if error is not None:
        details["error"] = error
    return RewardResult(1.0 if error is None else 0.0, details)


# ------------------------------------------------------------------------------- row fields (dataset)
def _load_functions(function: Any) -> list[dict[str, Any]]:
    functions = json_value(function, "function_call reward: row field 'function'")
    if isinstance(functions, dict):
        functions = [functions]
    if not isinstance(functions, list) or not all(isinstance(f, dict) for f in functions):
        raise ValueError("function_call reward: row field 'function' must be a list of tool schemas "
                         f"({{name, parameters}}), got {function!r:.200}")
    unwrapped = [f["function"] if "name" not in f and isinstance(f.get("function"), dict) else f for f in functions]
    for f in unwrapped:
        if "name" not in f or "parameters" not in f:
            raise ValueError(f"function_call reward: tool schema needs 'name' and 'parameters', got {f!r:.200}")
    return unwrapped


def _load_possible_answer(possible_answer: Any) -> list[dict[str, dict[str, list]]]:
    expected = json_value(possible_answer, "function_call reward: row field 'possible_answer'")
    if not isinstance(expected, list) or not all(isinstance(e, dict) and len(e) == 1 for e in expected):
        raise ValueError("function_call reward: row field 'possible_answer' must be BFCL's ground_truth, a list of "
                         f"{{function_name: {{arg: [acceptable values]}}}}, got {possible_answer!r:.200}")
    return expected


# ------------------------------------------------------------------------------ BFCL's AST checker rules
def check_calls(functions: list[dict[str, Any]], calls: list[dict[str, dict]], expected: list[dict]) -> str | None:
    """None when `calls` match `expected` in any order (BFCL's greedy no-order matching), else why not."""
    if len(calls) != len(expected):
        return f"wrong number of function calls: expected {len(expected)}, got {len(calls)}"
    unmatched = list(range(len(calls)))
    for i, answer in enumerate(expected):
        name = next(iter(answer))
        description = _find_description(functions, name)
        errors = []
        for index in unmatched:
            error = check_call(description, calls[index], answer)
            if error is None:
                unmatched.remove(index)
                break
            errors.append(f"call {index}: {error}")
        else:
            return f"no call matches expected call {i} ({name}): " + "; ".join(errors)
    return None


def _find_description(functions: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for description in functions:
        if description["name"] == name:
            return description
    raise ValueError(f"function_call reward: possible_answer names function {name!r}, which is not among the "
                     f"row's `function` schemas {[f['name'] for f in functions]}")


def check_call(description: dict[str, Any], call: dict[str, dict], answer: dict[str, dict[str, list]]) -> str | None:
    """BFCL's simple_function_checker: one call `{name: args}` against one ground truth `{name: {arg: [values]}}`."""
    name = description["name"]
    if name not in call:
        return f"wrong function name: expected {name!r}, got {next(iter(call))!r}"
    args, accepted = call[name], answer[next(iter(answer))]
    properties = description["parameters"].get("properties", {})
    for param in description["parameters"].get("required", []):
        if param not in args:
            return f"missing required argument {param!r}"
    for param, value in args.items():
        if param not in properties or param not in accepted:
            return f"unexpected argument {param!r}"
        error = _check_argument(param, value, properties[param], accepted[param])
        if error is not None:
            return error
    for param, values in accepted.items():
        if param not in args and "" not in values:
            return f"argument {param!r} not given and not optional"
    return None


def _check_argument(param: str, value: Any, schema: dict[str, Any], accepted: list) -> str | None:
    type_name = schema["type"]
    expected_type = _python_type(type_name, param)
    nested_type = None
    if type_name in _NESTED_TYPES and "items" in schema:
        nested_type = _python_type(schema["items"]["type"], param)
    if expected_type is float and type(value) is int:
        value = float(value)  # BFCL accepts an int where a float is expected
    ok, is_variable = _type_check(value, accepted, expected_type, nested_type)
    if not ok:
        return f"wrong type for argument {param!r}: expected {type_name}, got {type(value).__name__} ({value!r:.80})"
    # BFCL's "variable" case: the ground truth holds a value of another type than the schema's (e.g. a
    # string naming a variable); then only an exact match with an accepted value counts.
    if not is_variable:
        if expected_type is dict:
            return _check_dict(param, value, accepted)
        if expected_type is list and nested_type is dict:
            return _check_list_of_dicts(param, value, accepted)
        if expected_type is str:
            return _check_string(param, value, accepted)
        if expected_type is list:
            return _check_list(param, value, accepted)
    if value not in accepted:
        return f"wrong value for argument {param!r}: {value!r:.80}, expected one of {accepted!r:.200}"
    return None


def _python_type(type_name: str, param: str) -> type:
    if type_name not in _PYTHON_TYPES:
        raise ValueError(f"function_call reward: argument {param!r} has schema type {type_name!r}; "
                         f"known types: {sorted(_PYTHON_TYPES)}")
    return _PYTHON_TYPES[type_name]


def _first_type(accepted: list) -> type | None:
    """Type of the first non-optional accepted value (BFCL's get_possible_answer_type)."""
    return next((type(a) for a in accepted if a != ""), None)


def _type_check(value: Any, accepted: list, expected_type: type, nested_type: type | None) -> tuple[bool, bool]:
    """(valid, is_variable) by BFCL's type_checker: exact `type()` equality, so a bool is not an int."""
    answer_type = _first_type(accepted)
    is_variable = answer_type is not None and answer_type is not expected_type
    if type(value) is expected_type:
        if nested_type is None:
            return True, is_variable
        # Each element must have the nested type (or the type of that option's elements), for at least
        # one accepted option; an option that is not a list (the optional "") passes, as in BFCL.
        return any(not isinstance(option, list) or all(_type_check(v, option, nested_type, None)[0] for v in value)
                   for option in accepted), is_variable
    # A value of the ground truth's own type (not the schema's) is a "variable" in BFCL's terms.
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, is_variable


def _standardize(text: str) -> str:
    """BFCL's standardize_string: "April 1, 2024" == "april 1 2024"; single quotes read as double."""
    return _STRING_NOISE.sub("", text).lower().replace("'", '"')


def _standardize_items(values: Any) -> list:
    return [_standardize(v) if isinstance(v, str) else v for v in values]


def _check_string(param: str, value: str, accepted: list) -> str | None:
    if _standardize(value) not in [_standardize(a) for a in accepted if isinstance(a, str)]:
        return f"wrong value for argument {param!r}: {value!r:.80}, expected one of {accepted!r:.200} (normalised)"
    return None


def _check_list(param: str, value: list, accepted: list) -> str | None:
    # An accepted "" (optional) iterates as an empty list, so [] matches it, as in BFCL.
    options = [_standardize_items(a) for a in accepted if isinstance(a, (list, str))]
    if _standardize_items(value) not in options:
        return f"wrong value for argument {param!r}: {value!r:.120}, expected one of {accepted!r:.200}"
    return None


def _check_dict(param: str, value: dict, accepted: list) -> str | None:
    """Some accepted dict (not "") matches: known keys, accepted values, no missing non-optional key."""
    error = f"wrong value for argument {param!r}: no accepted dict given"
    for option in accepted:
        if option == "":
            continue
        error = _dict_error(value, option)
        if error is None:
            return None
    return f"argument {param!r}: {error}"


def _dict_error(value: dict, option: dict[str, list]) -> str | None:
    for key, item in value.items():
        if key not in option:
            return f"unexpected dict key {key!r}"
        if (_standardize(item) if isinstance(item, str) else item) not in _standardize_items(option[key]):
            return f"wrong value for dict key {key!r}: {item!r:.80}, expected one of {option[key]!r:.200}"
    for key, values in option.items():
        if key not in value and "" not in values:
            return f"missing dict key {key!r}"
    return None


def _check_list_of_dicts(param: str, value: list, accepted: list) -> str | None:
    """Some accepted list of dicts matches element by element, in order (BFCL's list_dict_checker)."""
    error = f"wrong value for argument {param!r}: no accepted list given"
    for option in accepted:
        if len(value) != len(option):
            error = f"argument {param!r}: wrong number of dicts in the list"
            continue
        errors = [_dict_error(item, expected) if isinstance(item, dict) and isinstance(expected, dict)
                  else f"element {item!r:.80} does not match {expected!r:.80}" for item, expected in zip(value, option)]
        error = next((e for e in errors if e is not None), None)
        if error is None:
            return None
        error = f"argument {param!r}: {error}"
    return error
