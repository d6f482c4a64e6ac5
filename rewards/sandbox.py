"""Run untrusted Python (model-generated code) in a throwaway, resource-limited sandbox process.

    from rewards.sandbox import Limits, run_python
    result = run_python(["solution.py"], files={"solution.py": "print(input()[::-1])"},
                        stdin=b"abc\n", limits=Limits(wall_s=2.0))
    result.stdout, result.returncode, result.timed_out            # -> "cba\n", 0, False

Each call starts a fresh process tree: `python -I THIS_FILE CONFIG REPORT_FD` (the *launcher*,
stdlib only) sets up isolation, forks, and the child execs `python -I ARGV...` with a minimal
environment. The launcher enforces the wall clock, kills and reaps everything left over, and reports
back; the caller kills the launcher itself only if it overruns by `_LAUNCHER_GRACE_S`.
Isolation levels, chosen once per process by `isolation()` (a probe run, result cached and logged):

- "namespaces": new mount, network, PID, IPC and UTS namespaces (plus a user namespace when we are
  not root). Every existing mount is re-mounted read-only, /tmp and /dev/shm are fresh size-limited
  tmpfs, /proc shows only the sandbox's processes, the network has only a downed loopback device.
  The program runs as PID 2 under a PID-1 reaper; when either exits or is killed, the kernel kills
  every process left in the namespace.
- "basic": no namespaces could be made (e.g. a container whose seccomp profile forbids `unshare`):
  rlimits and, as root, a private uid only. Logged as a warning; docs/sandbox.md says what is lost.

Always: rlimits (CPU, address space, processes, file size, open files, no core files), no new
privileges (setuid binaries do not elevate), parent-death SIGKILL, a new session. As root also a
fresh unprivileged uid per run (so the program cannot read 0600 files or delete root's files, and
RLIMIT_NPROC, which root ignores, is enforced) and, where cgroup v1 allows, a memory cgroup capping
the whole tree. Environment: RL_SANDBOX_ISOLATION (auto | namespaces | basic), RL_SANDBOX_PYTHON.
See docs/sandbox.md for the threat model and what this does NOT protect against.

This file is also the launcher script, so it imports the standard library only.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import json
import logging
import math
import os
import pwd
import random
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field

logger = logging.getLogger("rewards")

WORKDIR = "/tmp/work"
"""The program's working directory inside the mount namespace (a private tmpfs)."""
SETUP_FAILED = 125
"""Exit code of the launcher's child when isolation could not be set up (the reason is reported)."""
ISOLATION_ENV = "RL_SANDBOX_ISOLATION"
"""Set to "namespaces" to fail instead of degrading to "basic", or "basic" to skip namespaces."""
PYTHON_ENV = "RL_SANDBOX_PYTHON"
"""The interpreter for sandboxed code (e.g. one with numpy, installed where any uid can read it)."""
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_PREFIX = "rl-sandbox-"
"""Names of run directories (in the temp dir) and of run cgroups."""
_LAUNCHER_GRACE_S = 5.0
"""Extra wall time before we kill a launcher that failed to enforce the limit itself."""

# Linux constants (not in the stdlib of Python 3.11: os.unshare arrived in 3.12).
_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = 0x20, 0x400, 0x800, 0x1000
_MS_REC, _MS_PRIVATE, _MS_RELATIME, _MS_STRICTATIME = 0x4000, 0x40000, 0x200000, 0x1000000
_MOUNT_OPTION_FLAGS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC,
                       "noatime": _MS_NOATIME, "nodiratime": _MS_NODIRATIME,
                       "relatime": _MS_RELATIME, "strictatime": _MS_STRICTATIME}
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS = 1, 36, 38


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
    """Size of the private /tmp and of /dev/shm (namespaces mode); counts against host RAM."""
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


