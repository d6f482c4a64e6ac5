"""Code execution reward: the fraction of a row's tests that the completion's program passes.

    from rewards.code import code_reward
    code_reward("```python\\ndef add(a, b):\\n    return a + b\\n```",
                tests=["assert add(1, 2) == 3", "assert add(0, 0) == 1"]).score        # -> 0.5
    code_reward("print(sum(map(int, input().split())))",
                tests=[{"input": "1 2\\n", "output": "3\\n"}]).score                    # -> 1.0

Test formats (row columns):
- `tests`: a list of assert statements (HumanEval/MBPP style; each runs separately, after the
  program, with `candidate` bound to `entry_point` when one is given);
- `tests`: a list of {"input": str, "output": str} (stdin/stdout judging; APPS-style
  {"inputs": [...], "outputs": [...]} and JSON-encoded strings of either are accepted too);
- `tests` as one string of test code: each top-level assert is one test, the other statements
  (imports, helpers) are set-up run before each;
- `test` (HumanEval): source defining `check(candidate)`, plus `entry_point`; `check(entry_point)`
  is one test.

The program: the longest ```python fenced block of the completion (an unterminated fence counts:
generation may stop mid-block), else the whole completion. When the prompt is code that defines
the entry point (HumanEval's signature + docstring), a completion that is only the body gets the
prompt prepended (HumanEval's harness: program = prompt + completion), and a completion that
defines the function itself gets what the prompt has before the def (imports, helpers).

Each test runs in its own sandboxed process (rewards/sandbox/, docs/sandbox.md). An assert test
passes only when a random nonce is printed after the assert ran: exiting early (`sys.exit(0)`,
`os._exit(0)`) does not pass. A stdin/stdout test passes when the program exits 0 and its output
equals the expected one after stripping trailing whitespace per line and at the end.
"""
from __future__ import annotations

import ast
import json
import re
import secrets
import signal
import time
from dataclasses import dataclass
from typing import Any

from rewards.base import RewardResult, reward_spec
from rewards.sandbox import Limits, RunResult, isolation, run_python
from rl.thinking.tags import parse_thinking

_FENCE = re.compile(r"```[ \t]*([^\n`]*)\n(.*?)(?:\n[ \t]*```|\Z)", re.S)
_PYTHON_LABELS = ("python", "py", "python3")
_MAX_FAILURES_SHOWN = 5
_LIMIT_SIGNALS = {128 + signal.SIGXCPU: "cpu time limit", 128 + signal.SIGXFSZ: "file size limit"}

# Runs inside the sandbox for assert/check tests. The job (program, test, nonce) arrives on stdin,
# never in a file the program could rewrite, and the nonce is printed only after the test passed.
_RUNNER = """\
import json, os, sys
def _run(job=json.loads(sys.stdin.readline()), write=os.write):
    namespace = {"__name__": "__candidate__", "__builtins__": __builtins__}
    exec(compile(job["program"], "solution.py", "exec"), namespace)
    exec(compile(job["test"], "test.py", "exec"), namespace)
    write(1, ("\\n" + job["nonce"] + "\\n").encode())
_run()
"""


@dataclass(frozen=True)
class TestCase:
    """One test: Python test code run after the program, or an stdin/stdout pair."""

    code: str | None = None
    """Assert statement(s) or `check(...)` call; None for an stdin/stdout test."""
    input: str = ""
    output: str = ""


# `tests` OR `test` is required: checked in the function, with a clear message. raw_completion: the
# runner's thinking split strips the answer, which would unindent a HumanEval-style body; see answer_text.
@reward_spec(raw_completion=True)
def code_reward(completion: str, *, tests: Any = None, entry_point: str | None = None,
                prompt: Any = None, test: str | None = None, timeout_s: float = 4.0,
                total_timeout_s: float = 8.0, memory_mb: int = 1024, **row: Any) -> RewardResult:
    """Score = fraction of tests passed; each test in its own sandbox with `timeout_s` of wall time.

    `total_timeout_s` bounds the whole row: tests not started by then count as failed. Keep it
    below the reward runner's per-call timeout (10 s by default), or a slow program would get a
    timeout (None, left out of the reward) instead of a low score.
    """
    cases = parse_tests(tests, test, entry_point)
    code = extract_code(answer_text(completion))
    if not code.strip():  # model output without any code: a wrong answer, not an error
        return RewardResult(0.0, {"passed": 0, "total": len(cases), "error": "no code in the completion"})
    program = build_program(code, prompt if isinstance(prompt, str) else None, entry_point)
    deadline = time.monotonic() + total_timeout_s
    passed, failures = 0, []
    for index, case in enumerate(cases):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failures.append({"test": index, "reason": f"not run: row budget {total_timeout_s}s spent"})
            continue
        limits = Limits(wall_s=min(timeout_s, remaining), cpu_s=timeout_s, memory_mb=memory_mb)
        reason = run_case(program, case, limits)
        if reason is None:
            passed += 1
        else:
            failures.append({"test": index, **reason})
    details = {"passed": passed, "total": len(cases), "isolation": isolation().mode,
               "failures": failures[:_MAX_FAILURES_SHOWN]}
    return RewardResult(passed / len(cases), details)


def run_case(program: str, case: TestCase, limits: Limits) -> dict[str, str] | None:
    """Run one test in a fresh sandbox; None when it passed, else {"reason": ..., "stderr": ...}."""
    if case.code is None:
        result = run_python(["solution.py"], files={"solution.py": program},
                            stdin=case.input.encode(), limits=limits)
        ok = result.returncode == 0 and normalize_output(result.stdout) == normalize_output(case.output)
        return None if ok else _failure(result, "wrong output")
    nonce = secrets.token_hex(16)
    job = json.dumps({"program": program, "test": case.code, "nonce": nonce}) + "\n"
    result = run_python(["-c", _RUNNER], files={}, stdin=job.encode(), limits=limits)
    # The nonce must be a whole line: the program cannot know it, so it cannot fake a pass.
    ok = result.returncode == 0 and nonce in result.stdout.splitlines()
    return None if ok else _failure(result, "the test did not run to the end (exited early?)")


