"""The code reward and its sandbox: real HumanEval problems, stdin/stdout judging, and attacks.

Every attack (infinite loop, early exit, fork bomb, memory bomb, reading or deleting host files,
huge files, network, killing the parent) must score 0 and leave the host as it was. Checks that
need an isolation layer this machine lacks are skipped with the reason.
Run: .venv/bin/python -m pytest tests/test_reward_code.py   (~15 s on 2 cores)
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time

import pytest

from rewards.code import build_program, code_reward, extract_code, normalize_output, parse_tests
from rewards.registry import get_reward
from rewards import sandbox
from rewards.sandbox import Limits, isolation, run_python

# --- HumanEval/0 and HumanEval/2, verbatim (prompt, canonical_solution, test, entry_point) --------
HE0_PROMPT = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
    True
    """
'''
HE0_SOLUTION = '''    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False
'''
HE0_TEST = '''

METADATA = {
    'author': 'jt',
    'dataset': 'test'
}


def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False
    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False

'''
HE2_PROMPT = '''

def truncate_number(number: float) -> float:
    """ Given a positive floating point number, it can be decomposed into
    and integer part (largest integer smaller than given number) and decimals
    (leftover part always smaller than 1).

    Return the decimal part of the number.
    >>> truncate_number(3.5)
    0.5
    """
'''
HE2_SOLUTION = "    return number % 1.0\n"
HE2_TEST = '''

METADATA = {
    'author': 'jt',
    'dataset': 'test'
}


def check(candidate):
    assert candidate(3.5) == 0.5
    assert abs(candidate(1.33) - 0.33) < 1e-6
    assert abs(candidate(123.456) - 0.456) < 1e-6
