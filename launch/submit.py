"""`rl submit` and `rl jobs`: run `rl train` on an existing Ray cluster through Ray's Job Submission API.

    rl submit configs/tiny.yaml --address http://HEAD:8265 [--wait] [--working-dir DIR] [--section.field VALUE ...]
    rl jobs list|status|logs|stop [JOB_ID] --address http://HEAD:8265 [--follow]

`rl submit` validates the config here (a typo fails before anything is uploaded), uploads the working
dir (default: the current folder) as the job's `runtime_env.working_dir` without run folders,
checkpoints and weights (`EXCLUDES`), and starts this entrypoint on the head node:

    PYTHON -m rl.cli train CONFIG --resume auto [overrides]       (PYTHON: the interpreter of Ray on the head)

`--resume auto` makes a resubmitted job continue from the run folder's last checkpoint (or start fresh
when there is none), so the run folder must outlive the job: a relative `run.output_dir` is placed
under `--runs-root` (default `~/rl-runs` on the head node), never in the job's working dir, which Ray
deletes. With learner ranks on other nodes than the driver, put it on shared storage (NFS, a PVC).

Plain Ray works just as well (docs/cluster.md):

    ray job submit --address http://HEAD:8265 --working-dir . \\
        --runtime-env-json '{"excludes": [".venv/", "runs/", "wandb/"]}' -- python -m rl.cli train configs/tiny.yaml --resume auto

Token authentication: Ray clients send the cluster's token only when `RAY_AUTH_MODE=token` is set;
when it is unset and a token is at hand (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or
~/.ray/auth_token), these commands set it, so a token-protected cluster just works.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXCLUDES = [
    ".git/", ".venv/", "venv/", "__pycache__/", "*.egg-info/", ".pytest_cache/",
    "runs/", "wandb/", "checkpoints/", "**/checkpoints/",
    "*.safetensors", "*.gguf", "*.bin", "*.pt", "*.pth",
]
"""Never uploaded with the working dir: environments, run folders, checkpoints and weights. Ray caps a
working dir at 500 MiB (and copies it to every node), so a stray run folder would fail the upload."""

HEAD_PYTHON = (
    "py=$(sed -n 's#^.* \\(/.*\\)/lib/python[0-9.]*/site-packages/ray/_raylet\\.so$#\\1/bin/python#p' "
    "/proc/$PPID/maps 2>/dev/null | head -n 1); [ -x \"$py\" ] || py=python; exec \"$py\" ")
"""The entrypoint's interpreter: the one that runs Ray on the head. A job's shell inherits the raylet's
PATH, where a bare `python` is often not the environment Ray was installed in (`.venv/bin/ray start`
without activating the venv gives the system Python, and the job dies with "No module named 'torch'").
Ray does not tell a job its interpreter (worker titles are rewritten and /proc/PID/exe is the base
interpreter, not the venv), so we read it from the job supervisor (the shell's parent): the folder
its `ray/_raylet.so` was loaded from is `PREFIX/lib/pythonX.Y/site-packages`, so the interpreter is
PREFIX/bin/python. Where that cannot be read (no /proc), `python` on PATH. `rl train` itself names
the interpreter it runs on when the project's dependencies are missing."""

DEFAULT_ENV = {"PYTHONUNBUFFERED": "1"}
"""Job environment: unbuffered output, so `--wait` and `rl jobs logs` show progress as it happens."""


@dataclass
class Submission:
    """Everything sent to the cluster for one `rl train` job."""

    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    submission_id: str | None = None


# ------------------------------------------------------------------------------------------ building
def plan_submission(config: str, overrides: list[str], *, working_dir: str = ".", runs_root: str = "~/rl-runs",
                    resume: str = "auto", env: list[str] | None = None, pip: list[str] | None = None,
                    uv: list[str] | None = None, excludes: list[str] | None = None,
                    submission_id: str | None = None) -> Submission:
    """Validate the config with its overrides and build the job; no Ray call is made here."""
    from rl.config import ConfigError, load_config

    wd = Path(working_dir).resolve()
    if not wd.is_dir():
        raise ConfigError(f"--working-dir {working_dir} is not a folder")
    config_path = Path(config).resolve()
    if not config_path.is_relative_to(wd):
        raise ConfigError(f"config {config} is outside the working dir {wd}, so the job could not read it; "
                          "run from a folder that contains it or pass --working-dir")
    overrides = list(overrides)
    cfg = load_config(config_path, overrides)  # a bad field fails here, before any upload
    raw_out = cfg.run.output_dir
    if not (raw_out.startswith(("/", "~", "$"))):
        # The job runs in a copy of the working dir that Ray deletes; resume needs a folder that stays.
        overrides.append(f"run.output_dir={runs_root.rstrip('/')}/{raw_out}")
    if pip and uv:
        raise ConfigError("choose --pip or --uv, not both: Ray installs a job's packages with one of them")
    if resume not in ("auto", "never"):
        raise ConfigError(f"--resume {resume!r}: choose auto (continue from the last checkpoint) or never")

    args = ["-m", "rl.cli", "train", config_path.relative_to(wd).as_posix()]
    args += ["--resume", "auto"] if resume == "auto" else []
    runtime_env: dict[str, Any] = {"working_dir": str(wd), "excludes": EXCLUDES + list(excludes or []),
                                   "env_vars": {**DEFAULT_ENV, **parse_env(env or [])}}
    if pip:
        runtime_env["pip"] = list(pip)
    if uv:
        runtime_env["uv"] = list(uv)
    metadata = {"rl_config": config_path.relative_to(wd).as_posix(), "rl_run": cfg.run.name}
    return Submission(HEAD_PYTHON + shlex.join(args + overrides), runtime_env, metadata, submission_id)


def parse_env(pairs: list[str]) -> dict[str, str]:
    from rl.config import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env {pair!r} must look like KEY=VALUE")
        out[key] = value
    return out


# -------------------------------------------------------------------------------------- talking to Ray
def use_token_if_available() -> None:
    """Ray clients attach the cluster token only with RAY_AUTH_MODE=token in their environment; set it
    when the user has a token and did not choose a mode. Must run before Ray reads its config."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if os.environ.get("RAY_AUTH_TOKEN") or path.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def default_address() -> str:
    """Ray's own convention: $RAY_API_SERVER_ADDRESS, else an http(s) $RAY_ADDRESS, else the local head."""
    address = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS", "")
    return address if address.startswith(("http://", "https://")) else "http://127.0.0.1:8265"


class JobAPIError(RuntimeError):
    """The job API cannot be used: not reachable, or it refused our credentials."""


def client(address: str) -> Any:
    use_token_if_available()
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError as exc:
        raise JobAPIError(f"the Ray job API at {address} refused the request: {exc}") from exc
    except ConnectionError as exc:
        raise JobAPIError(f"cannot reach the Ray job API at {address} ({exc}); is the head running, and "
                          "is this its dashboard address (http://HEAD:8265, or an SSH tunnel to it)?") from exc


def follow(jobs: Any, job_id: str, poll_s: float = 1.0) -> str:
    """Print the job's logs as they come until it ends; returns its final status."""
    async def tail() -> None:
        async for lines in jobs.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())
    while not (status := jobs.get_job_status(job_id)).is_terminal():  # the log stream can end first
        time.sleep(poll_s)
    return str(status)