def _failure(result: RunResult, wrong: str) -> dict[str, str]:
    if result.timed_out:
        reason = "timeout"
    elif result.returncode in _LIMIT_SIGNALS:
        reason = _LIMIT_SIGNALS[result.returncode]
    elif result.returncode != 0:
        reason = f"exit status {result.returncode}"
    else:
        reason = wrong
    return {"reason": reason, "stderr": result.stderr_tail[-300:]}


def normalize_output(text: str) -> str:
    """What judges compare: trailing whitespace stripped per line and at the end; \\r\\n as \\n."""
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def answer_text(completion: str) -> str:
    """The completion without its think block (rl/thinking/tags.py rules), keeping the answer's indentation.

    `split_thinking` strips the answer, so a HumanEval-style body ("    return a + b", joined to the
    prompt's signature) would lose the indentation of its first line and become a syntax error.
    """
    answer = parse_thinking(completion).answer
    if not answer:  # an unclosed think block (or an empty answer): no code
        return ""
    before = completion.rstrip()[:-len(answer)]  # the answer is the stripped tail of the completion
    return before[len(before.rstrip(" \t")):] + answer


def extract_code(completion: str) -> str:
    """The longest ```python block (ties: the last); else the longest unlabelled block; else all.

    Fenced blocks in another language only mean there is no Python code: "" is returned.
    """
    blocks = _FENCE.findall(completion)
    if not blocks:
        return completion
    for wanted in (lambda label: label in _PYTHON_LABELS, lambda label: label == ""):
        chosen = [body for label, body in blocks if wanted(label.strip().lower())]
        if chosen:
            return max(reversed(chosen), key=len) + "\n"  # reversed: max keeps the first = last block
    return ""


def build_program(code: str, prompt: str | None, entry_point: str | None) -> str:
    """Join the prompt and the completion's code the way HumanEval's harness does (module docstring)."""
    entry = entry_point or (_last_def(prompt) if prompt else None)
    prompt_def = _def_line(prompt, entry) if prompt and entry else None
    if prompt_def is None:  # no code prompt to build on (e.g. a natural-language question)
        return code
    if _def_line(code, entry) is not None:  # a whole function: keep the prompt's imports and helpers
        return prompt[:prompt_def.start()] + code
    return prompt + code


def _def_line(source: str, name: str) -> re.Match | None:
    return re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", source, re.M)


def _last_def(source: str) -> str | None:
    names = re.findall(r"^def[ \t]+(\w+)[ \t]*\(", source, re.M)
    return names[-1] if names else None


def parse_tests(tests: Any, test: str | None, entry_point: str | None) -> list[TestCase]:
    """Turn the row's `tests` / `test` columns into TestCases; a malformed row raises ValueError."""
    if tests is None and test is None:
        raise ValueError("reward 'code' needs row field 'tests' (asserts or stdin/stdout pairs) or "
                         "'test' (HumanEval's check(candidate) source, with 'entry_point')")
    if tests is None:
        tests = test
    if isinstance(tests, str) and tests.lstrip()[:1] in ("[", "{"):
        tests = json.loads(tests)  # a JSON column (Parquet/CSV exports store lists as strings)
    if isinstance(tests, dict) and {"inputs", "outputs"} <= tests.keys():
        tests = [{"input": i, "output": o} for i, o in zip(tests["inputs"], tests["outputs"], strict=True)]
    if isinstance(tests, str):
        cases = _cases_from_source(tests, entry_point)
    elif isinstance(tests, list):
        cases = [_case(item, entry_point) for item in tests]
    else:
        raise ValueError(f"reward 'code': tests must be a list or a string, got {type(tests).__name__}")
    if not cases:
        raise ValueError("reward 'code': the row has no tests; a reward over zero tests is meaningless")
    return cases


def _case(item: Any, entry_point: str | None) -> TestCase:
    if isinstance(item, str):
        return TestCase(code=_bind_candidate(entry_point) + item)
    if isinstance(item, dict) and isinstance(item.get("input"), str) and isinstance(item.get("output"), str):
        return TestCase(input=item["input"], output=item["output"])
    raise ValueError(f"reward 'code': a test must be an assert string or {{'input': str, 'output': str}}, "
                     f"got {item!r:.200}")


def _cases_from_source(source: str, entry_point: str | None) -> list[TestCase]:
    """HumanEval's `check` source is one test; other test code gives one test per top-level assert."""
    if re.search(r"^def[ \t]+check[ \t]*\(", source, re.M):
        if not entry_point:
            raise ValueError("reward 'code': a test defining check(candidate) needs the row's 'entry_point'")
        return [TestCase(code=f"{source}\ncheck({entry_point})\n")]
    module = ast.parse(source)  # dataset code, trusted: a syntax error here is a dataset bug
    setup = [node for node in module.body if not isinstance(node, ast.Assert)]
    prefix = _bind_candidate(entry_point) + "".join(ast.unparse(node) + "\n" for node in setup)
    return [TestCase(code=prefix + ast.unparse(node)) for node in module.body if isinstance(node, ast.Assert)]


def _bind_candidate(entry_point: str | None) -> str:
    """Tests written against `candidate` (HumanEval's convention) see the entry point under that name."""
    return f"candidate = {entry_point}\n" if entry_point and entry_point.isidentifier() else ""
