"""python: math and counting questions with a sandboxed Python interpreter tool; reward on the final answer.

    task `agent_python` (env `python`): "What is the sum of all primes below 1731? ..."
    the model may call  <tool_call>{"name": "python", "arguments": {"code": "print(...)"}}</tool_call>
    and gets back the program's stdout (and stderr / exit status when it failed) as a tool message.
    A turn without a tool call is the final answer, scored by math-verify against the row's `answer`.

Each call runs in a fresh sandboxed process (rewards/sandbox/, the code reward's sandbox: namespaces,
rlimits, no network), so nothing persists between calls: the tool description says so. The questions
are generated here with their answers computed in Python, so the data is offline and unlimited.
Options: `max_n` (largest bound in the questions, default 5000).
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable

from envs.agents.tools import ToolEnv, ToolError, tool_schema
from envs.base import EnvError, StepResult, row_messages, truncate
from envs.tasks import Row, TaskSpec
from rewards.math import math_reward
from rewards.spec import RewardSpec
from rewards.sandbox import Limits, SandboxError, run_python

SYSTEM_PROMPT = ("You can run Python code with the `python` tool; each call is a fresh interpreter, so print "
                 "what you need. When you know the answer, reply without a tool call and put the final "
                 "answer in \\boxed{}.")
PYTHON_TOOL = tool_schema("python", "Run a Python 3 program in a fresh sandbox (no network, no files kept) "
                          "and return what it printed.", {"code": "string"})


class PythonEnv(ToolEnv):
    max_turns = 4
    tool_timeout_s = 8.0
    run_limits = Limits(wall_s=5.0, memory_mb=512)
    """Limits of one program run (the tool's own time limit, tool_timeout_s, is a backstop above it)."""

    def reset(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        self.answer = row["answer"]
        self.tools = [PYTHON_TOOL]
        return row_messages(row)

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {"python": self.python}

    def python(self, code: str) -> str:
        if not isinstance(code, str) or not code.strip():
            raise ToolError("python needs `code`, a non-empty string of Python source")
        try:
            result = run_python(["main.py"], files={"main.py": code}, limits=self.run_limits)
        except SandboxError as exc:  # the sandbox broke, not the model's program
            raise EnvError(f"python tool: {exc}") from exc
        if result.timed_out:
            raise ToolError(f"the program ran past {self.run_limits.wall_s:g} s and was killed")
        out = truncate(result.stdout, self.max_output_chars // 2)
        if result.returncode != 0:  # the model's program failed: show it the end of its traceback
            return f"{out}\n[exit status {result.returncode}]\n{result.stderr_tail[-800:]}".strip()
        return out if out.strip() else "[the program printed nothing]"

    def finish(self, answer: str) -> StepResult:
        score = math_reward(answer, answer=self.answer)
        return StepResult([], done=True, reward=score.score, success=score.score == 1.0, info=score.details)


# ----------------------------------------------------------------------------------------- the task
def _primes_below(n: int) -> list[int]:
    sieve = bytearray([1]) * n
    sieve[:2] = b"\x00\x00"
    for p in range(2, int(n ** 0.5) + 1):
        if sieve[p]:
            sieve[p * p::p] = bytearray(len(sieve[p * p::p]))
    return [i for i in range(n) if sieve[i]]


def _question(rng: random.Random, max_n: int) -> tuple[str, int]:
    kind = rng.randrange(5)
    if kind == 0:
        n = rng.randint(100, max_n)
        return f"What is the sum of all prime numbers below {n}?", sum(_primes_below(n))
    if kind == 1:
        n, a = rng.randint(100, max_n), rng.randint(3, 9)
        b = rng.choice([k for k in range(10, 20) if k % a])  # not a multiple of a: both conditions matter
        count = sum(1 for i in range(1, n + 1) if i % a == 0 or i % b == 0)
        return f"How many integers from 1 to {n} are divisible by {a} or by {b}?", count
    if kind == 2:
        a, b, m = rng.randint(2, 99), rng.randint(50, 999), rng.randint(7, 997)
        return f"What is the remainder when {a}^{b} is divided by {m}?", pow(a, b, m)
    if kind == 3:
        k, m = rng.randint(30, 300), rng.randint(10, 9999)
        x, y = 1, 1  # F(1) = F(2) = 1
        for _ in range(k - 2):
            x, y = y, x + y
        return f"With F(1) = F(2) = 1, what is the {k}-th Fibonacci number F({k}) modulo {m}?", y % m
    n = rng.randint(20, 120)
    return f"What is the sum of the digits of {n}! ({n} factorial)?", sum(int(d) for d in str(math.factorial(n)))


def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    unknown = set(options) - {"max_n"}
    max_n = int(options.get("max_n", 5000))
    if unknown or max_n < 100:
        raise ValueError(f"agent_python options: max_n >= 100 only (got {options})")
    rng = random.Random(f"agent-python-{seed}")
    rows = []
    for _ in range(size):
        question, answer = _question(rng, max_n)
        rows.append({"prompt": question, "answer": str(answer)})
    return rows


TASK = TaskSpec(
    name="agent_python",
    description="math/counting questions with a sandboxed Python tool; math-verify on the final answer",
    generate=generate,
    rewards=[RewardSpec("env", 1.0)],
    system_prompt=SYSTEM_PROMPT,
    source="procedural",
    env="python",
)
