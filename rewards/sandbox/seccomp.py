"""The sandbox's seccomp filter: syscalls a test program never needs and that widen the kernel's attack
surface, or would let it leave the sandbox's namespaces, fail with EPERM (the program gets an OSError,
it is not killed: a library that probes io_uring or ptrace then just falls back). Everything else is
allowed. Built once per process with libseccomp (the `pyseccomp` binding) on the caller's side and
handed to bwrap as a BPF program (`--seccomp FD`); the launcher, stdlib-only, never imports this.
"""
from __future__ import annotations

import errno
import functools
import tempfile

DENIED = {
    "io_uring_setup": "io_uring: a large, bug-prone kernel interface that also bypasses syscall filtering",
    "io_uring_enter": "io_uring",
    "io_uring_register": "io_uring",
    "unshare": "new namespaces would undo the sandbox's (and unprivileged user namespaces are a kernel attack surface)",
    "setns": "joining another namespace",
    "bpf": "loading BPF programs (kernel attack surface, tracing)",
    "ptrace": "inspecting or steering other processes (the tester next to the program)",
    "process_vm_readv": "reading another process's memory",
    "process_vm_writev": "writing another process's memory",
    "mount": "mounts", "umount2": "mounts", "pivot_root": "mounts",
    "keyctl": "the kernel keyring (shared per uid, kernel attack surface)",
    "add_key": "the kernel keyring", "request_key": "the kernel keyring",
    "perf_event_open": "performance counters (side channels, kernel attack surface)",
    "userfaultfd": "a classic aid to kernel exploits (stalls the kernel at chosen page faults)",
    "kexec_load": "replacing the kernel", "kexec_file_load": "replacing the kernel",
    "init_module": "kernel modules", "finit_module": "kernel modules", "delete_module": "kernel modules",
    "swapon": "swap", "swapoff": "swap", "reboot": "reboot",
    "open_by_handle_at": "opening host files by handle, around the mount namespace",
    "name_to_handle_at": "file handles (goes with open_by_handle_at)",
}
"""Syscall -> why it fails with EPERM inside the sandbox (docs/sandbox.md lists the same)."""

NAMESPACE_FLAGS = {"CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
                   "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
                   "CLONE_NEWNET": 0x40000000}
"""clone() with any of these flags fails with EPERM; plain fork and threads are untouched."""


@functools.cache
def bpf_program() -> bytes:
    """The filter as a BPF program for this machine's architecture (what `bwrap --seccomp` reads).

    Raises ImportError or OSError where pyseccomp or libseccomp is missing; the caller says so loudly.
    """
    import pyseccomp as sc  # optional at import time: the sandbox still works, weaker, without it

    deny = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        rules.add_rule(deny, name)
    # clone3 passes its flags in a struct that seccomp cannot read, so it cannot be filtered by flag:
    # ENOSYS makes glibc fall back to clone (threads, posix_spawn), whose flags are argument 0 on x86-64
    # and arm64 (libseccomp refuses the rule where the ABI orders them otherwise, so we notice).
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_FLAGS.values():
        rules.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    with tempfile.TemporaryFile() as f:  # export_bpf writes to a file descriptor, not a Python buffer
        rules.export_bpf(f)
        f.seek(0)
        return f.read()