@dataclass(frozen=True)
class Isolation:
    """How this process sandboxes code (found once by `isolation()`)."""

    mode: str
    """"namespaces" or "basic" (see the module docstring)."""
    python: str
    """The interpreter the sandboxed code runs under."""
    as_root: bool
    """True when each run gets its own unprivileged uid."""
    memory_cgroup: str | None = None
    """A cgroup-v1 memory hierarchy directory under which each run gets a cgroup capping the memory
    of its whole process tree (root only); None = only the per-process RLIMIT_AS."""
    notes: tuple[str, ...] = field(default=())
    """Why a weaker level or another interpreter was chosen (also logged as warnings)."""


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program in it): an infrastructure error, never a score."""


def run_python(argv: list[str], *, files: dict[str, str], stdin: bytes = b"",
               limits: Limits = Limits(), iso: Isolation | None = None) -> RunResult:
    """Run `python -I *argv` in a fresh sandbox whose working directory holds `files` (name -> text).

    `iso` None means the level `isolation()` found. Raises SandboxError when the sandbox could not
    be set up; anything the program does (crash, timeout, garbage output) is in the RunResult.
    """
    iso = iso or isolation()
    base = tempfile.mkdtemp(prefix=_PREFIX)  # 0700: only we (and the launcher) can enter it
    # In basic mode the program works in a host directory, a sibling of `base`: a private uid
    # could not reach it inside `base`, and must not read the control files (stdin holds a nonce).
    workdir = tempfile.mkdtemp(prefix=_PREFIX + "work-") if iso.mode == "basic" else None
    cgroup = iso.memory_cgroup and os.path.join(iso.memory_cgroup, os.path.basename(base))
    try:
        if cgroup:
            _make_cgroup(cgroup, limits)
        return _run_in(base, workdir, cgroup, iso, argv, files, stdin, limits)
    finally:
        _remove_tree(base)
        if workdir is not None:
            _remove_tree(workdir)
        if cgroup and os.path.isdir(cgroup):
            _remove_cgroup(cgroup)


def _run_in(base: str, workdir: str | None, cgroup: str | None, iso: Isolation, argv: list[str], files: dict[str, str],
            stdin: bytes, limits: Limits) -> RunResult:
    uid = _pick_uid() if iso.as_root else None
    # RLIMIT_NPROC counts per real uid (per user namespace on Linux >= 5.14): in basic mode as
    # non-root the program shares our uid, so its allowance comes on top of what we already run.
    shared_uid = uid is None and iso.mode == "basic"
    config = {"mode": iso.mode, "userns": not iso.as_root, "uid": uid, "parent_pid": os.getpid(),
              "argv": [iso.python, "-I", *argv], "files": files, "limits": asdict(limits),
              "workdir": workdir, "host_uid": os.getuid(), "host_gid": os.getgid(),
              "nproc_base": _count_tasks(os.getuid()) if shared_uid else 0,
              "cgroup": cgroup}
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
        # reaches it without touching our own process group.
        proc = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), paths["config.json"],
                                 str(freport.fileno())], stdin=fin, stdout=fout, stderr=ferr,
                                pass_fds=(freport.fileno(),), env=_minimal_env(), start_new_session=True)
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
        raise SandboxError(f"sandbox setup failed ({iso.mode} mode): {outcome['setup_error']}")
    return RunResult(returncode=None if outcome["timed_out"] else outcome["returncode"],
                     stdout=_read_text(paths["stdout"], limits.max_file_mb << 20),
                     stderr_tail=_read_text(paths["stderr"], limits.max_file_mb << 20)[-2000:],
                     timed_out=outcome["timed_out"], wall_s=wall)


def _make_cgroup(path: str, limits: Limits) -> None:
    """A memory cgroup for the whole tree: one process's budget plus the tmpfs it may fill."""
    os.mkdir(path)
    with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
        f.write(str((limits.memory_mb + 2 * limits.tmpfs_mb) << 20))


def _remove_cgroup(path: str) -> None:
    """rmdir fails with EBUSY while a (dying) process is still charged to it: retry for a second."""
    for _ in range(100):
        try:
            os.rmdir(path)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    os.rmdir(path)  # raises: the error names the cgroup that leaked


