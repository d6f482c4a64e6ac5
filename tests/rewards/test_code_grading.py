"""Code grading the program cannot reach (rewards/code_harness.py): wrong code that attacks the grader
scores 0, and the legitimate ways tests use a program still pass.

Each attack below scored 1.0 when the tests ran in the program's own interpreter (a lying __eq__,
patched builtins, frames walked up to the runner, a hook on the failing test's traceback).
Run: .venv/bin/python -m pytest tests/rewards/test_code_grading.py   (~20 s on 2 cores)
"""
from __future__ import annotations

import textwrap
import time
from collections import Counter
from decimal import Decimal
from fractions import Fraction

import pytest

from rewards.code import code_reward
from rewards.code_wire import ProtocolError, decode, encode

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 5) == 4", "assert add(10, 5) == 15"]
FAST = {"timeout_s": 2.0, "total_timeout_s": 6.0}


def score(program: str, tests=ADD_TESTS, **row) -> float:
    result = code_reward(textwrap.dedent(program), tests=tests, **{**FAST, **row})
    return result.score


# --- Attacks: wrong code, each must score 0 ----------------------------------------------------

LYING_VALUES = {
    "eq always true": """
        class Yes:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
        def add(a, b): return Yes()
    """,
    "int subclass": """
        class Int(int):
            def __eq__(self, other): return True
            __hash__ = int.__hash__
        def add(a, b): return Int(0)
    """,
    "str and list subclasses": """
        class Anything(list):
            def __eq__(self, other): return True
        def add(a, b): return Anything()
    """,
    "float nan-like lie": """
        class F(float):
            def __eq__(self, other): return True
            def __sub__(self, other): return 0.0
            def __abs__(self): return 0.0
        def add(a, b): return F(0)
    """,
}


@pytest.mark.parametrize("name", sorted(LYING_VALUES))
def test_returned_objects_cannot_lie_about_equality(name):
    tests = ADD_TESTS + ["assert abs(add(0.5, 0.25) - 0.75) < 1e-9"]
    assert score(LYING_VALUES[name], tests=tests) == 0.0


PATCHED_BUILTINS = {
    "builtins module": """
        import builtins
        builtins.abs = lambda x: 0
        builtins.isinstance = lambda *a: True
        builtins.AssertionError = type("Nothing", (Exception,), {})
        def add(a, b): return a - b + 0.5
    """,
    "shadowing at module level": """
        def abs(x): return 0
        def round(x, n=0): return 3
        len = lambda x: 3
        def add(a, b): return a - b + 0.5
    """,
}


@pytest.mark.parametrize("name", sorted(PATCHED_BUILTINS))
def test_patched_or_shadowed_builtins_do_not_reach_the_tests(name):
    tests = ["assert abs(add(1, 2) - 3) < 1e-9", "assert round(add(1, 2)) == 3", "assert isinstance(add(1, 2), int)"]
    assert score(PATCHED_BUILTINS[name], tests=tests) == 0.0


def test_frame_walking_finds_neither_tests_nor_verdict():
    program = """
        import gc, os, sys
        def add(a, b):
            found = []
            frame = sys._getframe()
            while frame is not None:  # the old runner's frame held the job: tests and nonce
                for scope in (frame.f_locals, frame.f_globals):
                    for key in list(scope):
                        if key in ("job", "nonce", "test", "tests"):
                            found.append(scope[key])
                frame.f_globals.setdefault("__builtins__", __builtins__)
                frame = frame.f_back
            for obj in gc.get_objects():  # any dict that looks like a job
                if isinstance(obj, dict) and "nonce" in obj:
                    found.append(obj)
            for item in found:
                nonce = item.get("nonce") if isinstance(item, dict) else str(item)
                for fd in range(1, 64):
                    for index in range(4):
                        try:
                            os.write(fd, f"\\n{nonce}\\n{nonce} {index} pass null\\n".encode())
                        except OSError:
                            pass
            if found:
                os._exit(0)  # exit before the failing assert, the marker written
            return None
    """
    assert score(program) == 0.0


def test_hooks_on_the_failing_tests_traceback_change_nothing():
    program = """
        import atexit, os, sys, threading
        def hook(kind=None, error=None, tb=None, *rest):
            while tb is not None:  # the frames of the failing test: the runner's locals, its nonce
                job = tb.tb_frame.f_locals.get("job")
                if isinstance(job, dict) and "nonce" in job:
                    os.write(1, ("\\n" + job["nonce"] + "\\n").encode())
                    os._exit(0)
                tb = tb.tb_next
        sys.excepthook = hook
        threading.excepthook = hook
        atexit.register(hook)
        def add(a, b):
            return a - b
    """
    assert score(program) == 0.0


