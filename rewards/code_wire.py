"""Plain data between the code grader's two processes (rewards/code_harness.py): JSON lines whose values
are rebuilt with the receiver's own exact types. Stdlib only: it runs inside the sandbox as code_wire.py.
"""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from fractions import Fraction

MAX_LINE = 64 << 20
"""Largest protocol message (bytes); a bigger one is a failed call, not a hang or an out-of-memory."""
MAX_DEPTH = 100
"""Deepest container nesting carried as plain data; deeper values fail the call."""
_ERROR_TEXT = 300
_SCALARS = (bool, int, float, str)
_BASES = (int, float, str, bytes, bytearray, complex, list, tuple, dict, set, frozenset)


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message (or nothing)."""


def encode(value, handle_of, depth: int = 0):
    """`value` as JSON-ready plain data; `handle_of(value)` encodes whatever is not plain data.

    Types are checked exactly (`type(x) is int`), and an instance of a subclass is sent as its base
    type's value (a Counter as a dict, a namedtuple as a tuple, an int subclass as the int): whatever
    __eq__ or __hash__ the subclass carries stays behind, and the receiver compares plain values.
    Fractions and Decimals travel as such; anything else becomes a handle.
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind in _SCALARS:
        return ["i", format(value, "x")] if kind is int and abs(value) > 1 << 62 else value
    if kind in (list, tuple, set, frozenset):
        tag = {list: "l", tuple: "t", set: "s", frozenset: "z"}[kind]
        return [tag, [encode(item, handle_of, depth + 1) for item in value]]
    if kind is dict:
        return ["d", [[encode(k, handle_of, depth + 1), encode(v, handle_of, depth + 1)] for k, v in value.items()]]
    if kind in (bytes, bytearray):
        return ["b" if kind is bytes else "a", value.hex()]
    if kind is complex:
        return ["c", value.real, value.imag]
    if kind is Fraction:
        return ["q", [encode(value.numerator, handle_of), encode(value.denominator, handle_of)]]
    if kind is Decimal:
        return ["D", str(value)]
    for base in _BASES:  # a subclass: its base type's value, built by the base type itself
        if isinstance(value, base):
            return encode(base(value), handle_of, depth)
    return handle_of(value)


def decode(data, remote, depth: int = 0):
    """Rebuild a value from `encode`'s output with this process's own types; ProtocolError if malformed.

    `remote(data)` turns a handle ["h", ...] into a local object (a proxy in the tester, the real
    object in the server).
    """
    if depth > MAX_DEPTH:
        raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
    kind = type(data)
    if data is None or kind in _SCALARS:
        return data
    if kind is not list or len(data) < 2 or type(data[0]) is not str:
        raise ProtocolError(f"not an encoded value: {type(data).__name__}")
    tag, body = data[0], data[1]
    try:
        if tag in ("l", "t", "s", "z"):
            items = [decode(item, remote, depth + 1) for item in as_list(body)]
            return {"l": list, "t": tuple, "s": set, "z": frozenset}[tag](items)
        if tag == "d":
            return {decode(k, remote, depth + 1): decode(v, remote, depth + 1) for k, v in as_list(body)}
        if tag == "i":
            return int(as_str(body), 16)
        if tag in ("b", "a"):
            return (bytes if tag == "b" else bytearray).fromhex(as_str(body))
        if tag == "q":
            parts = [decode(part, remote, depth + 1) for part in as_list(body)]
            if len(parts) != 2 or any(type(part) is not int for part in parts):
                raise ProtocolError("a fraction of non-integers")
            return Fraction(*parts)
        if tag == "D" and len(as_str(body)) <= 10_000:
            return Decimal(body)
        if tag == "c" and len(data) == 3 and all(type(x) in (int, float) for x in data[1:]):
            return complex(data[1], data[2])
        if tag == "h":
            return remote(data)
    except (TypeError, ValueError, ZeroDivisionError, InvalidOperation) as error:  # unhashable keys, bad hex, ...
        raise ProtocolError(f"malformed {tag!r} value: {error}") from None
    raise ProtocolError(f"unknown value tag {tag!r}")


def as_list(body) -> list:
    if type(body) is not list:
        raise ProtocolError("a container's items must be a list")
    return body


def as_str(body) -> str:
    if type(body) is not str:
        raise ProtocolError("expected a string")
    return body


def read_message(stream) -> dict:
    line = stream.readline(MAX_LINE + 1)
    if not line:
        raise ProtocolError("the other process ended (crashed, exited or was killed)")
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message over {MAX_LINE} bytes")
    try:
        message = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"unreadable message: {error}") from None
    if type(message) is not dict:
        raise ProtocolError("a message must be a JSON object")
    return message


def write_message(stream, message: dict) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def error_of(exc: BaseException) -> list[str]:
    """[type name, message] of an exception; the message is only text we could produce safely."""
    try:
        text = str(exc)[:_ERROR_TEXT]
    except BaseException:  # a program's exception whose __str__ raises
        text = ""
    return [type(exc).__name__, text if type(text) is str else ""]
