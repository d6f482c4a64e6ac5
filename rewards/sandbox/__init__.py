"""Run untrusted Python (model-generated code) in a throwaway, resource-limited sandbox process.

    from rewards.sandbox import Limits, run_python
    result = run_python(["solution.py"], files={"solution.py": "print(input()[::-1])"},
                        stdin=b"abc\n", limits=Limits(wall_s=2.0))
    result.stdout, result.returncode, result.timed_out            # -> "cba\n", 0, False

Each call starts a fresh process tree: `python -I -S launcher.py CONFIG REPORT_FD` (the *launcher*,
stdlib only) sets up isolation, forks, and the child execs the program, `python -I ARGV...`, with a
minimal environment (in bwrap mode it execs bwrap, which builds the sandbox and runs the program in
it). The launcher enforces the wall clock, kills and reaps everything left over, and reports back; the
caller kills the launcher itself only if it overruns by `_LAUNCHER_GRACE_S`.
Isolation levels, chosen once per process by `isolation()` (a probe run, result cached and logged):

- "bwrap" (bubblewrap installed, user namespaces allowed): the program's root holds only the
  interpreter, its standard library and the shared libraries (read-only), a private size-limited
  /tmp with the run's files, a minimal /dev and its own /proc; new user, PID, network, IPC, UTS and
  cgroup namespaces; a seccomp filter (seccomp.py) makes io_uring, unshare/setns, bpf, ptrace, mounts,
  keyrings and the like fail with EPERM. Only stdlib programs run (no numpy) unless RL_SANDBOX_PYTHON
  names an interpreter whose prefix holds more.
- "namespaces" (no bwrap): the launcher's own mount, network, PID, IPC and UTS namespaces (plus a user
  namespace when we are not root). Every host mount is re-mounted read-only (the whole host stays
  visible), /tmp and /dev/shm are fresh size-limited tmpfs, /proc shows only the sandbox's
  processes, the network has only a downed loopback device; the same seccomp filter, loaded by the
  launcher. The program runs as
  PID 2 under a PID-1 reaper; when either exits or is killed, the kernel kills the namespace.
- "basic": no namespaces could be made (e.g. a container whose seccomp profile forbids `unshare`):
  rlimits, the seccomp filter and, as root, a private uid only.
Anything but bwrap mode is logged as a warning naming what is lost; docs/sandbox.md says more.

Always: rlimits (CPU, address space, processes, file size, open files, no core files), no new
privileges (setuid binaries do not elevate), parent-death SIGKILL, a new session. As root also a
fresh unprivileged uid per run (so the program cannot read 0600 files or delete root's files, and
RLIMIT_NPROC, which root ignores, is enforced) and, where cgroup v1 allows, a memory cgroup capping
the whole tree and a cpu cgroup holding it to one core. Environment: RL_SANDBOX_ISOLATION (auto |
bwrap | namespaces | basic), RL_SANDBOX_PYTHON.
See docs/sandbox.md for the threat model and what this does NOT protect against.

The package: this file is the caller's API (run_python, Limits, RunResult); isolation.py chooses the
isolation level and keeps the host side tidy (uids, cgroups, leftovers); launcher.py is the launcher;
bwrap.py builds bwrap's command line and seccomp.py its seccomp filter.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

from rewards.sandbox import bwrap
from rewards.sandbox.isolation import (ISOLATION_ENV, PREFIX, PYTHON_ENV, Isolation, SandboxError, count_tasks,
                                       isolation, pick_uid, remove_cgroups, remove_tree, run_cgroups)
from rewards.sandbox.launcher import SETUP_FAILED, WORKDIR, minimal_env

__all__ = ["ISOLATION_ENV", "PYTHON_ENV", "SETUP_FAILED", "WORKDIR", "Isolation", "Limits", "RunResult",
           "SandboxError", "isolation", "run_python"]

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")
"""The launcher script, run with `python -I` for every program."""
_LAUNCHER_GRACE_S = 5.0
"""Extra wall time before we kill a launcher that failed to enforce the limit itself."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    wall_s: float = 4.0
    """Wall-clock limit; the whole process tree is SIGKILLed when it passes."""
    cpu_s: float | None = None
    """CPU-time limit (RLIMIT_CPU, rounded up to whole seconds); None = same as wall_s."""
    memory_mb: int = 1024
    """Address-space limit per process (RLIMIT_AS); Python itself needs ~30 MB, numpy ~400 MB."""
    max_processes: int = 32
    """Processes + threads the program may have at once (RLIMIT_NPROC, made to count per sandbox)."""
    max_file_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE); this also caps its stdout and stderr."""
    tmpfs_mb: int = 64
    """Size of the private /tmp and of /dev/shm (bwrap and namespaces modes); counts against host RAM."""
    max_open_files: int = 256
    """RLIMIT_NOFILE."""

    def __post_init__(self) -> None:
        if self.wall_s <= 0 or (self.cpu_s is not None and self.cpu_s <= 0):
            raise ValueError(f"sandbox limits: wall_s={self.wall_s} and cpu_s={self.cpu_s} must be > 0")
        if min(self.memory_mb, self.max_processes, self.max_file_mb, self.tmpfs_mb) < 1:
            raise ValueError(f"sandbox limits must be >= 1, got {self}")


@dataclass
class RunResult:
    """What one sandboxed run did."""

    returncode: int | None
    """Exit status (128 + signal number when killed by a signal); None when the wall clock ran out."""
    stdout: str
    """Everything the program wrote to stdout (at most max_file_mb), decoded as UTF-8 with replacement."""
    stderr_tail: str
    """The last 2000 characters of stderr, for details and debugging."""
    timed_out: bool
    wall_s: float


def run_python(argv: list[str], *, files: dict[str, str], stdin: bytes = b"",
               limits: Limits = Limits(), iso: Isolation | None = None) -> RunResult:
    """Run `python -I *argv` in a fresh sandbox whose working directory holds `files` (name -> text).

    `iso` None means the level `isolation()` found. Raises SandboxError when the sandbox could not
    be set up; anything the program does (crash, timeout, garbage output) is in the RunResult.
    """
    iso = iso or isolation()
    base = tempfile.mkdtemp(prefix=PREFIX)  # 0700: only we (and the launcher) can enter it
    # In basic mode the program works in a host directory, a sibling of `base`: a private uid
    # could not reach it inside `base`, and must not read the control files (stdin holds a nonce).
    workdir = tempfile.mkdtemp(prefix=PREFIX + "work-") if iso.mode == "basic" else None
    cgroups: list[str] = []
    try:
        cgroups = run_cgroups(iso, os.path.basename(base), limits)
        return _run_in(base, workdir, cgroups, iso, argv, files, stdin, limits)
    finally:
        remove_tree(base)
        if workdir is not None:
            remove_tree(workdir)
        remove_cgroups(cgroups)


def _run_in(base: str, workdir: str | None, cgroups: list[str], iso: Isolation, argv: list[str],
            files: dict[str, str], stdin: bytes, limits: Limits) -> RunResult:
    uid = pick_uid() if iso.as_root else None
    config = {"mode": iso.mode, "userns": not iso.as_root, "uid": uid, "parent_pid": os.getpid(),
              "argv": [iso.python, "-I", *argv], "files": files, "limits": asdict(limits),
              "workdir": workdir, "host_uid": os.getuid(), "host_gid": os.getgid(),
              "nproc_base": _nproc_base(iso, uid), "cgroups": cgroups,
              "bwrap": bwrap.command(iso.bwrap, limits.tmpfs_mb) if iso.mode == "bwrap" else None,
              "seccomp": iso.seccomp_bpf.hex() if iso.seccomp_bpf else None}
    names = ("config.json", "stdin", "stdout", "stderr", "report")
    paths = {name: os.path.join(base, name) for name in names}
    with open(paths["config.json"], "w") as f:
        json.dump(config, f)
    with open(paths["stdin"], "wb") as f:
        f.write(stdin)
    with open(paths["stdin"], "rb") as fin, open(paths["stdout"], "wb") as fout, \
            open(paths["stderr"], "wb") as ferr, open(paths["report"], "wb") as freport:
        start = time.monotonic()
        # The launcher runs with our interpreter (it must read this file, as root or as us) and
        # enforces the wall clock itself; it leads a new session so that our killpg backstop
        # reaches it without touching our own process group. -S: it needs only the standard
        # library, and skipping site (our venv's .pth files) saves ~15 ms per run.
        proc = subprocess.Popen([sys.executable, "-I", "-S", LAUNCHER, paths["config.json"],
                                 str(freport.fileno())], stdin=fin, stdout=fout, stderr=ferr,
                                pass_fds=(freport.fileno(),), env=minimal_env(), start_new_session=True)
        backstop = False
        try:
            proc.wait(timeout=limits.wall_s + _LAUNCHER_GRACE_S)
        except subprocess.TimeoutExpired:  # the launcher itself hangs: kill it (its child follows)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            backstop = True
        wall = time.monotonic() - start
    report = _read_text(paths["report"], 1 << 20)
    if not report:
        if not backstop and proc.returncode >= 0:  # it failed to start or crashed: our bug, not a score
            raise SandboxError(f"the sandbox launcher exited with {proc.returncode} and no report; "
                               f"stderr: {_read_text(paths['stderr'], 1 << 20)[-2000:]}")
        # Killed by our backstop, or (basic mode as non-root) by the program itself: a failed run.
        report = json.dumps({"timed_out": backstop, "returncode": 128 - proc.returncode})
    outcome = json.loads(report)
    if outcome.get("setup_error"):
        stderr = _read_text(paths["stderr"], 1 << 20)[-2000:].strip()  # bwrap's own message, if any
        raise SandboxError(f"sandbox setup failed ({iso.mode} mode): {outcome['setup_error'].strip()}"
                           + (f"\nstderr: {stderr}" if stderr else ""))
    return RunResult(returncode=None if outcome["timed_out"] else outcome["returncode"],
                     stdout=_read_text(paths["stdout"], limits.max_file_mb << 20),
                     stderr_tail=_read_text(paths["stderr"], limits.max_file_mb << 20)[-2000:],
                     timed_out=outcome["timed_out"], wall_s=wall)


def _nproc_base(iso: Isolation, uid: int | None) -> int:
    """Processes that count against the run's RLIMIT_NPROC besides the program's own."""
    # RLIMIT_NPROC counts per real uid, and on Linux >= 5.14 per user namespace as well, where a new
    # namespace's processes also count for its creator's uid against the limit it had when it made it.
    # As non-root in basic mode the program shares our uid, and in bwrap mode bwrap makes its user
    # namespace as our uid after the limit is set: the allowance comes on top of what we already run.
    ours = count_tasks(os.getuid()) if uid is None and iso.mode in ("basic", "bwrap") else 0
    return ours + (2 if iso.mode == "bwrap" else 0)  # bwrap itself and its PID 1 run as the run's uid too


def _read_text(path: str, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")
