"""Code tasks: HumanEval-style functions checked by asserts, and stdin/stdout programs (reward "code").

Each problem family is a statement with parameters, a reference solution, and an input generator; a
row's tests are computed by running the reference on generated inputs here (our own code, trusted, in
this process), and the model's program runs in the reward's sandbox. The reference is kept in the row
(`solution`) for `rl tasks show`. Options: `tests` (cases per row, default 3).
"""
from __future__ import annotations

import contextlib
import io
import random
import string
import sys
from dataclasses import dataclass
from typing import Any, Callable

from envs.builtin.common import check_options
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

Inputs = Callable[[random.Random], tuple]


@dataclass(frozen=True)
class FunctionProblem:
    name: str
    signature: str
    doc: str
    """Docstring; `{p}` is replaced by the row's parameter."""
    body: str
    """Reference body (indented 4 spaces); `{p}` as in `doc`."""
    params: tuple
    inputs: Inputs


def _words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 7))) for _ in range(n)]


def _ints(rng: random.Random, lo: int = -20, hi: int = 20) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(0, 8))]


FUNCTIONS = [
    FunctionProblem("sum_multiples", "def sum_multiples(n: int) -> int:",
                    "Return the sum of the positive integers below n that are multiples of {p}.",
                    "    return sum(i for i in range(1, n) if i % {p} == 0)", (3, 4, 5, 7),
                    lambda r: (r.randint(0, 60),)),
    FunctionProblem("count_vowels", "def count_vowels(s: str) -> int:",
                    "Return how many characters of s are vowels (a, e, i, o, u, any case).",
                    "    return sum(ch in 'aeiouAEIOU' for ch in s)", ("",),
                    lambda r: ("".join(r.choice("aAbeiOxyzu ") for _ in range(r.randint(0, 12))),)),
    FunctionProblem("rotate_left", "def rotate_left(xs: list, k: int) -> list:",
                    "Return xs rotated left by k positions (k may exceed len(xs)); an empty list stays empty.",
                    "    if not xs:\n        return []\n    k %= len(xs)\n    return xs[k:] + xs[:k]", ("",),
                    lambda r: (_ints(r), r.randint(0, 10))),
    FunctionProblem("is_palindrome", "def is_palindrome(s: str) -> bool:",
                    "Return True if s reads the same backwards, ignoring case and non-alphanumeric characters.",
                    "    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]", ("",),
                    lambda r: (r.choice(["Racecar", "No lemon, no melon", "abca", "", "ab!ba", "xyz"]),)),
    FunctionProblem("second_largest", "def second_largest(xs: list[int]) -> int | None:",
                    "Return the second largest distinct value in xs, or None if there is none.",
                    "    values = sorted(set(xs))\n    return values[-2] if len(values) > 1 else None", ("",),
                    lambda r: (_ints(r, -5, 5),)),
    FunctionProblem("running_max", "def running_max(xs: list[int]) -> list[int]:",
                    "Return a list whose i-th item is the maximum of xs[0..i].",
                    "    out = []\n    for x in xs:\n        out.append(x if not out else max(out[-1], x))\n    return out",
                    ("",), lambda r: (_ints(r),)),
    FunctionProblem("digit_power_sum", "def digit_power_sum(n: int) -> int:",
                    "Return the sum of the decimal digits of n (n >= 0), each raised to the power {p}.",
                    "    return sum(int(d) ** {p} for d in str(n))", (1, 2, 3),
                    lambda r: (r.randint(0, 99999),)),
    FunctionProblem("long_words", "def long_words(words: list[str]) -> list[str]:",
                    "Return the words with at least {p} letters, in their original order.",
                    "    return [w for w in words if len(w) >= {p}]", (3, 4, 5),
                    lambda r: (_words(r, r.randint(0, 6)),)),
    FunctionProblem("run_length", "def run_length(s: str) -> str:",
                    "Encode runs of equal characters as the character followed by the run length, e.g. 'aab' -> 'a2b1'.",
                    "    out, i = [], 0\n    while i < len(s):\n        j = i\n        while j < len(s) and s[j] == s[i]:\n"
                    "            j += 1\n        out.append(s[i] + str(j - i))\n        i = j\n    return ''.join(out)",
                    ("",), lambda r: ("".join(r.choice("aab") for _ in range(r.randint(0, 9))),)),
    FunctionProblem("count_above", "def count_above(xs: list[int]) -> int:",
                    "Return how many items of xs are greater than {p}.",
                    "    return sum(x > {p} for x in xs)", (0, 5, 10),
                    lambda r: (_ints(r, -10, 20),)),
]


def _define(problem: FunctionProblem, p: Any) -> str:
    doc = problem.doc.format(p=p)
    return f'{problem.signature}\n    """{doc}"""\n{problem.body.format(p=p)}\n'


def _call_reference(source: str, name: str, args: tuple) -> Any:
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # our own reference code (not model output): safe to run in-process
    return namespace[name](*args)