def test_the_testers_process_is_out_of_reach():
    """The tester's stdin held the job, its fd 1 takes the verdicts: the program can open neither, nor
    read its memory, nor find the tests anywhere on disk."""
    program = """
        import glob, json, os
        ppid = os.getppid()
        stolen = []
        for path in [f"/proc/{ppid}/fd/{n}" for n in range(16)] + [f"/proc/{ppid}/environ", f"/proc/{ppid}/mem"]:
            try:
                with open(path, "rb") as f:
                    stolen.append(f.read(1 << 16))
            except OSError:
                pass
        for path in glob.glob("/tmp/**", recursive=True) + glob.glob("./**", recursive=True):
            try:
                with open(path, "rb") as f:
                    stolen.append(f.read(1 << 16))
            except OSError:
                pass
        ANSWERS = {}
        for blob in stolen:
            for line in blob.splitlines():
                try:
                    job = json.loads(line)
                except ValueError:
                    continue
                if isinstance(job, dict) and "nonce" in job:
                    for fd in range(16):
                        try:
                            with open(f"/proc/{ppid}/fd/{fd}", "w") as out:
                                out.write(f"{job['nonce']} 0 pass null\\n{job['nonce']} 1 pass null\\n")
                        except OSError:
                            pass
        def add(a, b): return 0
    """
    assert score(program) == 0.0


@pytest.mark.parametrize("attack", ["import os; os.kill(os.getppid(), 9)",
                                    "import os, signal; os.kill(os.getppid(), signal.SIGSTOP)",
                                    "import os; os.killpg(0, 9)"])
def test_stopping_the_tester_fails_the_tests(attack):
    assert score(f"def add(a, b):\n    {attack}\n    return 0\n", tests=ADD_TESTS[:2], timeout_s=1.0,
                 total_timeout_s=2.0) == 0.0


def test_garbage_on_the_channel_fails_the_call():
    """A forged reply is no more than a returned value; a malformed one must fail, never crash or hang."""
    program = """
        import os
        def add(a, b):
            os.write(1, b"[" * 100000 + b"\\n")  # fd 1 is stderr here: the channel has other fds
            for fd in range(3, 10):
                try:
                    os.write(fd, b"[" * 5000 + b"\\n" + b'{"value": ["h", 10 ** 9]}\\n')
                except OSError:
                    pass
            return 0
    """
    assert score(program) == 0.0


# --- What tests legitimately do still works ----------------------------------------------------

def test_values_exceptions_objects_and_generators_pass_through():
    program = """
        import math
        def add(a, b):
            if a is None:
                raise ValueError("no")
            return a + b
        def stats(xs): return {"n": len(xs), "pair": (min(xs), max(xs)), "set": set(xs), "big": 3 ** 100,
                               "f": 1.5, "c": 1 + 2j, "b": b"\\x00\\xff", "none": None, "nested": [[[[]]]]}
        def sort_in_place(xs): xs.sort()
        def squares(n):
            for i in range(n):
                yield i * i
        class Counter:
            def __init__(self): self.n = 0
            def inc(self): self.n += 1; return self.n
            def __str__(self): return f"Counter({self.n})"
        LIMIT = 7
    """
    tests = [
        "assert add(1, 2) == 3 and add('a', 'b') == 'ab' and add([1], [2]) == [1, 2]",
        "s = stats([3, 1, 2]); assert s == {'n': 3, 'pair': (1, 3), 'set': {1, 2, 3}, 'big': 3 ** 100, "
        "'f': 1.5, 'c': 1 + 2j, 'b': b'\\x00\\xff', 'none': None, 'nested': [[[[]]]]}",
        "assert type(stats([1])['pair']) is tuple and type(stats([1])['set']) is set",
        "xs = [3, 1, 2]; sort_in_place(xs); assert xs == [1, 2, 3]",
        "assert list(squares(4)) == [0, 1, 4, 9]",
        "c = Counter(); c.inc(); assert c.inc() == 2 and c.n == 2 and str(c) == 'Counter(2)'",
        "try:\n    add(None, 1)\nexcept ValueError as e:\n    assert str(e) == 'no'\nelse:\n    assert False",
        "assert LIMIT == 7 and math.isclose(add(0.1, 0.2), 0.3)",
    ]
    result = code_reward(textwrap.dedent(program), tests=tests, **FAST)
    assert result.score == 1.0, result.details


