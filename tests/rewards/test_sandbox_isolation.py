"""The code sandbox's bwrap mode: nothing of the host to read or connect to, the seccomp deny list, the
one-core CPU quota, and the loud fallback when bwrap is missing. The attacks every mode must survive
are in tests/rewards/test_reward_code_attacks.py.
Run: .venv/bin/python -m pytest tests/rewards/test_sandbox_isolation.py   (~10 s on 2 cores)
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import tempfile
import textwrap

import pytest

from rewards.sandbox import Limits, SandboxError, bwrap, isolation, run_python
from rewards.sandbox.isolation import ISOLATION_ENV

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def bwrap_mode():
    if isolation().mode != "bwrap":
        why = (f"{ISOLATION_ENV}={os.environ[ISOLATION_ENV]}" if os.environ.get(ISOLATION_ENV, "auto") != "auto"
               else "bubblewrap missing or no user namespaces: see the warning it logged")
        pytest.skip(f"the sandbox runs in {isolation().mode} mode here ({why})")


def _run(program: str, iso=None, **limits) -> dict:
    """Run `program` in the sandbox (`iso`: another mode than the chosen one); it prints one JSON object."""
    result = run_python(["-c", textwrap.dedent(program)], files={}, iso=iso,
                        limits=Limits(wall_s=limits.pop("wall_s", 5.0), **limits))
    assert result.returncode == 0, result
    return json.loads(result.stdout)


# --- (a) nothing of the host's filesystem to read -------------------------------------------------

READ_PATHS = """
    import json
    seen = {}
    for path in PATHS:
        try:
            with open(path) as f:
                seen[path] = f.read()
        except OSError as exc:
            seen[path] = type(exc).__name__
    print(json.dumps(seen))
