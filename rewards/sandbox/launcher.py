"""The sandbox launcher, run as a script for every sandboxed program (rewards/sandbox/__init__.py starts it):

    python -I -S rewards/sandbox/launcher.py CONFIG REPORT_FD

It sets up isolation (namespaces, private filesystem, private uid, rlimits), forks the child that
becomes the program (in bwrap mode: becomes bwrap, which makes the sandbox and runs the program in it),
enforces the wall clock, kills and reaps what is left (no zombies: the init of
some containers and VMs never reaps orphans), and writes a JSON report to REPORT_FD:
{"setup_error": traceback or None, "timed_out": bool, "returncode": int or None}.

It runs with `-I -S` (no site-packages, no working directory on the path), so it imports the standard
library only; the caller's side imports its constants from here.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import re
import resource
import select
import signal
import sys
import time
import traceback

WORKDIR = "/tmp/work"
"""The program's working directory inside the mount namespace (a private tmpfs)."""
SETUP_FAILED = 125
"""Exit code of the launcher's child when isolation could not be set up (the reason is reported)."""
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

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
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


def minimal_env() -> dict[str, str]:
    """The program's whole environment (nothing of ours leaks into it)."""
    return {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": WORKDIR,
            "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
            # one thread per BLAS/OpenMP pool: threads count against RLIMIT_NPROC
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _launch(config_path: str, report_fd: int) -> None:
    os.set_inheritable(report_fd, False)  # the program must never get the channel
    report: dict = {"setup_error": None, "timed_out": False, "returncode": None}
    try:
        with open(config_path) as f:
            cfg = json.load(f)
        _die_with_parent(cfg["parent_pid"])
        if cfg["mode"] == "namespaces":
            _enter_namespaces(cfg)
        else:  # orphans (basic mode: of the program; bwrap mode: its PID 1) become ours to reap
            _check(_libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(CHILD_SUBREAPER)")
        alive_r, alive_w = os.pipe()  # the child sees EOF on alive_r once we are gone
        error_r, error_w = os.pipe()  # the child's setup errors; closed by its exec (not inheritable)
        status_r, status_w = os.pipe()  # bwrap's --json-status-fd
        pid = os.fork()
        if pid == 0:
            _child(cfg, alive_r, alive_w, error_w, status_w)
        for fd in (alive_r, error_w, status_w):
            os.close(fd)
        report["timed_out"], report["returncode"] = _supervise(pid, cfg)
        with os.fdopen(error_r, "rb") as errors:
            report["setup_error"] = errors.read().decode(errors="replace") or None
        if cfg["mode"] == "bwrap" and not report["setup_error"]:
            report["setup_error"] = _bwrap_failure(status_r, report)
        os.close(status_r)
    except BaseException:
        report["setup_error"] = traceback.format_exc()
    os.write(report_fd, json.dumps(report).encode())
    os._exit(0)


def _child(cfg: dict, alive_r: int, alive_w: int, error_w: int, status_w: int) -> None:
    """The forked child: set up, then exec the program (in namespaces mode, from a PID-1 parent; in
    bwrap mode, exec bwrap, which runs it from a PID 1 of its own)."""
    try:
        os.close(alive_w)
        os.setsid()  # its own session and group: the program cannot signal the launcher's group
        for cgroup in cfg["cgroups"]:  # join before anything else runs; children (the program) inherit it
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write("0")
        _die_with_launcher(alive_r)
        if cfg["mode"] == "bwrap":
            argv = _bwrap_argv(cfg, status_w)
            _become_program(cfg, alive_r)
            os.execve(argv[0], argv, minimal_env())
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
        os.execve(cfg["argv"][0], cfg["argv"], minimal_env())
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
    elif cfg["mode"] == "bwrap":
        # Killing bwrap kills its PID 1 (--die-with-parent), and with it the namespace; as root the
        # run's uid is swept too, which also stops PID 1 before its parent-death signal lands.
        if timed_out:
            os.kill(pid, signal.SIGKILL)
            if cfg["uid"] is not None:
                _kill_uid(cfg["uid"])
        code = _reap_until(pid)
        _reap_orphans(deadline=time.monotonic() + 1.0)
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


def _bwrap_argv(cfg: dict, status_w: int) -> list[str]:
    """bwrap's command line: the caller's fixed part, then what travels in file descriptors (inherited
    by bwrap; it closes them before the program starts)."""
    argv = [*cfg["bwrap"], "--json-status-fd", str(status_w)]
    fds = [status_w]
    if cfg["seccomp"]:
        # bwrap loads the filter as the last step before exec: the program and its children run
        # under it, bwrap's own set-up (mounts, namespaces) does not.
        fds.append(_memfd("seccomp", bytes.fromhex(cfg["seccomp"])))
        argv += ["--seccomp", str(fds[-1])]
    for name, text in cfg["files"].items():  # bwrap copies them into the sandbox's private /tmp
        fds.append(_memfd(name, text.encode()))
        argv += ["--file", str(fds[-1]), f"{WORKDIR}/{name}"]
    for fd in fds:
        os.set_inheritable(fd, True)
    return [*argv, "--", *cfg["argv"]]


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    with open(fd, "wb", closefd=False) as f:
        f.write(data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _bwrap_failure(status_r: int, report: dict) -> str | None:
    """bwrap writes {"exit-code": N} to its status pipe only once the program was exec'd: without it,
    an exit status of 1 is bwrap's own set-up failure (its message is on stderr), not the program's."""
    os.set_blocking(status_r, False)
    try:
        status = os.read(status_r, 1 << 16)
    except BlockingIOError:
        status = b""
    if report["timed_out"] or report["returncode"] != 1 or b'"exit-code"' in status:
        return None
    return "bwrap exited with 1 before starting the program (its message ends stderr)"


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
    if cfg["mode"] != "bwrap" and cfg["seccomp"]:  # bwrap loads it itself (--seccomp)
        _load_seccomp(bytes.fromhex(cfg["seccomp"]))
    _die_with_launcher(alive_r)  # again: a uid change clears the parent-death signal


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: the BPF program prctl(PR_SET_SECCOMP) takes."""
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load_seccomp(bpf: bytes) -> None:
    """Load the filter (seccomp.py's, exported as classic BPF, 8 bytes an instruction) for this process
    and what it execs; needs no_new_privs, set just before. Plain ctypes: the launcher is stdlib only."""
    program = ctypes.create_string_buffer(bpf, len(bpf))
    fprog = _SockFprog(len(bpf) // 8, ctypes.cast(program, ctypes.c_void_p))
    _check(_libc().prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "prctl(SECCOMP)")


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
