"""Choosing the sandbox's isolation level (once per process, by a probe run) and the host-side
housekeeping of runs: private uids, memory and CPU cgroups, run directories left by killed processes.
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rewards.sandbox import bwrap
from rewards.sandbox.launcher import SAFE_PATH
from rewards.sandbox.seccomp import bpf_program

if TYPE_CHECKING:  # the package imports this module: no runtime import of its Limits
    from rewards.sandbox import Limits

logger = logging.getLogger("rewards")

ISOLATION_ENV = "RL_SANDBOX_ISOLATION"
"""auto (default: bwrap, else namespaces, else basic), or one mode to fail instead of degrading."""
MODES = ("bwrap", "namespaces", "basic")
LOST = {
    "namespaces": "the program sees the whole host filesystem read-only (the repository, datasets, /etc, "
                  "every world-readable file) and can connect to Unix sockets outside /tmp and /run",
    "basic": "no network, filesystem or PID isolation: the program can read every "
             "file its uid may read, write world-writable host paths, reach the network and see host processes",
}
"""What each fallback loses against bwrap mode (logged as a warning once per process)."""
FIX = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; launch/setup.sh does it as root) "
       "on a kernel that allows user namespaces, and pyseccomp (a project dependency)")
CPU_PERIOD_US = 100_000
"""cgroup-v1 CFS period; each run's quota is one period per period: one core."""
PYTHON_ENV = "RL_SANDBOX_PYTHON"
"""The interpreter for sandboxed code (e.g. one with numpy, installed where any uid can read it)."""
PREFIX = "rl-sandbox-"
"""Names of run directories (in the temp dir) and of run cgroups."""


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program in it): an infrastructure error, never a score."""


@dataclass(frozen=True)
class Isolation:
    """How this process sandboxes code (found once by `isolation()`)."""

    mode: str
    """"bwrap", "namespaces" or "basic" (see the package docstring)."""
    python: str
    """The interpreter the sandboxed code runs under."""
    as_root: bool
    """True when each run gets its own unprivileged uid."""
    memory_cgroup: str | None = None
    """A cgroup-v1 memory hierarchy directory under which each run gets a cgroup capping the memory
    of its whole process tree (root only); None = only the per-process RLIMIT_AS."""
    notes: tuple[str, ...] = field(default=())
    """Why a weaker level or another interpreter was chosen (also logged as warnings)."""
    cpu_cgroup: str | None = None
    """A cgroup-v1 cpu hierarchy directory under which each run gets a one-core CFS quota (root only)."""
    bwrap: tuple[str, ...] = field(default=(), repr=False)
    """bwrap mode: bwrap's binary, then the options that build the root (bwrap.root_args)."""
    seccomp_bpf: bytes | None = field(default=None, repr=False)
    """The seccomp filter (seccomp.bpf_program), in every mode; None where libseccomp is unavailable."""


def make_cgroup(path: str, limits: Limits) -> None:
    """A memory cgroup for the whole tree: one process's budget plus the tmpfs it may fill."""
    os.mkdir(path)
    with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
        f.write(str((limits.memory_mb + 2 * limits.tmpfs_mb) << 20))


def make_cpu_cgroup(path: str) -> None:
    """A CPU cgroup for the whole tree: at most one core, however many processes or threads it runs
    (RLIMIT_CPU is per process), so a sample cannot starve rollouts, the learner or other samples."""
    os.mkdir(path)
    for name, value in (("cpu.cfs_period_us", CPU_PERIOD_US), ("cpu.cfs_quota_us", CPU_PERIOD_US)):
        with open(os.path.join(path, name), "w") as f:
            f.write(str(value))


def run_cgroups(iso: Isolation, name: str, limits: Limits) -> list[str]:
    """Make the run's cgroups (memory, cpu: those `iso` has); the launcher's child joins them all."""
    made: list[str] = []
    try:
        if iso.memory_cgroup:
            made.append(os.path.join(iso.memory_cgroup, name))
            make_cgroup(made[-1], limits)
        if iso.cpu_cgroup:
            made.append(os.path.join(iso.cpu_cgroup, name))
            make_cpu_cgroup(made[-1])
    except BaseException:
        remove_cgroups(made)
        raise
    return made