def test_library_containers_and_numbers_compare_as_their_values():
    """A Counter, defaultdict, OrderedDict or namedtuple compares as the dict / tuple it holds (as it did
    in-process); Fractions and Decimals travel as such."""
    program = """
        from collections import Counter, OrderedDict, defaultdict, namedtuple
        from decimal import Decimal
        from fractions import Fraction
        Point = namedtuple("Point", "x y")
        def freq(s): return Counter(s)
        def groups(xs):
            out = defaultdict(list)
            for x in xs:
                out[x % 2].append(x)
            return out
        def ordered(): return OrderedDict([("b", 1), ("a", 2)])
        def point(): return Point(1, 2)
        def third(): return Fraction(1, 3)
        def price(): return Decimal("1.10")
    """
    tests = ["assert freq('aab') == {'a': 2, 'b': 1}", "assert groups([1, 2, 3]) == {1: [1, 3], 0: [2]}",
             "assert ordered() == {'a': 2, 'b': 1} and list(ordered()) == ['b', 'a']", "assert point() == (1, 2)",
             "from fractions import Fraction\nassert third() == Fraction(1, 3)",
             "from decimal import Decimal\nassert price() == Decimal('1.10')", "assert freq('ab') == {'a': 2}"]
    result = code_reward(textwrap.dedent(program), tests=tests, **FAST)
    assert result.details["passed"] == 6 and result.details["failures"][0]["test"] == 6, result.details


def test_each_test_sees_a_fresh_program_and_a_slow_test_fails_alone():
    program = """
        CALLS = []
        def f(x):
            CALLS.append(x)
            while x == 0:
                pass
            return len(CALLS)
    """
    tests = ["assert f(5) == 1", "assert f(0) == 1", "assert f(7) == 1", "assert f(9) == 1"]
    start = time.monotonic()
    result = code_reward(textwrap.dedent(program), tests=tests, timeout_s=1.0, total_timeout_s=5.0)
    assert time.monotonic() - start < 4.0
    assert result.score == 0.75, result.details
    assert result.details["failures"][0] == {"test": 1, "reason": "timeout", "stderr": ""}


def test_prompt_helpers_are_the_prompts_own():
    """HumanEval/32-style: the test calls `poly` from the prompt; a program that redefines it to make
    any root look right must not change the test's `poly`."""
    prompt = ('import math\n\ndef poly(xs, x):\n    return sum(c * math.pow(x, i) for i, c in enumerate(xs))\n\n'
              'def find_zero(xs):\n    """A root of the polynomial."""\n')
    test = "def check(candidate):\n    assert abs(poly([-6, 11, -6, 1], candidate([-6, 11, -6, 1]))) < 1e-6\n"
    cheat = "def poly(xs, x):\n    return 0.0\n\ndef find_zero(xs):\n    return 123.0\n"
    honest = "def find_zero(xs):\n    return 1.0\n"
    row = {"prompt": prompt, "test": test, "entry_point": "find_zero", **FAST}
    assert code_reward(f"```python\n{cheat}```", **row).score == 0.0
    assert code_reward(f"```python\n{honest}```", **row).score == 1.0


# --- The plain-data codec ------------------------------------------------------------------------

def test_codec_keeps_exact_types_and_turns_the_rest_into_handles():
    value = {"a": [1, (2.5, "x")], 3: {frozenset({1}), None}, (1, 2): b"\x01", "i": -(1 << 80), "t": True,
             "q": Fraction(-2, 6), "D": Decimal("1.10")}
    handles: list = []
    assert decode(encode(value, handles.append), lambda d: None) == value
    assert handles == []
    assert decode(["l", [["l", [["l", []]]]]], lambda d: None) == [[[]]]  # nesting within the cap

    class Lying(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    def handle_of(v):
        handles.append(v)
        return ["h", len(handles) - 1, type(v).__name__]

    sent = decode(encode([Lying(1), Counter("aab"), object()], handle_of), lambda d: ("handle", d[1]))
    assert sent[:2] == [1, {"a": 2, "b": 1}] and [type(v) for v in sent[:2]] == [int, dict]
    assert sent[2] == ("handle", 0), "only what is no kind of plain data stays behind"


@pytest.mark.parametrize("data", [["l", "not a list"], ["d", [[["l", []], 1]]], ["?", 1], ["i", 5], {"a": 1},
                                  ["b", "zz"], ["c", "1", 2], ["q", [1, 0]], ["q", [1.5, 2]], ["D", "1e"]])
def test_codec_rejects_malformed_data(data):
    with pytest.raises(ProtocolError):
        decode(data, lambda d: None)


def test_codec_refuses_nesting_deeper_than_the_cap():
    deep: list = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(ValueError):
        encode(deep, lambda v: None)
    data: list = ["l", []]
    for _ in range(500):
        data = ["l", [data]]
    with pytest.raises(ProtocolError):
        decode(data, lambda d: None)
