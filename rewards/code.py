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

Grading happens where the program cannot reach it (rewards/code_harness.py, docs/sandbox.md). Assert
tests run in one sandbox per row, in a *tester* process of their own; the program runs in a separate
server process, and every call the tests make into it carries plain data only (exact ints, strings,
lists, ...), rebuilt on the tester's side. A lying __eq__, patched builtins or frame walking therefore
change nothing the tests compare; a test passes only on a verdict line carrying a random nonce that only
the tester holds. Each test reloads the program afresh and has `timeout_s`. A stdin/stdout test runs the
program in its own sandbox and passes when it exits 0 and its output equals the expected one after
stripping trailing whitespace per line and at the end (compared here, in the reward process).
"""
from __future__ import annotations

import ast
import json
import re
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.base import RewardResult, reward_spec
from rewards.sandbox import Limits, RunResult, isolation, run_python
from rl.thinking.tags import parse_thinking

_FENCE = re.compile(r"```[ \t]*([^\n`]*)\n(.*?)(?:\n[ \t]*```|\Z)", re.S)
_PYTHON_LABELS = ("python", "py", "python3")
_MAX_FAILURES_SHOWN = 5
_LIMIT_SIGNALS = {128 + signal.SIGXCPU: "cpu time limit", 128 + signal.SIGXFSZ: "file size limit"}

HARNESS_FILES = {name: Path(__file__).with_name(source).read_text(encoding="utf-8")
                 for name, source in (("harness.py", "code_harness.py"), ("code_wire.py", "code_wire.py"))}
"""The grading harness (stdlib only), copied into every assert-test sandbox."""


@dataclass(frozen=True)
class TestCase:
    """One test: Python test code run after the program, or an stdin/stdout pair."""

    code: str | None = None
    """Assert statement(s) or `check(...)` call; None for an stdin/stdout test."""
    input: str = ""
    output: str = ""


# `tests` OR `test` is required (checked when the task loads). raw_completion: the runner's thinking
# split strips the answer, which would unindent a HumanEval-style body; see answer_text.
@reward_spec(required=("tests|test",), raw_completion=True)
def code_reward(completion: str, *, tests: Any = None, entry_point: str | None = None,
                prompt: Any = None, test: str | None = None, timeout_s: float = 4.0,
                total_timeout_s: float = 8.0, memory_mb: int = 1024, **row: Any) -> RewardResult:
    """Score = fraction of tests passed: the assert tests in one sandbox (each with `timeout_s`), each
    stdin/stdout test in its own sandbox with `timeout_s` of wall time.

    `total_timeout_s` bounds the whole row: tests not started by then count as failed. Keep it
    below the reward runner's per-call timeout (10 s by default), or a slow program would get a
    timeout (None, left out of the reward) instead of a low score.
    """
    cases = parse_tests(tests, test, entry_point)
    code = extract_code(answer_text(completion))
    if not code.strip():  # model output without any code: a wrong answer, not an error
        return RewardResult(0.0, {"passed": 0, "total": len(cases), "error": "no code in the completion"})
    if not _encodable(code):  # a lone surrogate: no interpreter could read it as a file
        return RewardResult(0.0, {"passed": 0, "total": len(cases), "error": "the code is not valid UTF-8 text"})
    prompt_entry = _prompt_entry(prompt, entry_point) if isinstance(prompt, str) else None
    code_prompt = prompt if prompt_entry else None
    program = build_program(code, code_prompt, prompt_entry)
    deadline = time.monotonic() + total_timeout_s
    outcomes: dict[int, dict[str, str] | None] = {}
    asserts = [i for i, case in enumerate(cases) if case.code is not None]
    if asserts:  # the prompt's helpers (trusted) run beside the tests; the entry point is the program's
        job = {"tests": [cases[i].code for i in asserts], "timeout_s": timeout_s, "prompt": code_prompt,
               "entry_point": prompt_entry or entry_point}
        outcomes.update(zip(asserts, run_assert_tests(program, job, memory_mb, total_timeout_s)))
    for index in (i for i, case in enumerate(cases) if case.code is None):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            outcomes[index] = {"reason": f"not run: row budget {total_timeout_s}s spent"}
            continue
        limits = Limits(wall_s=min(timeout_s, remaining), cpu_s=timeout_s, memory_mb=memory_mb)
        outcomes[index] = run_stdio_test(program, cases[index], limits)
    failures = [{"test": i, **outcomes[i]} for i in range(len(cases)) if outcomes[i] is not None]
    details = {"passed": len(cases) - len(failures), "total": len(cases), "isolation": isolation().mode,
               "failures": failures[:_MAX_FAILURES_SHOWN]}
    return RewardResult((len(cases) - len(failures)) / len(cases), details)


def run_stdio_test(program: str, case: TestCase, limits: Limits) -> dict[str, str] | None:
    """Run the program on the test's input in a fresh sandbox; None when its output is the expected one."""
    result = run_python(["solution.py"], files={"solution.py": program}, stdin=case.input.encode(), limits=limits)
    ok = result.returncode == 0 and normalize_output(result.stdout) == normalize_output(case.output)
    return None if ok else _failure(result, "wrong output")


def run_assert_tests(program: str, job: dict[str, Any], memory_mb: int, budget_s: float) -> list[dict[str, str] | None]:
    """Run a row's assert tests in one sandbox (code_harness.py); per test None (passed) or why it failed.

    Only a verdict line that starts with this run's nonce counts: the program never sees the nonce.
    """
    nonce = secrets.token_hex(16)
    stdin = (json.dumps({**job, "nonce": nonce}) + "\n").encode()
    result = run_python(["harness.py", "tester"], files={**HARNESS_FILES, "solution.py": program},
                        stdin=stdin, limits=Limits(wall_s=budget_s, cpu_s=budget_s, memory_mb=memory_mb))
    verdicts = parse_verdicts(result.stdout, nonce, len(job["tests"]))
    stopped_in = verdicts.index(None) if None in verdicts else None  # the test the run ended in, if any
    not_run = {"reason": f"not run: row budget {budget_s}s spent" if result.timed_out
               else "not run: the grader stopped early"}
    outcomes: list[dict[str, str] | None] = []
    for index, verdict in enumerate(verdicts):
        if index == stopped_in:
            outcomes.append(_failure(result, "the grader stopped before this test's verdict"))
        elif verdict is None:
            outcomes.append(dict(not_run))
        else:
            outcomes.append(None if verdict == "pass" else {"reason": verdict, "stderr": result.stderr_tail[-300:]})
    return outcomes


def parse_verdicts(stdout: str, nonce: str, count: int) -> list[str | None]:
    """Per test: "pass", the failure reason, or None when no verdict line for it was written."""
    verdicts: list[str | None] = [None] * count
    for line in stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == nonce and parts[1].isdigit() and int(parts[1]) < count:
            reason = json.loads(parts[3])
            verdicts[int(parts[1])] = "pass" if parts[2] == "pass" else str(reason or "failed")
    return verdicts


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


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    entry = _prompt_entry(prompt, entry_point) if prompt else None
    if entry is None:  # no code prompt to build on (e.g. a natural-language question)
        return code
    prompt_def = _def_line(prompt, entry)
    if _def_line(code, entry) is not None:  # a whole function: keep the prompt's imports and helpers
        return prompt[:prompt_def.start()] + code
    return prompt + code


def _prompt_entry(prompt: str, entry_point: str | None) -> str | None:
    """The entry point a code prompt defines (HumanEval's signature + docstring); None for other prompts."""
    entry = entry_point or _last_def(prompt)
    return entry if entry and _def_line(prompt, entry) else None


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
