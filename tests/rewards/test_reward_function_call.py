"""function_call_reward: Qwen3/Hermes tool calls checked with BFCL's AST-checker rules (CPU, <1 s)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from rewards.base import required_fields
from rewards.function_call import (MAX_CALL_CHARS, MAX_DEPTH, MalformedToolCall, ToolCall, function_call_reward, json_depth,
                                   parse_tool_calls)
from rewards.registry import get_reward

# Rows from BFCL v4 (simple_python_0, parallel_0, multiple_0, parallel_multiple_0), schemas shortened.
TRIANGLE = [{"name": "calculate_triangle_area", "description": "Area of a triangle.", "parameters": {
    "type": "dict", "properties": {"base": {"type": "integer"}, "height": {"type": "integer"},
                                   "unit": {"type": "string"}}, "required": ["base", "height"]}}]
TRIANGLE_ANSWER = [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]

SPOTIFY = [{"name": "spotify.play", "description": "Play tracks.", "parameters": {
    "type": "dict", "properties": {"artist": {"type": "string"}, "duration": {"type": "integer"}},
    "required": ["artist", "duration"]}}]
SPOTIFY_ANSWER = [{"spotify.play": {"artist": ["Taylor Swift"], "duration": [20]}},
                  {"spotify.play": {"artist": ["Maroon 5"], "duration": [15]}}]

MULTIPLE = [
    {"name": "triangle_properties.get", "parameters": {"type": "dict", "properties": {
        "side1": {"type": "integer"}, "side2": {"type": "integer"}, "side3": {"type": "integer"},
        "get_area": {"type": "boolean"}}, "required": ["side1", "side2", "side3"]}},
    {"name": "circle_properties.get", "parameters": {"type": "dict", "properties": {
        "radius": {"type": "float"}}, "required": ["radius"]}},
]
MULTIPLE_ANSWER = [{"triangle_properties.get": {"side1": [5], "side2": [4], "side3": [3], "get_area": ["", True]}}]

PRIMES = [
    {"name": "math_toolkit.sum_of_multiples", "parameters": {"type": "dict", "properties": {
        "lower_limit": {"type": "integer"}, "upper_limit": {"type": "integer"},
        "multiples": {"type": "array", "items": {"type": "integer"}}},
        "required": ["lower_limit", "upper_limit", "multiples"]}},
    {"name": "area_circle.calculate", "parameters": {"type": "dict", "properties": {
        "radius": {"type": "float"}}, "required": ["radius"]}},
]
PRIMES_ANSWER = [{"math_toolkit.sum_of_multiples": {"lower_limit": [1], "upper_limit": [1000], "multiples": [[3, 5]]}},
                 {"area_circle.calculate": {"radius": [5.0]}}]


def calls(*pairs: tuple[str, Any]) -> str:
    """A completion with one <tool_call> per (name, arguments)."""
    return "".join(f'<tool_call>\n{json.dumps({"name": n, "arguments": a})}\n</tool_call>\n' for n, a in pairs)


def score(completion: str, function: Any, possible_answer: Any) -> float:
    return function_call_reward(completion, function=function, possible_answer=possible_answer).score


def error(completion: str, function: Any, possible_answer: Any) -> str:
    result = function_call_reward(completion, function=function, possible_answer=possible_answer)
    assert result.score == 0.0
    return result.details["error"]


# ---------------------------------------------------------------------------------------- parsing
def test_parse_tool_calls_reads_hermes_blocks_and_string_arguments() -> None:
    text = ('I will call it.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
            '<tool_call>{"name": "g", "arguments": "{\\"b\\": [1, 2]}"}</tool_call>')
    assert parse_tool_calls(text) == [ToolCall("f", {"a": 1}), ToolCall("g", {"b": [1, 2]})]
    assert parse_tool_calls("no calls here") == []
    # A last block cut before its closing tag is still read (like vLLM's hermes parser).
    assert parse_tool_calls('<tool_call>{"name": "f", "arguments": {}}') == [ToolCall("f", {})]


@pytest.mark.parametrize("body", [
    '{"name": "f", "arguments": {"a": 1}',          # cut JSON
    '{"name": "f"}',                                 # no arguments
    '{"arguments": {}}',                             # no name
    '{"name": "f", "arguments": "not json"}',
    '{"name": "f", "arguments": [1, 2]}',
    '["f", {}]',
])
def test_malformed_tool_calls_raise_in_parser_and_score_zero(body: str) -> None:
    with pytest.raises(MalformedToolCall):
        parse_tool_calls(f"<tool_call>{body}</tool_call>")
    result = function_call_reward(f"<tool_call>{body}</tool_call>", function=TRIANGLE, possible_answer=TRIANGLE_ANSWER)
    assert result.score == 0.0 and result.details["error"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("body, reason", [
    ('{"name": "f", "arguments": {"a": ' + nested(5000) + "}}", "nested too deep"),
    ('{"name": "f", "arguments": "{\\"a\\": ' + nested(5000) + '}"}', "nested too deep"),  # arguments as JSON text
    ("[" * 1_000_000, "nested too deep"),
    ('{"name": "f", "arguments": {"a": ' + "9" * 5000 + "}}", "not valid JSON"),  # over Python's 4300 digits
    ('{"name": "f", "arguments": {"a": "' + "x" * MAX_CALL_CHARS + '"}}', "too long"),
])
def test_deep_or_huge_tool_calls_score_zero_without_recursion(body: str, reason: str) -> None:
    with pytest.raises(MalformedToolCall, match=reason):
        parse_tool_calls(f"<tool_call>{body}</tool_call>")
    result = function_call_reward(f"<tool_call>{body}</tool_call>", function=TRIANGLE, possible_answer=TRIANGLE_ANSWER)
    assert result.score == 0.0 and reason in result.details["error"]


def test_nesting_up_to_the_limit_is_read() -> None:
    deep = json.loads(nested(MAX_DEPTH - 2))  # inside the call object and its arguments object
    assert parse_tool_calls(calls(("f", {"a": deep}))) == [ToolCall("f", {"a": deep})]
    assert json_depth('{"a": "[[[{{", "b": [["\\"]"]]}') == 3  # brackets inside strings do not count
    assert json_depth("no brackets") == 0


# ----------------------------------------------------------------------------------- simple calls
def test_simple_call_matches_with_and_without_optional_argument() -> None:
    assert score(calls(("calculate_triangle_area", {"base": 10, "height": 5})), TRIANGLE, TRIANGLE_ANSWER) == 1.0
    assert score(calls(("calculate_triangle_area", {"base": 10, "height": 5, "unit": "units"})),
                 TRIANGLE, TRIANGLE_ANSWER) == 1.0
    assert score(calls(("calculate_triangle_area", {"height": 5, "base": 10, "unit": "Units"})),
                 TRIANGLE, TRIANGLE_ANSWER) == 1.0


def test_simple_call_failures_say_why() -> None:
    assert "wrong value for argument 'unit'" in error(
        calls(("calculate_triangle_area", {"base": 10, "height": 5, "unit": "cm"})), TRIANGLE, TRIANGLE_ANSWER)
    assert "missing required argument 'height'" in error(
        calls(("calculate_triangle_area", {"base": 10})), TRIANGLE, TRIANGLE_ANSWER)
    assert "unexpected argument 'colour'" in error(
        calls(("calculate_triangle_area", {"base": 10, "height": 5, "colour": "red"})), TRIANGLE, TRIANGLE_ANSWER)
    assert "wrong value for argument 'base'" in error(
        calls(("calculate_triangle_area", {"base": 11, "height": 5})), TRIANGLE, TRIANGLE_ANSWER)
    assert "wrong function name" in error(calls(("triangle_area", {"base": 10, "height": 5})), TRIANGLE, TRIANGLE_ANSWER)
    assert "wrong number of function calls: expected 1, got 0" in error("The area is 25.", TRIANGLE, TRIANGLE_ANSWER)
    two = calls(("calculate_triangle_area", {"base": 10, "height": 5}), ("calculate_triangle_area", {"base": 10, "height": 5}))
    assert "expected 1, got 2" in error(two, TRIANGLE, TRIANGLE_ANSWER)


def test_types_follow_bfcl() -> None:
    circle = [{"area_circle.calculate": {"radius": [5.0]}}]
    assert score(calls(("area_circle.calculate", {"radius": 5})), PRIMES, circle) == 1.0      # int for float: ok
    assert score(calls(("area_circle.calculate", {"radius": 5.0})), PRIMES, circle) == 1.0
    assert "wrong type" in error(calls(("area_circle.calculate", {"radius": "5"})), PRIMES, circle)
    # float for integer, bool for integer, number for string: rejected (exact type match, as in BFCL).
    assert "wrong type" in error(calls(("calculate_triangle_area", {"base": 10.0, "height": 5})), TRIANGLE, TRIANGLE_ANSWER)
    assert "wrong type" in error(calls(("calculate_triangle_area", {"base": True, "height": 5})), TRIANGLE, TRIANGLE_ANSWER)
    assert "wrong type" in error(calls(("calculate_triangle_area", {"base": 10, "height": 5, "unit": 3})),
                                 TRIANGLE, TRIANGLE_ANSWER)


def test_string_normalisation_follows_bfcl() -> None:
    schema = [{"name": "weather", "parameters": {"type": "dict", "properties": {
        "city": {"type": "string"}, "date": {"type": "string"}}, "required": ["city"]}}]
    answer = [{"weather": {"city": ["San Francisco, CA"], "date": ["April 1, 2024", ""]}}]
    for city in ("San Francisco, CA", "san francisco ca", "SanFrancisco,CA", "san-francisco_ca."):
        assert score(calls(("weather", {"city": city})), schema, answer) == 1.0
    assert score(calls(("weather", {"city": "sf", "date": "April 1 2024"})), schema, answer) == 0.0
    assert score(calls(("weather", {"city": "San Francisco", "date": "april 1,2024"})), schema, answer) == 0.0
    assert score(calls(("weather", {"city": "San Francisco CA", "date": "april 1,2024"})), schema, answer) == 1.0


# --------------------------------------------------------------------- multiple / parallel calls
def test_multiple_functions_pick_the_right_one() -> None:
    good = {"side1": 5, "side2": 4, "side3": 3}
    assert score(calls(("triangle_properties.get", good)), MULTIPLE, MULTIPLE_ANSWER) == 1.0
    assert score(calls(("triangle_properties.get", {**good, "get_area": True})), MULTIPLE, MULTIPLE_ANSWER) == 1.0
    assert score(calls(("triangle_properties.get", {**good, "get_area": False})), MULTIPLE, MULTIPLE_ANSWER) == 0.0
    assert score(calls(("circle_properties.get", {"radius": 5.0})), MULTIPLE, MULTIPLE_ANSWER) == 0.0


def test_parallel_calls_match_in_any_order() -> None:
    swift, maroon = ("spotify.play", {"artist": "Taylor Swift", "duration": 20}), ("spotify.play", {"artist": "Maroon 5", "duration": 15})
    assert score(calls(swift, maroon), SPOTIFY, SPOTIFY_ANSWER) == 1.0
    assert score(calls(maroon, swift), SPOTIFY, SPOTIFY_ANSWER) == 1.0
    assert score(calls(swift, swift), SPOTIFY, SPOTIFY_ANSWER) == 0.0
    assert "no call matches expected call 1" in error(
        calls(swift, ("spotify.play", {"artist": "Maroon 5", "duration": 20})), SPOTIFY, SPOTIFY_ANSWER)
    assert "expected 2, got 1" in error(calls(swift), SPOTIFY, SPOTIFY_ANSWER)


def test_parallel_multiple_with_nested_list() -> None:
    sums = ("math_toolkit.sum_of_multiples", {"lower_limit": 1, "upper_limit": 1000, "multiples": [3, 5]})
    circle = ("area_circle.calculate", {"radius": 5})
    assert score(calls(circle, sums), PRIMES, PRIMES_ANSWER) == 1.0
    # List order matters, and the element type is checked.
    reordered = ("math_toolkit.sum_of_multiples", {"lower_limit": 1, "upper_limit": 1000, "multiples": [5, 3]})
    assert score(calls(circle, reordered), PRIMES, PRIMES_ANSWER) == 0.0
    strings = ("math_toolkit.sum_of_multiples", {"lower_limit": 1, "upper_limit": 1000, "multiples": ["3", "5"]})
    assert "wrong type" in error(calls(circle, strings), PRIMES, PRIMES_ANSWER)


def test_list_of_strings_is_normalised_per_element() -> None:
    schema = [{"name": "order", "parameters": {"type": "dict", "properties": {
        "items": {"type": "array", "items": {"type": "string"}}}, "required": ["items"]}}]
    answer = [{"order": {"items": [["Big Mac", "Coca-Cola"], ["big mac"]]}}]
    assert score(calls(("order", {"items": ["big mac", "coca cola"]})), schema, answer) == 1.0
    assert score(calls(("order", {"items": ["BigMac"]})), schema, answer) == 1.0
    assert score(calls(("order", {"items": ["coca cola", "big mac"]})), schema, answer) == 0.0


def test_dict_and_list_of_dict_arguments() -> None:
    schema = [{"name": "book", "parameters": {"type": "dict", "properties": {
        "guest": {"type": "dict", "properties": {}},
        "rooms": {"type": "array", "items": {"type": "dict"}}}, "required": ["guest"]}}]
    answer = [{"book": {"guest": [{"name": ["Ann Lee"], "age": [30, ""]}],
                        "rooms": [[{"kind": ["double"]}, {"kind": ["single"]}], ""]}}]
    assert score(calls(("book", {"guest": {"name": "ann lee"}})), schema, answer) == 1.0
    assert score(calls(("book", {"guest": {"name": "Ann Lee", "age": 30}})), schema, answer) == 1.0
    assert "missing dict key 'name'" in error(calls(("book", {"guest": {"age": 30}})), schema, answer)
    assert "unexpected dict key 'pet'" in error(calls(("book", {"guest": {"name": "Ann Lee", "pet": "cat"}})), schema, answer)
    rooms = [{"kind": "Double"}, {"kind": "single"}]
    assert score(calls(("book", {"guest": {"name": "Ann Lee"}, "rooms": rooms})), schema, answer) == 1.0
    assert score(calls(("book", {"guest": {"name": "Ann Lee"}, "rooms": rooms[::-1]})), schema, answer) == 0.0
    assert "wrong number of dicts" in error(calls(("book", {"guest": {"name": "Ann Lee"}, "rooms": rooms[:1]})),
                                            schema, answer)


def test_no_call_expected() -> None:
    assert score("I cannot help with that.", TRIANGLE, []) == 1.0
    assert score(calls(("calculate_triangle_area", {"base": 10, "height": 5})), TRIANGLE, []) == 0.0


# --------------------------------------------------------------------------- row formats, errors
def test_json_string_fields_and_openai_style_tools() -> None:
    completion = calls(("calculate_triangle_area", {"base": 10, "height": 5}))
    assert score(completion, json.dumps(TRIANGLE), json.dumps(TRIANGLE_ANSWER)) == 1.0
    assert score(completion, [{"type": "function", "function": TRIANGLE[0]}], TRIANGLE_ANSWER) == 1.0


def test_thinking_block_is_ignored() -> None:
    call = calls(("calculate_triangle_area", {"base": 10, "height": 5}))
    assert score(f"<think>\nmaybe {call}\n</think>\n\n{call}", TRIANGLE, TRIANGLE_ANSWER) == 1.0
    assert score(f"<think>\n{call}\n</think>\n\nDone.", TRIANGLE, TRIANGLE_ANSWER) == 0.0


def test_bad_rows_raise_clear_errors() -> None:
    completion = calls(("calculate_triangle_area", {"base": 10, "height": 5}))
    with pytest.raises(ValueError, match="not among the row's `function` schemas"):
        score(completion, TRIANGLE, [{"other_fn": {"x": [1]}}])
    with pytest.raises(ValueError, match="'possible_answer' must be BFCL's ground_truth"):
        score(completion, TRIANGLE, {"calculate_triangle_area": {"base": [10]}})
    with pytest.raises(ValueError, match="not JSON"):
        score(completion, "[{oops", TRIANGLE_ANSWER)
    with pytest.raises(ValueError, match="schema type 'complex'"):
        bad = [{"name": "f", "parameters": {"type": "dict", "properties": {"z": {"type": "complex"}}}}]
        score(calls(("f", {"z": 1})), bad, [{"f": {"z": [1]}}])


def test_registered_as_builtin() -> None:
    fn = get_reward("function_call")
    assert fn is function_call_reward
    assert required_fields(fn) == ("function", "possible_answer")
