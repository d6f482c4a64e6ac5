"""The bwrap mode's command line: a root that holds only the interpreter, its standard library and the
shared libraries it loads (all read-only), a private size-limited /tmp with the run's files, a minimal
/dev, a fresh /proc, and new user, PID, network, IPC, UTS and cgroup namespaces.

The caller builds the fixed part here (once per process for the root, per run for the sizes); the
launcher adds what lives in file descriptors (the files, the seccomp program, the status pipe) and
execs bwrap as the run's private uid (see launcher.py for why not `bwrap --uid`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

from rewards.sandbox.launcher import SAFE_PATH, WORKDIR, minimal_env

BWRAP = shutil.which("bwrap", path=SAFE_PATH)
"""bubblewrap's binary (Debian package `bubblewrap`); None where it is not installed."""

NAMESPACES = ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup-try", "--disable-userns", "--hostname", "sandbox",
              "--die-with-parent", "--new-session", "--cap-drop", "ALL")
"""Every namespace bwrap makes; --disable-userns also stops nested user namespaces (seccomp does too)."""

_LAYOUT_PROGRAM = """
import json, os, sys, sysconfig
print(json.dumps({"stdlib": os.path.dirname(os.__file__), "platstdlib": sysconfig.get_path("platstdlib"),
                  "prefix": sys.prefix, "base_prefix": sys.base_prefix,
                  "multiarch": sysconfig.get_config_var("MULTIARCH") or ""}))
"""


def interpreter_layout(python: str) -> dict:
    """Where `python` keeps its standard library and prefixes, asked from itself, run directly."""
    out = subprocess.run([python, "-I", "-c", _LAYOUT_PROGRAM], capture_output=True, text=True,
                         env=minimal_env(), timeout=60, check=True)
    return json.loads(out.stdout)


def root_args(python: str, layout: dict) -> tuple[str, ...]:
    """bwrap options that build the sandbox's root: the interpreter and the libraries, read-only."""
    args: list[str] = []
    path = python
    while os.path.islink(path):  # /usr/bin/python3 -> python3.11: the same links inside
        target = os.readlink(path)
        args += ["--symlink", target, path]
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
    dirs = [os.path.realpath(path), layout["stdlib"], layout["platstdlib"]]
    if layout["prefix"] != layout["base_prefix"]:
        dirs.append(layout["prefix"])  # a venv: its site-packages (readable by the run's uid or not)
    if layout["base_prefix"] != "/usr":
        dirs.append(layout["base_prefix"])  # e.g. /opt/python: its libpython and lib-dynload's libraries
    for lib in ("/lib", "/lib64", "/usr/lib64", f"/usr/lib/{layout['multiarch']}" if layout["multiarch"] else ""):
        if lib and os.path.islink(lib):  # merged /usr: /lib -> usr/lib
            args += ["--symlink", os.readlink(lib), lib]
        elif lib and os.path.isdir(lib):
            dirs.append(lib)
    return tuple(args) + _ro_binds(dirs)


def _ro_binds(paths: list[str]) -> tuple[str, ...]:
    """--ro-bind each existing path once, skipping those inside one already bound."""
    kept: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)}):
        if not any(path.startswith(parent.rstrip("/") + "/") for parent in kept):
            kept.append(path)
    return tuple(arg for path in kept for arg in ("--ro-bind", path, path))


def command(bwrap: tuple[str, ...], tmpfs_mb: int) -> list[str]:
    """The fixed part of one run's bwrap command line (`bwrap` is Isolation.bwrap: binary and root)."""
    size = str(tmpfs_mb << 20)
    return [*bwrap[:1], *NAMESPACES, *bwrap[1:], "--proc", "/proc", "--dev", "/dev",
            "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/dev/shm",
            "--perms", "0700", "--dir", WORKDIR, "--chdir", WORKDIR]
