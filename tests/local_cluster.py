"""A real multi-node Ray cluster on this machine for tests: `ray start --head` plus extra nodes.

    cluster = LocalCluster(num_cpus=3)                 # head: GCS, dashboard + job API on 127.0.0.1
    cluster.add_node(num_cpus=2, resources={"rollout_node": 1})
    env = cluster.client_env()                         # RAY_AUTH_MODE=token + the cluster's token file
    ... rl submit --address cluster.dashboard_url ...
    cluster.stop()                                     # only this cluster's processes

Why not `ray stop`: it stops every Ray process of the user, and other test runs may have clusters of
their own. Each `ray start` here runs in a new session (setsid), and Ray's daemons and workers stay in
that session, so `stop()` finds them by session id; job entrypoints start sessions of their own, so
the descendants of those processes are added. Each node gets its own --temp-dir: nodes sharing one
would share `runtime_resources/`, and one node's runtime-env agent deletes a job's working dir that
another still uses. Every port is picked free, so clusters of parallel runs do not collide.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, num_cpus: int, resources: dict[str, float] | None = None):
        # Unix socket paths are capped at 107 bytes and Ray nests them deep: keep the root short.
        self.root = Path(tempfile.mkdtemp(prefix="rlc", dir="/tmp"))
        self.token_path = self.root / "token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        self.sessions: list[int] = []
        self.port, self.dashboard_port = free_port(), free_port()
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        try:
            self._start("head", ["--head", f"--port={self.port}", "--dashboard-host=127.0.0.1",
                                 f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}"],
                        num_cpus, resources)
        except BaseException:
            self.stop()
            raise

    def client_env(self) -> dict[str, str]:
        """Environment for clients and for the cluster's processes: token auth with this cluster's token
        (not ~/.ray/auth_token, which other clusters share), the venv's `python` first on PATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        return env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                      "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}

    def add_node(self, num_cpus: int, resources: dict[str, float] | None = None) -> None:
        self._start(f"node{len(self.sessions)}", [f"--address=127.0.0.1:{self.port}"], num_cpus, resources)

    def _start(self, name: str, args: list[str], num_cpus: int, resources: dict[str, float] | None) -> None:
        import json

        temp_dir = self.root / name
        cmd = [RAY, "start", *args, f"--num-cpus={num_cpus}", "--num-gpus=0", f"--temp-dir={temp_dir}",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               "--disable-usage-stats"]
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        # Ray's memory monitor counts every process of the machine and kills Ray workers above 95%; on a
        # shared CI machine other jobs' memory would get this cluster's jobs killed.
        env = self.client_env() | {"RAY_memory_monitor_refresh_ms": "0"}
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.sessions.append(proc.pid)  # setsid: the session id is the pid of `ray start`
        out, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{out[-3000:]}")

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: its sessions, plus descendants (job entrypoints).
        One pass over the process table: tests poll this while a job runs."""
        members, children = [], {}
        for proc in psutil.process_iter(["ppid"]):
            children.setdefault(proc.info["ppid"], []).append(proc)
            try:
                if os.getsid(proc.pid) in self.sessions:
                    members.append(proc)
            except ProcessLookupError:
                continue
        found = {proc.pid: proc for proc in members}
        todo = list(members)
        while todo:
            for child in children.get(todo.pop().pid, []):
                if child.pid not in found:
                    found[child.pid] = child
                    todo.append(child)
        return list(found.values())

    def actor_processes(self, class_name: str, node: int | None = None) -> list[psutil.Process]:
        """Worker processes running an actor of `class_name` (Ray titles them `ray::Class` and, while a
        call runs, `ray::Class.method`), optionally only those of node `node` (0 = head, then in order
        of `add_node`)."""
        procs = []
        for proc in self.processes():
            try:
                if (" ".join(proc.cmdline()).startswith(f"ray::{class_name}")
                        and (node is None or os.getsid(proc.pid) == self.sessions[node])):
                    procs.append(proc)
            except (psutil.NoSuchProcess, ProcessLookupError):
                continue
        return procs

    def stop(self, grace_s: float = 5.0) -> None:
        procs = self.processes()
        for proc in procs:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for proc in alive + self.processes():  # and any started meanwhile
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        deadline = time.time() + 10
        while self.processes() and time.time() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
