"""launch/submit.py without a cluster: the job `rl submit` builds (entrypoint, runtime_env, run folder),
its validation before any upload, token-auth and address defaults, and `rl train --resume auto`."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

import launch.submit
from launch.submit import EXCLUDES, HEAD_PYTHON, default_address, plan_submission, use_token_if_available
from rl.actors import check_cluster_fits
from rl.cli import main, resume_wanted
from rl.config import ConfigError, load_config
from tests.helpers import ROOT


def job_args(entrypoint: str) -> list[str]:
    assert entrypoint.startswith(HEAD_PYTHON)
    return shlex.split(entrypoint.removeprefix(HEAD_PYTHON))



@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_job_runs_rl_train_with_resume_auto_in_the_uploaded_repo():
    sub = plan_submission("configs/tiny.yaml", ["run.steps=3", "data.tasks=[{name: arithmetic, size: 8}]"])
    args = job_args(sub.entrypoint)
    assert args[:6] == ["-m", "rl.cli", "train", "configs/tiny.yaml", "--resume", "auto"]
    assert "data.tasks=[{name: arithmetic, size: 8}]" in args, "an override with spaces survives the shell"
    # The job's working dir is deleted by Ray: a relative run folder goes under --runs-root instead.
    assert args[-1] == "run.output_dir=~/rl-runs/runs/${run.name}"
    env = sub.runtime_env
    assert env["working_dir"] == str(ROOT) and env["env_vars"]["PYTHONUNBUFFERED"] == "1"
    assert {".venv/", "runs/", "wandb/", "checkpoints/", "*.safetensors"} <= set(env["excludes"])
    assert "pip" not in env and "uv" not in env and sub.metadata == {"rl_config": "configs/tiny.yaml", "rl_run": "tiny"}


def test_options_reach_the_runtime_env():
    sub = plan_submission("configs/tiny.yaml", ["run.output_dir=/shared/runs/a"], runs_root="/nfs", resume="never",
                          env=["WANDB_MODE=online", "X=a=b"], pip=["sympy==1.13"], excludes=["data/big/"],
                          submission_id="rl-a")
    args = job_args(sub.entrypoint)
    assert "--resume" not in args and args[-1] == "run.output_dir=/shared/runs/a", "absolute run folders are kept"
    assert sub.runtime_env["env_vars"] == {"PYTHONUNBUFFERED": "1", "WANDB_MODE": "online", "X": "a=b"}
    assert sub.runtime_env["pip"] == ["sympy==1.13"] and sub.runtime_env["excludes"] == EXCLUDES + ["data/big/"]
    assert sub.submission_id == "rl-a"


@pytest.mark.parametrize("kwargs, message", [
    ({"overrides": ["rollout.grop_size=2"]}, "unknown field 'rollout.grop_size'"),
    ({"working_dir": "rl"}, "outside the working dir"),
    ({"pip": ["a"], "uv": ["b"]}, "choose --pip or --uv"),
    ({"env": ["NOVALUE"]}, "KEY=VALUE"),
    ({"resume": "always"}, "choose auto"),
])
def test_bad_submissions_fail_before_any_upload(kwargs, message):
    overrides = kwargs.pop("overrides", [])
    with pytest.raises(ConfigError, match=message):
        plan_submission("configs/tiny.yaml", overrides, **kwargs)


def test_cli_submit_with_a_bad_override_exits_2_without_contacting_the_cluster(capsys):
    # Port 9 (discard) has no Ray on it: reaching the network would fail differently.
    assert main(["submit", "configs/tiny.yaml", "--address", "http://127.0.0.1:9", "--rollout.grop_size", "2"]) == 2
    assert "unknown field 'rollout.grop_size'" in capsys.readouterr().err


def test_token_mode_is_set_only_when_a_token_is_at_hand(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    use_token_if_available()
    assert "RAY_AUTH_MODE" not in os.environ, "no token anywhere: leave Ray's default"
    token = tmp_path / "token"
    token.write_text("0" * 64)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    use_token_if_available()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    use_token_if_available()
    assert os.environ["RAY_AUTH_MODE"] == "disabled", "an explicit choice is kept"


def test_default_address_follows_rays_conventions(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a GCS address, not the job API
    assert default_address() == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert default_address() == "http://head:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "https://ray.example:443")
    assert default_address() == "https://ray.example:443"


def test_resume_auto_continues_a_run_folder_and_starts_a_new_one(tmp_path):
    assert resume_wanted("auto", tmp_path) is False
    assert resume_wanted(None, tmp_path) is False and resume_wanted("always", tmp_path) is True
    (tmp_path / "metrics.jsonl").write_text("")  # killed before its first checkpoint: redo from step 0
    assert resume_wanted("auto", tmp_path) is True
    (tmp_path / "metrics.jsonl").unlink()
    ckpt = tmp_path / "checkpoints" / "step_000002"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text('{"step": 2}')
    assert resume_wanted("auto", tmp_path) is True


def test_unreachable_job_api_is_a_clear_error(capsys):
    assert main(["jobs", "list", "--address", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the Ray job API at http://127.0.0.1:9" in capsys.readouterr().err


def test_the_job_runs_on_the_interpreter_that_runs_ray(tmp_path):
    """The job's shell finds the interpreter of its parent (the job supervisor, a Ray worker) from the
    ray/_raylet.so it loaded; a parent without Ray leaves `python` on PATH."""
    import ray._raylet  # noqa: F401  (this process plays the job supervisor)

    probe = HEAD_PYTHON + "-c 'import sys; print(sys.prefix)'"
    with_ray = subprocess.run(["/bin/sh", "-c", probe], capture_output=True, text=True, check=True)
    assert with_ray.stdout.strip() == sys.prefix, "the venv's interpreter, not the base one or PATH's"
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho PATH-python\n")
    fake.chmod(0o755)
    no_ray = subprocess.run(["/bin/sh", "-c", f"/bin/sh -c {shlex.quote(probe)}"], capture_output=True, text=True,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, check=True)
    assert no_ray.stdout.strip() == "PATH-python"


def test_missing_dependencies_name_the_interpreter(monkeypatch, capsys):
    def no_torch(args, extra):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr("rl.cli.cmd_report", no_torch)
    assert main(["report", "some/run"]) == 2
    err = capsys.readouterr().err
    assert sys.executable in err and "'torch'" in err and "launch/setup.sh" in err


def test_submit_takes_the_same_overrides_as_train(monkeypatch):
    submitted = {}

    class FakeJobs:
        def submit_job(self, **kwargs):
            submitted.update(kwargs)
            return "raysubmit_x"

    monkeypatch.setattr(launch.submit, "client", lambda address: FakeJobs())
    assert main(["submit", "configs/tiny.yaml", "--address", "http://127.0.0.1:9", "--steps", "2", "--output-dir",
                 "/shared/run", "--algo", "dapo", "--rollout.group_size", "4"]) == 0
    args = job_args(submitted["entrypoint"])
    assert {"run.steps=2", "run.output_dir=/shared/run", "rollout.group_size=4", "grpo.mask_truncated=true"} <= set(args)
    assert main(["submit", "configs/tiny.yaml", "--address", "http://127.0.0.1:9", "--steps", "0"]) == 2, \
        "checked before upload"


def test_a_run_that_can_never_fit_the_cluster_fails_at_once_naming_what_is_missing():
    cfg = load_config(ROOT / "configs/tiny.yaml")
    groups = {"learner": cfg.learner, "rollout": cfg.rollout, "reward": cfg.reward}
    check_cluster_fits(groups, {"CPU": 2.0}, "ray://head")  # the embedded default fits a 2-core head
    with pytest.raises(ConfigError, match=r"CPU 2 wanted, 1 in all"):
        check_cluster_fits(groups, {"CPU": 1.0}, "ray://head")
    cfg.learner.gpus_per_worker = 1
    with pytest.raises(ConfigError, match=r"GPU 1 wanted, 0 in all.*learner: 1 x 1 CPU \+ 1 GPU"):
        check_cluster_fits(groups, {"CPU": 8.0}, "ray://head")