def _read_text(path: str, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


def _remove_tree(path: str) -> None:
    """Delete a run's directory even if the program made parts of it unreadable (chmod 000)."""

    def make_writable_and_retry(func, failed_path, _exc_info):
        os.chmod(os.path.dirname(failed_path), 0o700)
        if os.path.isdir(failed_path) and not os.path.islink(failed_path):
            os.chmod(failed_path, 0o700)
        func(failed_path)

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _minimal_env() -> dict[str, str]:
    return {"PATH": _SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": WORKDIR,
            "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
            # one thread per BLAS/OpenMP pool: threads count against RLIMIT_NPROC
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _pick_uid() -> int:
    """A uid no account uses, from the ids this (possibly containerised) root may map.

    A fresh uid per run means RLIMIT_NPROC counts only this sandbox's processes, and the program
    owns nothing on the host. Two concurrent runs drawing the same uid (chance ~1/500k) would only
    share that process count: their /tmp, /proc and network are private anyway in namespaces mode.
    """
    used = {entry.pw_uid for entry in pwd.getpwall()}
    low, high = _mapped_uid_range()
    low = max(low, high - 1_000_000, 100_000 if high > 200_000 else low)
    while True:
        uid = random.SystemRandom().randrange(low, high)  # not the global RNG: forks share its state
        if uid not in used and uid not in (65534, 65535):
            return uid


def _mapped_uid_range() -> tuple[int, int]:
    """The largest extent of /proc/self/uid_map as [low, high), capped below 2**31."""
    with open("/proc/self/uid_map") as f:
        extents = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
    inside, _outside, count = max(extents, key=lambda e: e[2])
    return inside, min(inside + count, 2**31 - 1)


def _count_tasks(uid: int) -> int:
    """Processes + threads of `uid` now (what RLIMIT_NPROC counts); racy, used only in basic mode."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                total += len(os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:  # the process exited while we counted
            continue
    return total


# ---------------------------------------------------------------------------------------------
# Choosing the isolation level and the interpreter (once per process).

@functools.cache
def isolation() -> Isolation:
    """Probe what this machine permits: the strongest mode and an interpreter that works in it."""
    wanted = os.environ.get(ISOLATION_ENV, "auto")
    if wanted not in ("auto", "namespaces", "basic"):
        raise ValueError(f"{ISOLATION_ENV}={wanted!r}: use 'auto', 'namespaces' or 'basic'")
    modes = ["namespaces", "basic"] if wanted == "auto" else [wanted]
    as_root = os.geteuid() == 0
    failures: list[str] = []
    cgroup = _memory_cgroup_parent(failures) if as_root else None
    _sweep_leftovers(cgroup)
    for mode in modes:
        for python in _candidate_pythons():
            candidate = Isolation(mode=mode, python=python, as_root=as_root, memory_cgroup=cgroup)
            problem = _probe(candidate)
            if problem is None:
                notes = tuple(failures)
                for note in notes:
                    logger.warning("code sandbox: %s", note)
                result = Isolation(mode, python, as_root, cgroup, notes)
                log = logger.info if mode == "namespaces" else logger.warning
                log("code sandbox: mode=%s python=%s private uid=%s memory cgroup=%s",
                    mode, python, as_root, cgroup)
                return result
            failures.append(f"{mode} mode with {python} does not work: {problem}")
    raise SandboxError("no sandbox mode works on this machine:\n  " + "\n  ".join(failures) +
                       f"\nSee docs/sandbox.md; {ISOLATION_ENV}=basic forces the weakest mode and "
                       f"{PYTHON_ENV} picks the interpreter.")


def _memory_cgroup_parent(failures: list[str]) -> str | None:
    """Our own cgroup-v1 memory cgroup, if we can make and remove a child there; else None (noted)."""
    with open("/proc/self/cgroup") as f:
        paths = [line.rstrip("\n").split(":", 2) for line in f]
    own = [path for _id, controllers, path in paths if "memory" in controllers.split(",")]
    parent = "/sys/fs/cgroup/memory" + own[0] if own else None
    if parent is None or not os.path.isdir(parent):
        failures.append("no cgroup-v1 memory controller: a run's memory is capped per process only")
        return None
    probe = os.path.join(parent, f"rl-sandbox-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as exc:
        failures.append(f"cannot create memory cgroups in {parent} ({exc}): memory is capped per process only")
        return None
    return parent


def _sweep_leftovers(cgroup_parent: str | None) -> None:
    """Remove what runs of a killed process left (a reward worker killed on timeout cannot clean up).

    Called once per process; the reward runner starts a fresh worker after killing one. Only old
    entries go: an empty cgroup older than a minute (a live run joins its cgroup within
    milliseconds) and run directories older than an hour (no run lasts that long).
    """
    now = time.time()
    if cgroup_parent:
        for entry in os.scandir(cgroup_parent):
            if entry.name.startswith(_PREFIX) and entry.is_dir() and now - entry.stat().st_mtime > 60:
                with open(os.path.join(entry.path, "cgroup.procs")) as f:
                    if not f.read().strip():
                        _remove_cgroup(entry.path)
    for entry in os.scandir(tempfile.gettempdir()):
        if not entry.name.startswith(_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        info = entry.stat(follow_symlinks=False)
        # as root, basic-mode work directories belong to the run's private uid
        if (os.geteuid() == 0 or info.st_uid == os.getuid()) and now - info.st_mtime > 3600:
            _remove_tree(entry.path)


def _candidate_pythons() -> list[str]:
    """$RL_SANDBOX_PYTHON if set; else ours first, then system ones (for when a private uid cannot
    run ours, e.g. a pyenv under /root, mode 0700)."""
    if os.environ.get(PYTHON_ENV):
        return [os.environ[PYTHON_ENV]]
    found = [sys.executable]
    for name in ("python3", "python"):
        path = shutil.which(name, path=_SAFE_PATH)
        if path and os.path.realpath(path) not in map(os.path.realpath, found):
            found.append(path)
    return found


def _probe(candidate: Isolation) -> str | None:
    """Run a tiny program in `candidate`; None when it behaved, else what went wrong."""
    try:
        expected = _stdlib_of(candidate.python)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"it does not run even outside the sandbox: {exc}"
    try:
        result = run_python(["-c", "import os; print(os.path.dirname(os.__file__))"], files={},
                            limits=Limits(wall_s=20.0), iso=candidate)
    except SandboxError as exc:
        return str(exc).strip().splitlines()[-1]  # the exception line of the launcher's traceback
    seen = result.stdout.strip()
    if result.returncode != 0 or seen != expected:
        # e.g. a private uid that cannot enter /root falls back to another Python's stdlib
        return (f"exit {result.returncode}, stdlib {seen!r} instead of {expected!r}; "
                f"stderr: {result.stderr_tail[-300:]!r}")
    return None


def _stdlib_of(python: str) -> str:
    """Where `python` finds its standard library when we run it directly."""
    out = subprocess.run([python, "-I", "-c", "import os; print(os.path.dirname(os.__file__))"],
                         capture_output=True, text=True, env=_minimal_env(), timeout=60, check=True)
    return out.stdout.strip()


# ---------------------------------------------------------------------------------------------
# The launcher: `python -I sandbox.py CONFIG REPORT_FD`, started by _run_in. It forks the child that
# becomes the program, enforces the wall clock, kills and reaps what is left (no zombies: the init
# of some containers and VMs never reaps orphans), and writes a JSON report to REPORT_FD:
# {"setup_error": traceback or None, "timed_out": bool, "returncode": int or None}.

def _launch(config_path: str, report_fd: int) -> None:
    os.set_inheritable(report_fd, False)  # the program must never get the channel
    report: dict = {"setup_error": None, "timed_out": False, "returncode": None}
    try:
        with open(config_path) as f:
            cfg = json.load(f)
        _die_with_parent(cfg["parent_pid"])
        if cfg["mode"] == "namespaces":
            _enter_namespaces(cfg)
        else:  # orphans of the program become our children, so we can reap them
            _check(_libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(CHILD_SUBREAPER)")
        alive_r, alive_w = os.pipe()  # the child sees EOF on alive_r once we are gone
        error_r, error_w = os.pipe()  # the child's setup errors; closed by its exec (not inheritable)
        pid = os.fork()
        if pid == 0:
            _child(cfg, alive_r, alive_w, error_w)
        os.close(alive_r)
        os.close(error_w)
        report["timed_out"], report["returncode"] = _supervise(pid, cfg)
        with os.fdopen(error_r, "rb") as errors:
            report["setup_error"] = errors.read().decode(errors="replace") or None
    except BaseException:
        report["setup_error"] = traceback.format_exc()
    os.write(report_fd, json.dumps(report).encode())
    os._exit(0)


def _child(cfg: dict, alive_r: int, alive_w: int, error_w: int) -> None:
    """The forked child: set up, then exec the program (in namespaces mode, from a PID-1 parent)."""
    try:
        os.close(alive_w)
        os.setsid()  # its own session and group: the program cannot signal the launcher's group
        if cfg["cgroup"]:  # join before anything else runs; children (the program) inherit it
            with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as f:
                f.write("0")
        _die_with_launcher(alive_r)
        _prepare_workdir(cfg)
        if cfg["mode"] == "namespaces":
            # We are PID 1 of the new PID namespace; the program runs as PID 2, because PID 1
            # ignores every signal it has no handler for (even its own SIGKILL or SIGALRM).
            # When we exit, the kernel kills whatever is left in the namespace.
            program = os.fork()
            if program:
                code = _reap_until(program)
                os._exit(128 - code if code < 0 else code)
        _become_program(cfg, alive_r)
        os.execve(cfg["argv"][0], cfg["argv"], _minimal_env())
    except BaseException:
        os.write(error_w, traceback.format_exc().encode())
    os._exit(SETUP_FAILED)


def _supervise(pid: int, cfg: dict) -> tuple[bool, int]:
    """Wait for the child up to the wall limit; kill what is left; reap. -> (timed_out, returncode)."""
    pidfd = os.pidfd_open(pid)
    timed_out = not select.select([pidfd], [], [], cfg["limits"]["wall_s"])[0]
    os.close(pidfd)
    if cfg["mode"] == "namespaces":
        if timed_out:
            os.kill(pid, signal.SIGKILL)  # PID 1 of the namespace: the kernel kills the rest
        code = _reap_until(pid)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)  # the program's session, also after a normal exit
        except ProcessLookupError:  # the program moved itself to another group: none left in this one
            pass
        if cfg["uid"] is not None:
            _kill_uid(cfg["uid"])  # and anything that left the session (setsid), as root
        code = _reap_until(pid)
        _reap_orphans(deadline=time.monotonic() + 1.0)
    return timed_out, 128 - code if code < 0 else code


def _reap_until(pid: int) -> int:
    """Reap children (orphans too) until `pid` exits; its exit code (-signal when killed)."""
    while True:
        done, status = os.wait()
        if done == pid:
            return os.waitstatus_to_exitcode(status)


def _reap_orphans(deadline: float) -> None:
    """Collect killed orphans that were reparented to us (basic mode); give up at the deadline."""
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.01)
        except ChildProcessError:  # no children left
            return


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of the sandbox's private uid: kill(-1) from a helper running as it."""
    helper = os.fork()
    if helper == 0:
        os.setuid(uid)
        os.kill(-1, signal.SIGKILL)
        os._exit(0)
    os.waitpid(helper, 0)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL us when the process that started us dies (e.g. a reward worker killed on timeout)."""
    _check(_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(SETUP_FAILED)


def _enter_namespaces(cfg: dict) -> None:
    flags = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS
    if cfg["userns"]:  # not root: a user namespace grants the right to make the others
        flags |= _CLONE_NEWUSER
    _check(_libc().unshare(flags), "unshare")
    if cfg["userns"]:
        # Map only ourselves: the program keeps our uid, and exec drops the namespace capabilities.
        for name, text in (("setgroups", "deny"), ("uid_map", f"{cfg['host_uid']} {cfg['host_uid']} 1"),
                           ("gid_map", f"{cfg['host_gid']} {cfg['host_gid']} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


def _die_with_launcher(alive_r: int) -> None:
    """SIGKILL us when our parent dies; exit now if the launcher is already gone (a race)."""
    _check(_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    if select.select([alive_r], [], [], 0)[0]:  # EOF: the launcher's end of the pipe closed
        os._exit(SETUP_FAILED)


def _prepare_workdir(cfg: dict) -> None:
    """In the forked child, still privileged: private filesystem (namespaces mode), the files, cwd."""
    if cfg["mode"] == "namespaces":
        _private_filesystem(cfg["limits"]["tmpfs_mb"])
        workdir = WORKDIR
    else:
        workdir = cfg["workdir"]
    for name, text in cfg["files"].items():
        with open(os.path.join(workdir, name), "w") as f:
            f.write(text)
    if cfg["uid"] is not None:
        for path in [workdir] + [os.path.join(workdir, name) for name in cfg["files"]]:
            os.chown(path, cfg["uid"], cfg["uid"])
    os.chdir(workdir)


def _become_program(cfg: dict, alive_r: int) -> None:
    """Last steps before exec: limits, the private uid (as root), no new privileges."""
    _set_rlimits(cfg["limits"], cfg["nproc_base"])
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    _check(_libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _die_with_launcher(alive_r)  # again: a uid change clears the parent-death signal


def _private_filesystem(tmpfs_mb: int) -> None:
    """Make every host mount read-only in our mount namespace; fresh tmpfs /tmp and /dev/shm; our /proc."""
    libc = _libc()
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    for mount_point, options in _mounts():
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
        for option in options:  # keep the flags the mount has: a user namespace may not clear them
            flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
        _check(libc.mount(None, os.fsencode(mount_point), None, flags, None),
               f"remount {mount_point} read-only")
    data = f"size={tmpfs_mb}m,mode=1777".encode()
    for target in (b"/tmp", b"/dev/shm"):
        if os.path.isdir(target):
            _check(libc.mount(b"tmpfs", target, b"tmpfs", _MS_NOSUID | _MS_NODEV, data),
                   f"mount tmpfs {target}")
    # An empty, read-only /run hides the host's Unix sockets there (docker, dbus, ...): the network
    # namespace does not cover sockets reached by path.
    if os.path.isdir("/run"):
        _check(libc.mount(b"tmpfs", b"/run", b"tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                          b"size=64k,mode=755"), "mount tmpfs /run")
    _check(libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mount /proc")
    os.mkdir(WORKDIR, 0o700)


def _mounts() -> list[tuple[str, list[str]]]:
    """(mount point, per-mount options) from /proc/self/mountinfo, parents before children."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            # mount points escape space, tab, newline and backslash as octal (\040)
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            mounts.append((point, fields[5].split(",")))
    return mounts


def _set_rlimits(limits: dict, nproc_base: int) -> None:
    cpu = math.ceil(limits["cpu_s"] if limits["cpu_s"] is not None else limits["wall_s"])
    memory = limits["memory_mb"] << 20
    file_size = limits["max_file_mb"] << 20
    nproc = nproc_base + limits["max_processes"]
    for which, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory),
                         (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_NPROC, nproc),
                         (resource.RLIMIT_NOFILE, limits["max_open_files"]), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))


if __name__ == "__main__":
    _launch(sys.argv[1], int(sys.argv[2]))
