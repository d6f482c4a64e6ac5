"""Structured-output reward: the completion's JSON must validate against a JSON Schema (and match values).

    from rewards.structured import json_schema_reward
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    json_schema_reward('{"age": 31}', schema=schema, expected={"age": 31}).score     # -> 1.0
    json_schema_reward('{"age": "31"}', schema=schema).score                          # -> 0.0

Row fields: `schema` (a JSON Schema, as a dict or its JSON text: Arrow columns cannot hold arbitrary
nested shapes) and optional `expected` (dict or JSON text): the values the answer should hold.

The JSON is read from the answer part: the last ```json (or plain ```) fenced block, else the first
`{` or `[` (of the first `MAX_STARTS`) from which a complete JSON value decodes
(`json.JSONDecoder.raw_decode`), so a sentence before or after the object is tolerated. An answer whose
`[`/`{` nest deeper than `MAX_DEPTH` scores 0 without being parsed (json.loads and the validator
recurse: thousands of `[` would raise RecursionError). Validation uses the `jsonschema` package with the validator
the schema's `$schema` names (Draft 2020-12 by default). Score: 0.0 when no JSON is found or it fails
the schema; otherwise 1.0 without `expected`, else `valid_weight + (1 - valid_weight) * matched`, where
`matched` is the fraction of `expected`'s top-level keys whose values are equal (strings compared
case- and whitespace-insensitively). An invalid schema is a data bug and raises.
"""
from __future__ import annotations

import itertools
import json
import re
from typing import Any

import jsonschema

from rewards.base import RewardResult, json_depth, json_value, reward_spec

_FENCE = re.compile(r"```(?:json)?[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)
MAX_DEPTH = 64
"""Deepest nesting of arrays/objects read from an answer."""
MAX_STARTS = 100
"""`{`/`[` positions tried without a fence: each failed attempt costs time linear in the answer."""


def extract_json(text: str) -> Any:
    """The JSON value in `text` (see the module docstring); raises ValueError when there is none."""
    _check_depth(text)  # hostile nesting is refused before any parse (each attempt below would recurse)
    fenced = _FENCE.findall(text)
    try:
        if fenced:
            _check_depth(fenced[-1])
            return json.loads(fenced[-1])  # ValueError when it is not JSON (or holds a 5,000-digit int)
        decoder = json.JSONDecoder()
        for match in itertools.islice(re.finditer(r"[\[{]", text), MAX_STARTS):
            try:
                value, end = decoder.raw_decode(text, match.start())
            except ValueError:
                continue
            _check_depth(text[match.start():end])  # exact on valid JSON (a stray quote may have hidden some)
            return value
    except RecursionError:  # brackets that a stray quote hid from the first check
        raise ValueError(f"the answer's JSON nests too deep to read (at most {MAX_DEPTH} levels)") from None
    raise ValueError("no JSON object or array in the answer")


def _check_depth(text: str) -> None:
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise ValueError(f"the answer nests [ and {{ {depth} deep (at most {MAX_DEPTH} levels are read)")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    return a == b


@reward_spec(required=("schema",))
def json_schema_reward(completion: str, *, schema: Any, expected: Any = None, valid_weight: float = 0.5,
                       **row: Any) -> RewardResult:
    """0.0 without valid JSON; 1.0 for a schema-valid answer (partial when `expected` values differ)."""
    schema = json_value(schema, "json_schema reward: row field 'schema'")
    expected = json_value(expected, "json_schema reward: row field 'expected'")
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator_cls.check_schema(schema)  # raises SchemaError: a broken schema in the data is not the model's fault
    try:
        value = extract_json(completion)
    except ValueError as exc:  # malformed model output (no JSON, or a fenced block that is not JSON): 0
        return RewardResult(0.0, {"reason": str(exc)})
    errors = sorted(validator_cls(schema).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        return RewardResult(0.0, {"reason": "schema violation", "errors": [e.message[:200] for e in errors[:3]]})
    if not expected:
        return RewardResult(1.0, {"valid": True})
    if not isinstance(expected, dict) or not isinstance(value, dict):
        matched = float(_same(value, expected))
    else:
        matched = sum(_same(value.get(k), v) for k, v in expected.items()) / len(expected)
    return RewardResult(valid_weight + (1.0 - valid_weight) * matched, {"valid": True, "matched": matched})