def function_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("code_function", options, {"tests": 3})
    rng = random.Random(f"code_function-{seed}")
    rows = []
    for _ in range(size):
        problem = rng.choice(FUNCTIONS)
        p = rng.choice(problem.params)
        source = _define(problem, p)
        stub = f'{problem.signature}\n    """{problem.doc.format(p=p)}"""\n'
        tests = []
        for _ in range(opts["tests"]):
            args = problem.inputs(rng)
            expected = _call_reference(source, problem.name, args)
            call = ", ".join(repr(a) for a in args)
            tests.append(f"assert {problem.name}({call}) == {expected!r}")
        # `messages`, not `prompt`: the code reward prepends a `prompt` that defines the entry point
        # (HumanEval's harness), and this one starts with prose.
        text = f"Complete this Python function. Reply with the whole function in a ```python block.\n\n{stub}"
        rows.append({"messages": [{"role": "user", "content": text}], "tests": tests, "entry_point": problem.name,
                     "solution": source})
    return rows


def _code_block(row: Row) -> str:
    return f"```python\n{row['solution']}```"


CODE_FUNCTION = TaskSpec(
    name="code_function",
    description="HumanEval-style: complete a documented Python function; fraction of asserts passed in the sandbox",
    generate=function_rows,
    rewards=[RewardSpec("code", 1.0)],
    source="procedural (10 function families)",
    reference=_code_block,
)


# ----------------------------------------------------------------------------------- stdin / stdout
@dataclass(frozen=True)
class StdioProblem:
    statement: str
    """`{p}` is replaced by the row's parameter."""
    program: str
    params: tuple
    inputs: Callable[[random.Random], str]


def _line(values: list[Any]) -> str:
    return " ".join(map(str, values)) + "\n"


STDIO = [
    StdioProblem("The first line holds n, the second n integers. Print their sum.",
                 "n = int(input())\nprint(sum(map(int, input().split())))", ("",),
                 lambda r: (lambda xs: f"{len(xs)}\n{_line(xs)}")([r.randint(-50, 50) for _ in range(r.randint(1, 6))])),
    StdioProblem("Read one line and print it reversed.", "print(input()[::-1])", ("",),
                 lambda r: " ".join(_words(r, r.randint(1, 4))) + "\n"),
    StdioProblem("Read integers on one line. Print the largest and the smallest, separated by a space.",
                 "xs = list(map(int, input().split()))\nprint(max(xs), min(xs))", ("",),
                 lambda r: _line([r.randint(-99, 99) for _ in range(r.randint(1, 7))])),
    StdioProblem("Read n. Print YES if n is a prime number, otherwise NO.",
                 "n = int(input())\nprint('YES' if n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1)) else 'NO')",
                 ("",), lambda r: f"{r.randint(0, 120)}\n"),
    StdioProblem("Read a sentence. Print its words in reverse order, separated by single spaces.",
                 "print(' '.join(input().split()[::-1]))", ("",),
                 lambda r: " ".join(_words(r, r.randint(1, 5))) + "\n"),
    StdioProblem("Read n. Print the numbers from 1 to n that are divisible by {p}, one per line.",
                 "n = int(input())\nfor i in range(1, n + 1):\n    if i % {p} == 0:\n        print(i)", (2, 3, 5),
                 lambda r: f"{r.randint(5, 30)}\n"),
    StdioProblem("Read two positive integers a and b on one line. Print their greatest common divisor.",
                 "import math\na, b = map(int, input().split())\nprint(math.gcd(a, b))", ("",),
                 lambda r: _line([r.randint(1, 200), r.randint(1, 200)])),
    StdioProblem("Read integers on one line. Print how many of them are even.",
                 "print(sum(int(x) % 2 == 0 for x in input().split()))", ("",),
                 lambda r: _line([r.randint(-20, 20) for _ in range(r.randint(1, 8))])),
    StdioProblem("Read n (1 <= n <= 20). Print the first n Fibonacci numbers (starting 1 1) separated by spaces.",
                 "n = int(input())\na, b, out = 1, 1, []\nfor _ in range(n):\n    out.append(a)\n    a, b = b, a + b\n"
                 "print(*out)", ("",), lambda r: f"{r.randint(1, 12)}\n"),
    StdioProblem("Read a word. Print it {p} times on one line, separated by '-'.",
                 "w = input().strip()\nprint('-'.join([w] * {p}))", (2, 3),
                 lambda r: _words(r, 1)[0] + "\n"),
]


def _run_reference(program: str, stdin: str) -> str:
    """Our own reference program (trusted) run in-process on `stdin`; returns what it printed."""
    out = io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out):
            exec(program, {"__name__": "__main__"})
    finally:
        sys.stdin = saved
    return out.getvalue()


def stdio_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("code_stdio", options, {"tests": 3})
    rng = random.Random(f"code_stdio-{seed}")
    rows = []
    for _ in range(size):
        problem = rng.choice(STDIO)
        p = rng.choice(problem.params)
        program = problem.program.format(p=p) + "\n"
        tests = []
        for _ in range(opts["tests"]):
            stdin = problem.inputs(rng)
            tests.append({"input": stdin, "output": _run_reference(program, stdin)})
        rows.append({"prompt": f"Write a Python program that reads standard input. {problem.statement.format(p=p)} "
                               "Reply with the program in a ```python block.", "tests": tests, "solution": program})
    return rows


CODE_STDIO = TaskSpec(
    name="code_stdio",
    description="stdin/stdout programming problems; fraction of input/output tests passed in the sandbox",
    generate=stdio_rows,
    rewards=[RewardSpec("code", 1.0)],
    source="procedural (10 problem families)",
    reference=_code_block,
)