def report(jobs: Any, job_id: str) -> str:
    info = jobs.get_job_info(job_id)
    text = f"job {job_id}: {info.status}"
    if str(info.status) != "SUCCEEDED" and info.message:
        text += f" ({info.message.strip()})"
    return text


# ---------------------------------------------------------------------------------------------- CLI
def add_submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML in configs/ (inside --working-dir)")
    p.add_argument("--address", default=None, help="Ray dashboard / job API, http://HEAD:8265 "
                   "(default: $RAY_API_SERVER_ADDRESS, then an http $RAY_ADDRESS, then http://127.0.0.1:8265)")
    p.add_argument("--wait", action="store_true", help="follow the logs; exit 0 only if the job SUCCEEDED")
    p.add_argument("--working-dir", default=".", help="folder uploaded as the job's working dir (default: .)")
    p.add_argument("--runs-root", default="~/rl-runs",
                   help="where a relative run.output_dir goes on the cluster (a shared folder for multi-node)")
    p.add_argument("--resume", choices=["auto", "never"], default="auto",
                   help="auto: continue from the run folder's last checkpoint if it has one (default)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="job environment variable")
    p.add_argument("--pip", action="append", default=[], metavar="SPEC", help="pip package installed for the job")
    p.add_argument("--uv", action="append", default=[], metavar="SPEC", help="uv package installed for the job")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="another gitignore-style pattern kept out of the upload")
    p.add_argument("--job-id", default=None, help="submission id (default: one Ray makes up)")