"""


def test_host_files_are_not_there_even_when_world_readable(bwrap_mode, tmp_path):
    in_tmp = tmp_path / "public.txt"  # the host's /tmp
    with tempfile.NamedTemporaryFile("w", dir=os.path.join(REPO, "tests"), suffix=".txt") as in_repo:
        for path in (in_tmp, in_repo.name):
            with open(path, "w") as f:
                f.write("world-readable")
            os.chmod(path, 0o644)
        os.chmod(tmp_path, 0o755)
        paths = [str(in_tmp), in_repo.name, os.path.join(REPO, "tests", "data", "flaky_rewards.py"),
                 os.path.join(REPO, "pyproject.toml"), "/etc/passwd", "/etc/hostname"]
        for path in paths:  # control: each is readable from the host
            assert os.access(path, os.R_OK) and os.stat(path).st_mode & 0o004, path
        seen = _run(f"PATHS = {paths!r}\n" + textwrap.dedent(READ_PATHS))
    for path in paths:
        assert seen[path] == "FileNotFoundError", f"the sandbox sees {path}: {seen[path]!r}"
    listing = _run("""
        import json, os
        print(json.dumps({path: os.path.exists(path) for path in
                          ("/root", "/home", "/work", "/etc", "/var", "/run", "/sys", "/opt", "/srv", "/mnt")}
                         | {"/": sorted(os.listdir("/")), "/tmp": sorted(os.listdir("/tmp"))}))
    """)
    assert not any(listing[path] for path in listing if path not in ("/", "/tmp")), listing
    assert set(listing["/"]) <= {"usr", "lib", "lib64", "bin", "tmp", "dev", "proc"}, listing["/"]
    assert listing["/tmp"] == ["work"]  # a private tmpfs: none of the host's /tmp


def test_the_interpreter_and_its_stdlib_are_read_only(bwrap_mode):
    seen = _run("""
        import json, os, sys
        out = {}
        for path in (sys.executable, os.__file__, os.path.join(os.path.dirname(os.__file__), "new.py")):
            try:
                open(path, "a").close()
                out[path] = "written"
            except OSError as exc:
                out[path] = type(exc).__name__
        print(json.dumps(out))
    """)
    assert set(seen.values()) <= {"OSError", "PermissionError"}, seen  # EROFS or EACCES, never written


# --- (b) nothing of the host to connect to ---------------------------------------------------------

def test_no_host_socket_is_connectable(bwrap_mode, tmp_path):
    os.chmod(tmp_path, 0o755)
    unix_path = str(tmp_path / "open.sock")
    with socket.socket(socket.AF_UNIX) as unix, socket.socket() as tcp:
        unix.bind(unix_path)
        os.chmod(unix_path, 0o777)
        unix.listen()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        port = tcp.getsockname()[1]
        seen = _run(f"""
            import json, socket
            out = {{}}
            for family, address in ((socket.AF_UNIX, {unix_path!r}), (socket.AF_INET, ("127.0.0.1", {port}))):
                try:
                    with socket.socket(family) as s:
                        s.settimeout(1.0)
                        s.connect(address)
                        out[str(address)] = "connected"
                except OSError as exc:
                    out[str(address)] = type(exc).__name__
            print(json.dumps(out))
        """)
        assert "connected" not in seen.values(), seen
        for listener in (unix, tcp):  # control: both are connectable from the host
            with socket.socket(listener.family) as client:
                client.connect(listener.getsockname())


# --- (c) the seccomp filter ---------------------------------------------------------------------

def _syscall_numbers(names: list[str]) -> dict[str, int]:
    import pyseccomp

    return {name: pyseccomp.resolve_syscall(pyseccomp.system_arch(), name) for name in names}


DENIED_CALLS = {  # name -> arguments that would succeed, or fail otherwise than EPERM, without the filter
    "io_uring_setup": (1, 0), "unshare": (0x10000000,), "setns": (0, 0), "bpf": (5, 0, 0),
    "ptrace": (0, 0, 0, 0), "mount": (0, 0, 0, 0, 0), "keyctl": (0, -3, 0),
    "perf_event_open": (0, 0, -1, -1, 0), "userfaultfd": (0,), "process_vm_readv": (1, 0, 0, 0, 0, 0),
}


@pytest.mark.parametrize("mode", ["bwrap", "namespaces", "basic"])
def test_seccomp_denies_with_eperm_and_normal_code_runs(mode):
    """Every mode loads the filter: bwrap through --seccomp, the fallbacks in the launcher."""
    chosen = isolation()
    if chosen.seccomp_bpf is None:
        pytest.skip("no seccomp filter here (pyseccomp or libseccomp missing: see the warning it logged)")
    if mode == "bwrap" and chosen.mode != "bwrap":
        pytest.skip(f"no bwrap mode here ({chosen.mode})")
    iso = chosen if mode == chosen.mode else dataclasses.replace(chosen, mode=mode, bwrap=None)
    numbers = _syscall_numbers([*DENIED_CALLS, "clone", "clone3"])
    seen = _run(f"""
        import ctypes, errno, json, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        def call(number, *args):
            ctypes.set_errno(0)
            result = libc.syscall(ctypes.c_long(number), *map(ctypes.c_long, args))
            if result == 0 and number == {numbers["clone"]}:
                os._exit(0)  # a child: the filter failed (the parent reports it)
            return errno.errorcode.get(ctypes.get_errno(), str(result))
        calls = {DENIED_CALLS!r}
        out = {{name: call(number, *calls[name]) for name, number in {numbers!r}.items() if name in calls}}
        out["clone(CLONE_NEWUSER)"] = call({numbers["clone"]}, 0x10000000 | 17, 0, 0, 0, 0)
        out["clone(CLONE_NEWNET)"] = call({numbers["clone"]}, 0x40000000 | 17, 0, 0, 0, 0)
        out["clone3"] = call({numbers["clone3"]}, 0, 0)
        print(json.dumps(out))
    """, iso=iso)
    expected = {name: "EPERM" for name in DENIED_CALLS} | {"clone(CLONE_NEWUSER)": "EPERM",
                                                           "clone(CLONE_NEWNET)": "EPERM", "clone3": "ENOSYS"}
    assert seen == expected


def test_threads_fork_exec_pipes_and_prctl_still_work(bwrap_mode):
    # What the graders need: a program and a tester as two exec'd children talking over a pipe.
    seen = _run("""
        import ctypes, json, os, subprocess, sys, threading
        assert ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE, 0
        results = []
        thread = threading.Thread(target=lambda: results.append(sum(range(1000))))
        thread.start(); thread.join()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(write_end, 1)
            os.execv(sys.executable, [sys.executable, "-I", "-c", "print(6 * 7)"])
        os.close(write_end)
        piped = os.read(read_end, 100).decode().strip()
        os.waitpid(pid, 0)
        spawned = subprocess.run([sys.executable, "-I", "-c", "print('ok')"], capture_output=True, text=True)
        print(json.dumps({"thread": results, "piped": piped, "spawned": spawned.stdout.strip()}))
    """)
    assert seen == {"thread": [499500], "piped": "42", "spawned": "ok"}


def test_a_bwrap_setup_failure_is_a_sandbox_error_not_a_score(bwrap_mode):
    broken = dataclasses.replace(isolation(), bwrap=(*isolation().bwrap, "--ro-bind", "/nonexistent", "/x"))
    with pytest.raises(SandboxError, match="Can't find source path /nonexistent"):
        run_python(["-c", "print(1)"], files={}, iso=broken)
    # A program that pretends to be bwrap failing is just a program exiting 1.
    fake = run_python(["-c", "import sys; sys.stderr.write('bwrap: oops\\n'); sys.exit(1)"], files={})
    assert fake.returncode == 1 and "bwrap: oops" in fake.stderr_tail


# --- (d) one core per run -----------------------------------------------------------------------

def test_a_run_gets_at_most_one_core():  # every mode: the launcher's child joins the cgroup
    if isolation().cpu_cgroup is None:
        pytest.skip("no writable cgroup-v1 cpu controller (non-root, or cgroup v2 only): no CPU quota")
    # Two processes, not two threads: the GIL alone would hold two Python threads to one core.
    seen = _run("""
        import json, os, resource, time
        start = time.monotonic()
        children = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                while time.monotonic() - start < 1.5:
                    pass
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(json.dumps({"cores": (usage.ru_utime + usage.ru_stime) / (time.monotonic() - start)}))
    """)
    assert seen["cores"] <= 1.1, f"two busy processes used {seen['cores']:.2f} cores: no CPU quota"


# --- (e) the loud fallback ------------------------------------------------------------------------

@pytest.fixture
def fresh_isolation(monkeypatch):
    """isolation() probes again in this test, and once more (normally) in the tests after it."""
    monkeypatch.delenv(ISOLATION_ENV, raising=False)
    isolation.cache_clear()
    yield
    isolation.cache_clear()


def test_without_bwrap_the_fallback_is_loud(fresh_isolation, monkeypatch, caplog):
    monkeypatch.setattr(bwrap, "BWRAP", "/nonexistent/bwrap")
    with caplog.at_level(logging.WARNING, logger="rewards"):
        iso = isolation()
    assert iso.mode in ("namespaces", "basic")
    warning = [r.getMessage() for r in caplog.records if "not bwrap mode" in r.getMessage()]
    assert len(warning) == 1 and "install bubblewrap" in warning[0], caplog.text
    assert any("bwrap mode" in note and "/nonexistent/bwrap" in note for note in iso.notes), iso.notes
    assert run_python(["-c", "print(2 + 2)"], files={}).stdout == "4\n"


def test_bwrap_mode_required_but_missing_fails(fresh_isolation, monkeypatch):
    monkeypatch.setattr(bwrap, "BWRAP", None)
    monkeypatch.setenv(ISOLATION_ENV, "bwrap")
    with pytest.raises(SandboxError, match="bwrap is not installed"):
        isolation()