'''
HE0 = {"prompt": HE0_PROMPT, "test": HE0_TEST, "entry_point": "has_close_elements", "task_id": "HumanEval/0"}
HE2 = {"prompt": HE2_PROMPT, "test": HE2_TEST, "entry_point": "truncate_number", "task_id": "HumanEval/2"}

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
FAST = {"timeout_s": 1.0}


def _namespaces() -> bool:
    return isolation().mode == "namespaces"


# --- Positive cases -----------------------------------------------------------------------------

def test_humaneval_canonical_solutions_score_one():
    for row, solution in ((HE0, HE0_SOLUTION), (HE2, HE2_SOLUTION)):
        result = code_reward(solution, **row)  # body only: the prompt is prepended
        assert result.score == 1.0, result.details
        assert result.details["total"] == 1  # check(candidate) counts as one test


def test_humaneval_wrong_solution_scores_zero():
    result = code_reward("    return number // 1.0\n", **HE2)
    assert result.score == 0.0
    assert "AssertionError" in result.details["failures"][0]["stderr"]


def test_humaneval_full_function_in_a_fence_keeps_prompt_imports():
    # Uses List without importing it: the prompt's `from typing import List` must be kept.
    completion = ("Here you go:\n```python\n"
                  "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
                  "    s = sorted(numbers)\n    return any(b - a < threshold for a, b in zip(s, s[1:]))\n```\n"
                  "It sorts first.")
    assert code_reward(completion, **HE0).score == 1.0


def test_half_right_scores_half_and_asserts_run_separately():
    completion = "def add(a, b):\n    return a + b if a > 0 else 7\n"
    result = code_reward(completion, tests=ADD_TESTS)
    assert result.score == 0.5
    assert result.details["passed"] == 1 and result.details["failures"][0]["test"] == 1


def test_assert_tests_may_use_candidate_name():
    row = {"prompt": HE2_PROMPT, "entry_point": "truncate_number"}
    assert code_reward(HE2_SOLUTION, tests=["assert candidate(2.25) == 0.25"], **row).score == 1.0


def test_test_source_string_gives_one_test_per_assert():
    tests = "import math\nassert math.isclose(add(0.1, 0.2), 0.3)\nassert add(2, 2) == 5\n"
    result = code_reward("def add(a, b):\n    return a + b\n", tests=tests)
    assert (result.score, result.details["total"]) == (0.5, 2)


def test_stdin_stdout_right_and_wrong():
    tests = [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6"}]
    right = "a, b = map(int, input().split())\nprint(a + b, '  ')\n"  # trailing spaces are ignored
    assert code_reward(right, tests=tests).score == 1.0
    assert code_reward("print(0)", tests=tests).score == 0.0
    half = "a, b = map(int, input().split())\nprint(a + b if a < 5 else a - b)\n"
    assert code_reward(half, tests=tests).score == 0.5


def test_stdin_stdout_program_must_exit_cleanly_and_runs_as_main():
    tests = [{"input": "", "output": "hi"}]
    assert code_reward("if __name__ == '__main__':\n    print('hi')\n", tests=tests).score == 1.0
    assert code_reward("print('hi')\nraise SystemExit(3)\n", tests=tests).score == 0.0


def test_apps_style_and_json_encoded_tests():
    apps = '{"inputs": ["2\\n", "5\\n"], "outputs": ["4\\n", "25\\n"]}'
    assert code_reward("n = int(input())\nprint(n * n)", tests=apps).score == 1.0


def test_no_code_and_syntax_errors_score_zero():
    assert code_reward("I cannot solve this.\n```text\nnope\n```", tests=ADD_TESTS).score == 0.0
    assert code_reward("def add(a, b) return a + b", tests=ADD_TESTS).score == 0.0


# --- Pure helpers -------------------------------------------------------------------------------

def test_extract_code_prefers_longest_python_fence_and_accepts_unterminated():
    text = "```python\nx = 1\n```\nthen\n```python\ny = 2\nz = 3\n```\n```bash\nrm -rf /\n```"
    assert extract_code(text) == "y = 2\nz = 3\n"
    assert extract_code("```py\nprint(1)\nprint(2)") == "print(1)\nprint(2)\n"  # generation cut off
    assert extract_code("```\nprint(1)\n```") == "print(1)\n"
    assert extract_code("```cpp\nint main() {}\n```") == ""
    assert extract_code("    return 1\n") == "    return 1\n"  # a body keeps its indentation


def test_build_program_body_definition_and_natural_language_prompt():
    assert build_program(HE2_SOLUTION, HE2_PROMPT, "truncate_number") == HE2_PROMPT + HE2_SOLUTION
    full = "def has_close_elements(numbers, threshold):\n    return False\n"
    assert build_program(full, HE0_PROMPT, None) == "from typing import List\n\n\n" + full
    assert build_program("print(1)\n", "Write a program that prints 1.", None) == "print(1)\n"


def test_normalize_output():
    assert normalize_output("1 2  \r\n3\n\n\n") == normalize_output("1 2\n3") == "1 2\n3"
    assert normalize_output(" 1") != normalize_output("1")  # leading whitespace matters


def test_builtin_name_resolves_and_rows_need_tests():
    assert get_reward("code") is code_reward
    assert get_reward("code", timeout_s=1.0)(HE2_SOLUTION, **HE2).score == 1.0


def test_malformed_rows_raise_clear_errors():
    with pytest.raises(ValueError, match="'tests'.*'test'"):
        code_reward("print(1)")
    with pytest.raises(ValueError, match="entry_point"):
        parse_tests(None, HE2_TEST, None)
    with pytest.raises(ValueError, match="no tests"):
        parse_tests([], None, None)
    with pytest.raises(ValueError, match="a test must be"):
        parse_tests([{"stdin": "1"}], None, None)


# --- Attacks: each scores 0 and harms nothing ---------------------------------------------------

def test_infinite_loop_times_out_and_row_time_is_bounded():
    start = time.monotonic()
    result = code_reward("def add(a, b):\n    while True:\n        pass\n", tests=ADD_TESTS * 3,
                         timeout_s=1.0, total_timeout_s=1.5)
    elapsed = time.monotonic() - start
    assert result.score == 0.0
    assert elapsed < 4.0, elapsed
    reasons = [f["reason"] for f in result.details["failures"]]
    assert reasons[0] in ("timeout", "cpu time limit") and any(r.startswith("not run") for r in reasons)


@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)",
                                       "raise SystemExit", "import os; os.kill(os.getpid(), 9)"])
def test_exiting_before_the_tests_scores_zero(exit_call):
    completion = f"def add(a, b):\n    return 0\n{exit_call}\n"
    result = code_reward(completion, tests=ADD_TESTS, **FAST)
    assert result.score == 0.0, result.details


def test_printing_a_guessed_marker_does_not_pass():
    completion = "import sys\nprint('OK'); print('PASS'); print('0' * 32)\nsys.exit(0)\n"
    assert code_reward(completion, tests=ADD_TESTS, **FAST).score == 0.0


def _processes_in_pid_namespace(ns: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == ns:
                found.append(int(pid))
        except FileNotFoundError:  # exited while we looked
            continue
        except PermissionError:  # e.g. this VM's own init: not a sandbox process
            continue
    return found


def test_fork_bomb_is_capped_and_fully_cleaned_up():
    bomb = textwrap.dedent("""
        import os, time
        print(os.readlink("/proc/self/ns/pid"), flush=True)
        children = 0
        for _ in range(200):
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
            except OSError:
                pass
        print(children, flush=True)
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    limits = Limits(wall_s=2.0, max_processes=16)
    result = run_python(["solution.py"], files={"solution.py": bomb}, limits=limits)
    assert result.timed_out
    ns, children = result.stdout.split()[:2]
    assert int(children) < limits.max_processes  # RLIMIT_NPROC held (as root it needs the private uid)
    if _namespaces():
        assert _processes_in_pid_namespace(ns) == []  # every sleeping child died with PID 1
    assert code_reward("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n",
                       tests=ADD_TESTS[:1], **FAST).score == 0.0


def test_memory_bomb_fails_but_normal_memory_use_works():
    bomb = "x = bytearray(8 << 30)\ndef add(a, b): return a + b\n"
    assert code_reward(bomb, tests=ADD_TESTS, **FAST).score == 0.0
    grower = "x = []\nwhile True:\n    x.append(bytearray(50 << 20))\n"
    assert code_reward(grower, tests=ADD_TESTS[:1], **FAST).score == 0.0
    modest = "x = bytearray(100 << 20)\ndef add(a, b): return a + b\n"
    assert code_reward(modest, tests=ADD_TESTS, **FAST).score == 1.0


def test_memory_of_the_whole_process_tree_is_capped():
    if isolation().memory_cgroup is None:
        pytest.skip("no cgroup-v1 memory controller we may use: memory is capped per process only")
    program = textwrap.dedent("""
        import os, time
        children = []
        for _ in range(6):
            pid = os.fork()
            if pid == 0:
                block = b"x" * (400 << 20)  # 400 MB touched, under RLIMIT_AS; 2.4 GB in all
                time.sleep(1)
                os._exit(0)
            children.append(pid)
        print(sum(os.waitpid(pid, 0)[1] == 0 for pid in children))
    """)
    result = run_python(["-c", program], files={}, limits=Limits(wall_s=10.0, memory_mb=512))
    survivors = int(result.stdout) if result.returncode == 0 else 0
    assert survivors < 6, "six 400 MB children all fit: the tree's memory is not capped"


@pytest.fixture
def host_dirs(tmp_path):
    """Directories of the host: one under /tmp and, where it exists, one under /var/tmp (which the
    sandbox sees, read-only, unlike /tmp); mode 0755, so only a file's own mode protects it."""
    dirs = [str(tmp_path)]
    if os.access("/var/tmp", os.W_OK):
        dirs.append(tempfile.mkdtemp(dir="/var/tmp"))
    for directory in dirs:
        os.chmod(directory, 0o755)
    yield dirs
    shutil.rmtree(dirs[-1]) if len(dirs) > 1 else None


def test_cannot_read_a_private_host_file(host_dirs):
    if isolation().as_root:
        targets = host_dirs  # a private uid cannot read root's 0600 files anywhere
    elif _namespaces():
        targets = host_dirs[:1]  # same uid: only hiding /tmp protects (docs/sandbox.md)
    else:
        pytest.skip("basic mode as non-root: the program runs as our own user and can read our files")
    for directory in targets:
        secret_path = os.path.join(directory, "secret.txt")
        with open(secret_path, "w") as f:
            f.write("hunter2")
        os.chmod(secret_path, 0o600)
        completion = f"try:\n    SECRET = open({secret_path!r}).read()\nexcept OSError:\n    SECRET = None\n"
        result = code_reward(completion, tests=["assert SECRET == 'hunter2'"], **FAST)
        assert result.score == 0.0, f"the sandbox read {secret_path}"
    # The same program does read a world-readable file, so the zeros above are the sandbox's doing.
    control = "try:\n    SECRET = open('/etc/passwd').read()\nexcept OSError:\n    SECRET = None\n"
    assert code_reward(control, tests=["assert 'root' in SECRET"], **FAST).score == 1.0


def test_cannot_delete_or_overwrite_host_files(host_dirs):
    if not _namespaces() and not isolation().as_root:
        pytest.skip("basic mode as non-root: nothing stops the program from deleting our files")
    # With read-only mounts even world-writable files survive; a private uid alone protects only
    # files other users may not write (basic mode as root).
    file_mode, dir_mode = (0o666, 0o777) if _namespaces() else (0o644, 0o755)
    victims = []
    for directory in host_dirs:
        os.chmod(directory, dir_mode)
        path = os.path.join(directory, "keep.txt")
        with open(path, "w") as f:
            f.write("precious")
        os.chmod(path, file_mode)
        victims.append(path)
    completion = textwrap.dedent(f"""
        import os, shutil
        DONE = 0
        for path in {victims!r}:
            for attack in (lambda: open(path, "w").write("pwned"), lambda: os.remove(path),
                           lambda: shutil.rmtree(os.path.dirname(path))):
                try:
                    attack(); DONE += 1
                except OSError:
                    pass
    """)
    result = code_reward(completion, tests=["assert DONE > 0"], **FAST)
    assert result.score == 0.0, result.details
    for path in victims:
        with open(path) as f:
            assert f.read() == "precious"


def test_huge_files_and_output_floods_are_capped():
    completion = textwrap.dedent("""
        import os
        for name in ("big.bin", "/tmp/big.bin"):
            with open(name, "wb") as f:
                for _ in range(100):
                    f.write(b"x" * (1 << 20))
        WROTE = os.path.getsize("big.bin")
    """)
    result = code_reward(completion, tests=["assert WROTE >= 100 << 20"], **FAST)
    assert result.score == 0.0
    failure = result.details["failures"][0]
    assert failure["reason"] == "file size limit" or "File too large" in failure["stderr"], failure
    flood = run_python(["-c", "while True: print('y' * 10000)"], files={},
                       limits=Limits(wall_s=2.0, max_file_mb=1))
    assert flood.returncode != 0 and not flood.timed_out
    assert 0 < len(flood.stdout) <= 1 << 20


def test_network_connect_to_host_listener_fails():
    if not _namespaces():
        pytest.skip("no network namespace here (basic mode): the sandbox cannot block the network")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        completion = textwrap.dedent(f"""
            import socket
import subprocess
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=0.5).sendall(b"leak")
                CONNECTED = True
            except OSError:
                CONNECTED = False
        """)
        result = code_reward(completion, tests=["assert CONNECTED"], **FAST)
        assert result.score == 0.0
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
        # Control: the listener is reachable from the host, so the 0 above is the sandbox's doing.
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            time.sleep(0.05)
            listener.accept()[0].close()


def test_killing_the_parent_or_everyone_harms_nothing():
    if not (_namespaces() or isolation().as_root):
        pytest.skip("basic mode as non-root: the program runs as our uid and can kill our processes")
    sentinel = subprocess.Popen(["sleep", "30"])  # a host process the program tries to kill
    try:
        completion = textwrap.dedent(f"""
            import os, signal
            for target in (os.getppid(), {os.getpid()}, {sentinel.pid}, 1, 0, -1):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
        """)
        result = code_reward(completion, tests=ADD_TESTS, **FAST)
        assert result.score == 0.0
        assert sentinel.poll() is None, "the sandbox killed a host process"
    finally:
        sentinel.kill()
        sentinel.wait()
    # We are alive (this line runs), and the sandbox still works afterwards:
    assert code_reward("def add(a, b):\n    return a + b\n", tests=ADD_TESTS, **FAST).score == 1.0


def test_leftovers_of_killed_runs_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old, fresh, other = (tmp_path / name for name in ("rl-sandbox-old", "rl-sandbox-fresh", "unrelated"))
    for directory in (old, fresh, other):
        (directory / "sub").mkdir(parents=True)
        (directory / "sub" / "stdout").write_text("x")
    for directory in (old, other):
        os.utime(directory, (time.time() - 7200, time.time() - 7200))
    sandbox._sweep_leftovers(None)
    assert not old.exists() and fresh.exists() and other.exists()


def test_body_only_completion_keeps_its_indentation_after_thinking_is_removed():
    """HumanEval completions are function bodies: stripping the answer would unindent the first line."""
    from rewards.base import wants_raw_completion
    from rewards.code import answer_text

    fn = get_reward("code")
    assert wants_raw_completion(fn)  # the runner must not strip the completion for this reward
    assert answer_text("<think>\nplan\n</think>\n\n    return a + b\n") == "    return a + b"
    assert answer_text("<think>\nstill thinking") == ""
    row = {"prompt": 'def add(a, b):\n    """Sum."""\n', "entry_point": "add", "tests": ["assert add(1, 2) == 3"]}
    assert fn("<think>\nplan\n</think>\n\n    return a + b\n", **row).score == 1.0
    assert fn("<think>\nplan\n</think>\n\n    return a - b\n", **row).score == 0.0
    assert fn("<think>\nplan, no answer yet", **row).score == 0.0