def add_jobs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "status", "logs", "stop"])
    p.add_argument("job_id", nargs="?")
    p.add_argument("--address", default=None, help="Ray dashboard / job API (as for rl submit)")
    p.add_argument("--follow", action="store_true", help="logs: keep printing until the job ends")


def cmd_submit(args: argparse.Namespace, overrides: list[str]) -> int:
    try:
        return _submit(args, overrides)
    except JobAPIError as exc:
        print(f"rl submit: error: {exc}", file=sys.stderr)
        return 2


def cmd_jobs(args: argparse.Namespace, extra: list[str]) -> int:
    if extra:
        raise SystemExit(f"rl jobs: unexpected arguments {extra}")
    if args.action != "list" and not args.job_id:
        raise SystemExit(f"rl jobs {args.action} needs a JOB_ID (see `rl jobs list`)")
    try:
        return _jobs(args)
    except JobAPIError as exc:
        print(f"rl jobs: error: {exc}", file=sys.stderr)
        return 2


def _submit(args: argparse.Namespace, overrides: list[str]) -> int:
    sub = plan_submission(args.config, overrides, working_dir=args.working_dir, runs_root=args.runs_root,
                          resume=args.resume, env=args.env, pip=args.pip, uv=args.uv, excludes=args.exclude,
                          submission_id=args.job_id)
    address = args.address or default_address()
    jobs = client(address)
    job_id = jobs.submit_job(entrypoint=sub.entrypoint, runtime_env=sub.runtime_env, metadata=sub.metadata,
                             submission_id=sub.submission_id)
    print(job_id, flush=True)
    print(f"submitted to {address}: {sub.entrypoint}", file=sys.stderr)
    if not args.wait:
        print(f"follow it with: rl jobs logs {job_id} --follow --address {address}", file=sys.stderr)
        return 0
    try:
        status = follow(jobs, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; the job keeps running (rl jobs stop {job_id} --address {address})",
              file=sys.stderr)
        return 130
    print(report(jobs, job_id), file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def _jobs(args: argparse.Namespace) -> int:
    jobs = client(args.address or default_address())
    if args.action == "list":
        for job in sorted(jobs.list_jobs(), key=lambda j: j.start_time or 0):
            meta = job.metadata or {}
            print(f"{job.submission_id or job.job_id}\t{job.status}\t{meta.get('rl_run', '-')}\t{job.entrypoint}")
    elif args.action == "status":
        print(report(jobs, args.job_id))
    elif args.action == "logs" and args.follow:
        follow(jobs, args.job_id)
        print(report(jobs, args.job_id), file=sys.stderr)
    elif args.action == "logs":
        print(jobs.get_job_logs(args.job_id), end="")
    else:
        stopped = jobs.stop_job(args.job_id)
        print(f"job {args.job_id}: {'stop requested' if stopped else 'was not running'}")
    return 0
