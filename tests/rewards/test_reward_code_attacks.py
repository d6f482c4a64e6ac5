"""The code sandbox under attack: every program below (infinite loop, early exit, fork bomb, memory bomb,
reading or deleting host files, huge files, network, killing the parent) must score 0 and leave the
host as it was. Checks that need an isolation layer this machine lacks are skipped with the reason.
Run: .venv/bin/python -m pytest tests/rewards/test_reward_code_attacks.py   (~15 s on 2 cores)
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

from rewards.code import code_reward
from rewards.sandbox import Limits, isolation, run_python
from rewards.sandbox.isolation import sweep_leftovers

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
FAST = {"timeout_s": 1.0}


def _namespaces() -> bool:
    """Namespaces of its own: bwrap mode, or the launcher's namespaces mode."""
    return isolation().mode in ("bwrap", "namespaces")


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
    # The same program does read a world-readable file it may see (in bwrap mode only the interpreter's
    # files are there), so the zeros above are the sandbox's doing.
    control = "import os\ntry:\n    SECRET = open(os.__file__).read()\nexcept OSError:\n    SECRET = None\n"
    assert code_reward(control, tests=["assert 'def getenv' in SECRET"], **FAST).score == 1.0


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
    assert failure["reason"] == "file size limit" or "File too large" in failure["reason"] + failure.get("stderr", ""), \
        failure
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
    sweep_leftovers(None)
    assert not old.exists() and fresh.exists() and other.exists()