def remove_cgroups(paths: list[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            remove_cgroup(path)


def remove_cgroup(path: str) -> None:
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


def remove_tree(path: str) -> None:
    """Delete a run's directory even if the program made parts of it unreadable (chmod 000)."""

    def make_writable_and_retry(func, failed_path, _exc_info):
        os.chmod(os.path.dirname(failed_path), 0o700)
        if os.path.isdir(failed_path) and not os.path.islink(failed_path):
            os.chmod(failed_path, 0o700)
        func(failed_path)

    shutil.rmtree(path, onerror=make_writable_and_retry)


def pick_uid() -> int:
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


def count_tasks(uid: int) -> int:
    """Processes + threads of `uid` now (what RLIMIT_NPROC counts); racy, used only in basic mode."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                total += len(os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:  # the process exited while we counted
            continue
    return total


@functools.cache
def isolation() -> Isolation:
    """Probe what this machine permits: the strongest mode and an interpreter that works in it."""
    wanted = os.environ.get(ISOLATION_ENV, "auto")
    if wanted not in ("auto", *MODES):
        raise ValueError(f"{ISOLATION_ENV}={wanted!r}: use 'auto', " + ", ".join(map(repr, MODES)))
    modes = MODES if wanted == "auto" else (wanted,)
    as_root = os.geteuid() == 0
    failures: list[str] = []
    memory = _cgroup_parent("memory", failures) if as_root else None
    quiet: list[str] = []  # no CPU quota is a loss of fairness, not of safety: an info line only
    cpu = _cgroup_parent("cpu", quiet) if as_root else None
    for note in quiet:
        logger.info("code sandbox: %s", note)
    sweep_leftovers(memory, cpu)
    for mode in modes:
        for python in _candidate_pythons():
            candidate = _candidate(mode, python, as_root, memory, cpu, failures)
            problem = candidate if isinstance(candidate, str) else _probe(candidate)
            if problem is None:
                return _chosen(candidate, failures)
            failures.append(f"{mode} mode with {python} does not work: {problem}")
            if mode == "bwrap" and bwrap.BWRAP is None:
                break  # the same for every interpreter
    raise SandboxError("no sandbox mode works on this machine:\n  " + "\n  ".join(failures) +
                       f"\nSee docs/sandbox.md; {ISOLATION_ENV}=basic forces the weakest mode and "
                       f"{PYTHON_ENV} picks the interpreter.")


def _candidate(mode: str, python: str, as_root: bool, memory: str | None, cpu: str | None,
               failures: list[str]) -> Isolation | str:
    """The Isolation to probe, or why this mode cannot even be tried with this interpreter."""
    if mode != "bwrap":
        return Isolation(mode, python, as_root, memory, cpu_cgroup=cpu, seccomp_bpf=_seccomp(failures))
    if bwrap.BWRAP is None:
        return "bwrap is not installed"
    try:
        layout = _layout(python)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return f"it does not run even outside the sandbox: {exc}"
    return Isolation(mode, python, as_root, memory, cpu_cgroup=cpu,
                     bwrap=(bwrap.BWRAP, *bwrap.root_args(python, layout)), seccomp_bpf=_seccomp(failures))


def _seccomp(failures: list[str]) -> bytes | None:
    """The filter every mode loads (bwrap through --seccomp, the others in the launcher); None, noted,
    where libseccomp is unavailable."""
    try:
        return bpf_program()
    except (ImportError, OSError, RuntimeError) as exc:  # pyseccomp raises RuntimeError without libseccomp
        failures.append(f"no seccomp filter ({exc}): every syscall is allowed; pip install pyseccomp "
                        f"(needs libseccomp2)")
        return None


def _chosen(found: Isolation, failures: list[str]) -> Isolation:
    """Log the choice (loudly when it is not bwrap mode) and keep the notes on it."""
    notes = tuple(dict.fromkeys(failures))
    for note in notes:
        # Another interpreter in the chosen mode (the venv's under a 0700 home): a choice, not a loss.
        same_mode = note.startswith(f"{found.mode} mode with ")
        logger.log(logging.INFO if same_mode else logging.WARNING, "code sandbox: %s", note)
    if found.mode != "bwrap":
        logger.warning("code sandbox: running in %s mode, not bwrap mode: %s. To fix: %s. See docs/sandbox.md.",
                       found.mode, LOST[found.mode], FIX)
    logger.info("code sandbox: mode=%s python=%s private uid=%s memory cgroup=%s cpu cgroup=%s seccomp=%s",
                found.mode, found.python, found.as_root, found.memory_cgroup, found.cpu_cgroup,
                found.seccomp_bpf is not None)
    return dataclasses.replace(found, notes=notes)


def _cgroup_parent(controller: str, failures: list[str]) -> str | None:
    """Our own cgroup-v1 cgroup of `controller`, if we can make (and set up) and remove a child
    there; else None (noted): memory is then capped per process only, CPU not at all."""
    with open("/proc/self/cgroup") as f:
        paths = [line.rstrip("\n").split(":", 2) for line in f]
    own = [path for _id, controllers, path in paths if controller in controllers.split(",")]
    parent = os.path.normpath(f"/sys/fs/cgroup/{controller}" + own[0]) if own else None
    if parent is None or not os.path.isdir(parent):
        failures.append(f"no cgroup-v1 {controller} controller: " + _WITHOUT[controller])
        return None
    probe = os.path.join(parent, f"{PREFIX}probe-{os.getpid()}")
    try:
        make_cpu_cgroup(probe) if controller == "cpu" else os.mkdir(probe)
        os.rmdir(probe)
    except OSError as exc:
        failures.append(f"cannot create {controller} cgroups in {parent} ({exc}): " + _WITHOUT[controller])
        if os.path.isdir(probe):
            os.rmdir(probe)
        return None
    return parent


_WITHOUT = {"memory": "a run's memory is capped per process only",
            "cpu": "a run may use every core until its wall limit"}


def sweep_leftovers(*cgroup_parents: str | None) -> None:
    """Remove what runs of a killed process left (a reward worker killed on timeout cannot clean up).

    Called once per process; the reward runner starts a fresh worker after killing one. Only old
    entries go: an empty cgroup older than a minute (a live run joins its cgroup within
    milliseconds) and run directories older than an hour (no run lasts that long).
    """
    now = time.time()
    # Other processes make and remove such entries all the time (their probe cgroups, their runs): one
    # that vanishes while we look at it is not ours to clean, so FileNotFoundError just skips it.
    for cgroup_parent in filter(None, cgroup_parents):
        for entry in os.scandir(cgroup_parent):
            try:
                if entry.name.startswith(PREFIX) and entry.is_dir() and now - entry.stat().st_mtime > 60:
                    with open(os.path.join(entry.path, "cgroup.procs")) as f:
                        if not f.read().strip():
                            remove_cgroup(entry.path)
            except FileNotFoundError:
                continue
    for entry in os.scandir(tempfile.gettempdir()):
        try:
            if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
            # as root, basic-mode work directories belong to the run's private uid
            if (os.geteuid() == 0 or info.st_uid == os.getuid()) and now - info.st_mtime > 3600:
                remove_tree(entry.path)
        except FileNotFoundError:
            continue


def _candidate_pythons() -> list[str]:
    """$RL_SANDBOX_PYTHON if set; else ours first, then system ones (for when a private uid cannot
    run ours, e.g. a pyenv under /root, mode 0700)."""
    if os.environ.get(PYTHON_ENV):
        return [os.environ[PYTHON_ENV]]
    found = [sys.executable]
    for name in ("python3", "python"):
        path = shutil.which(name, path=SAFE_PATH)
        if path and os.path.realpath(path) not in map(os.path.realpath, found):
            found.append(path)
    return found


def _probe(candidate: Isolation) -> str | None:
    """Run a tiny program in `candidate`; None when it behaved, else what went wrong."""
    try:
        expected = _layout(candidate.python)["stdlib"]
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return f"it does not run even outside the sandbox: {exc}"
    from rewards.sandbox import Limits, run_python  # the caller's API runs the probe like any program

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


@functools.cache
def _layout(python: str) -> dict:
    """Where `python` finds its standard library (and prefixes) when we run it directly; asked once."""
    return bwrap.interpreter_layout(python)
