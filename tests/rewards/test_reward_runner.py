"""RewardRunner / RewardWorker: timeouts, errors, dead workers and async rewards never stall a batch.

The rewards under test live in a temporary .py file loaded by import string ("path.py:fn"), as a
user's would. Run: .venv/bin/python -m pytest tests/rewards/test_reward_runner.py
"""
from __future__ import annotations

import logging
import os
import textwrap
import time

import pytest

from rewards.runner import RewardRunner
from rewards.spec import RewardSpec, ScoreRequest
from rewards.worker import RewardWorker, merge_stats, stats_in_pool
from rl.round import RoundWorkers, score

REWARDS_SOURCE = '''
import asyncio, os, subprocess, sys, time
from rewards.base import RewardResult, reward_spec

def exact(completion, answer, **row):
    return float(completion == answer)

def hang(completion, pid_file=None, **row):
    """Hangs when row["hang"]; first starts a child process, which the timeout must kill too."""
    if row.get("hang"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        with open(pid_file, "w") as f:
            f.write(str(child.pid))
        time.sleep(1000)
    return 1.0

def boom(completion, **row):
    if row.get("boom"):
        raise ValueError("boom " + completion)
    return 1.0

def garbage(completion, kind, **row):
    return {"string": "garbage", "nan": float("nan"), "inf": float("inf"), "list": [1.0]}[kind]

def bad_details(completion, **row):
    return RewardResult(1.0, {"obj": object()})

def die(completion, **row):
    if row.get("die") == "exit":
        os._exit(1)
    if row.get("die") == "segfault":
        import ctypes
        ctypes.string_at(0)
    return 1.0

async def async_exact(completion, answer, **row):
    await asyncio.sleep(0.01)
    return RewardResult(float(completion == answer), {"gold": answer})

def maybe(completion, value=None, **row):
    return row.get("maybe", value)

@reward_spec(raw_completion=True)
def sees_thinking(completion, **row):
    return float("<think>" in completion)

def sees_answer(completion, **row):
    return float(completion == "42")

def fake_judge(completion, judge, **row):
    return judge

def scaled(completion, factor, **row):
    return factor * 0.5
'''


@pytest.fixture(scope="module")
def rw(tmp_path_factory):
    """Import string of a reward in the temporary module: rw("exact") -> "/tmp/.../rw.py:exact"."""
    path = tmp_path_factory.mktemp("rewards") / "rw.py"
    path.write_text(textwrap.dedent(REWARDS_SOURCE))
    return lambda fn: f"{path}:{fn}"


def req(completion: str = "42", task: str = "t", **row) -> ScoreRequest:
    return ScoreRequest(completion, {"task": task, "answer": "42", **row})


@pytest.fixture
def caplog_rewards(caplog):
    caplog.set_level(logging.WARNING, logger="rewards")
    return caplog


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_timeout_kills_the_call_and_its_children_others_still_scored(rw, tmp_path, caplog_rewards):
    pid_file = tmp_path / "child.pid"
    specs = {"t": [RewardSpec(rw("exact")), RewardSpec(rw("hang"), weight=0.5, kwargs={"pid_file": str(pid_file)})]}
    with RewardRunner(specs, timeout_s=1.0, num_procs=2) as runner:
        start = time.monotonic()
        results = runner.score([req(hang=i == 1) for i in range(4)] + [req("41")])
        elapsed = time.monotonic() - start
        assert elapsed < 6.0  # one 1 s timeout, not 1000 s; generous for a loaded 2-core machine
        assert results[1].components == {"exact": 1.0, "hang": None}
        assert results[1].errors == {"hang": "timeout"} and results[1].reward == 1.0
        assert [r.reward for r in results] == [1.5, 1.0, 1.5, 1.5, 0.5]
        assert all(not r.errors for i, r in enumerate(results) if i != 1)
        deadline = time.monotonic() + 5  # the hung reward's child died with its process group
        while pid_alive(int(pid_file.read_text())) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(int(pid_file.read_text()))
        stats = runner.stats()
        assert stats["reward_timeouts/t/hang"] == 1 and stats["reward_calls/t/hang"] == 5
        assert stats["reward_worker_restarts"] == 1 and "reward_timeouts/t/exact" not in stats
        # The replacement worker scores the next batch.
        assert [r.reward for r in runner.score([req(), req()])] == [1.5, 1.5]
    assert any("timeout" in r.getMessage() for r in caplog_rewards.records)


def test_raising_reward_is_counted_and_its_first_traceback_logged_once(rw, caplog_rewards):
    with RewardRunner({"t": [RewardSpec(rw("boom")), RewardSpec(rw("exact"))]}, timeout_s=5.0) as runner:
        first = runner.score([req(boom=True), req(), req("41", boom=True)])
        second = runner.score([req(boom=True)])
        stats = runner.stats()
    assert first[0].errors == {"boom": "ValueError: boom 42"} and first[0].components["boom"] is None
    assert first[0].reward == 1.0 and first[1].reward == 2.0 and first[2].reward == 0.0
    assert first[2].all_none is False  # "exact" scored 0.0, which is a score, not None
    assert second[0].errors == {"boom": "ValueError: boom 42"}
    assert stats["reward_errors/t/boom"] == 3 and stats["reward_calls/t/boom"] == 4
    tracebacks = [r for r in caplog_rewards.records if "Traceback" in r.getMessage()]
    assert len(tracebacks) == 1 and tracebacks[0].levelno == logging.WARNING
    assert "ValueError: boom 42" in tracebacks[0].getMessage() and "in boom" in tracebacks[0].getMessage()
    assert tracebacks[0].name == "rewards"
    # stats(reset=True) cleared the counters.
    assert runner.stats() == {}


@pytest.mark.parametrize("kind, error", [("string", "TypeError"), ("nan", "ValueError"),
                                         ("inf", "ValueError"), ("list", "TypeError")])
def test_garbage_return_values_are_errors(rw, kind, error):
    with RewardRunner({"t": [RewardSpec(rw("garbage"))]}) as runner:
        (result,) = runner.score([req(kind=kind)])
    assert result.components == {"garbage": None} and result.all_none and result.reward == 0.0
    assert result.errors["garbage"].startswith(error + ":")


def test_details_must_be_json_serialisable(rw):
    with RewardRunner({"t": [RewardSpec(rw("bad_details"))]}) as runner:
        (result,) = runner.score([req()])
    assert result.errors["bad_details"].startswith("TypeError:") and result.components["bad_details"] is None
    assert "returned details that are not JSON" in result.errors["bad_details"]  # and what to return instead


@pytest.mark.parametrize("how", ["exit", "segfault"])
def test_dead_worker_is_replaced_and_the_batch_goes_on(rw, how, caplog_rewards):
    with RewardRunner({"t": [RewardSpec(rw("die")), RewardSpec(rw("exact"))]}, num_procs=1) as runner:
        results = runner.score([req(), req(die=how), req()])
        assert [r.components["die"] for r in results] == [1.0, None, 1.0]
        assert results[1].errors == {"die": "worker died"} and results[1].components["exact"] == 1.0
        assert [r.reward for r in runner.score([req(), req()])] == [2.0, 2.0]
        stats = runner.stats()
    assert stats["reward_errors/t/die"] == 1 and stats["reward_worker_restarts"] == 1
    assert any("worker died" in r.getMessage() for r in caplog_rewards.records)


def test_async_reward_is_awaited(rw):
    with RewardRunner({"t": [RewardSpec(rw("async_exact"))]}) as runner:
        good, bad = runner.score([req("42"), req("7")])
    assert good.components == {"async_exact": 1.0} and bad.components == {"async_exact": 0.0}
    assert good.details == {"async_exact": {"gold": "42"}} and not good.errors


def test_none_is_left_out_of_the_weighted_sum(rw, caplog_rewards):
    specs = {"t": [RewardSpec(rw("maybe"), weight=2.0), RewardSpec(rw("exact"), weight=0.5)],
             "none": [RewardSpec(rw("maybe"))]}
    with RewardRunner(specs) as runner:
        mixed = runner.score([req(maybe=0.25), req(), req("41"), req(maybe=1.0)])
        assert [r.reward for r in mixed] == [1.0, 0.5, 0.0, 2.5]
        assert mixed[1].components == {"maybe": None, "exact": 1.0} and not mixed[1].all_none
        assert not mixed[1].errors  # None is "not applicable", not an error
        assert not any("gave no score" in r.getMessage() for r in caplog_rewards.records)  # 2 of 4: not most
        (nothing,) = runner.score([req(task="none")])
        assert nothing.all_none and nothing.reward == 0.0 and nothing.components == {"maybe": None}
        assert runner.stats()["reward_none/t/maybe"] == 2
    warnings = [r.getMessage() for r in caplog_rewards.records if "gave no score" in r.getMessage()]
    assert len(warnings) == 1 and "none/maybe" in warnings[0]


def test_raw_reward_sees_thinking_others_see_only_the_answer(rw):
    specs = {"t": [RewardSpec(rw("sees_thinking")), RewardSpec(rw("sees_answer"))]}
    with RewardRunner(specs) as runner:
        thought, plain = runner.score([req("<think>\nhmm, 6*7\n</think>\n\n42"), req("42")])
    assert thought.components == {"sees_thinking": 1.0, "sees_answer": 1.0}
    assert plain.components == {"sees_thinking": 0.0, "sees_answer": 1.0}


def test_agreement_between_rule_and_model_rewards(rw):
    specs = {"t": [RewardSpec(rw("exact")), RewardSpec(rw("fake_judge"))],  # "judge" in the name
             "flag": [RewardSpec(rw("exact")), RewardSpec(rw("maybe"), model_based=True)],
             "rule_only": [RewardSpec(rw("exact")), RewardSpec(rw("maybe"))]}
    with RewardRunner(specs) as runner:
        runner.score([req("42", judge=0.9), req("42", judge=0.2), req("41", judge=0.1), req("41", judge=0.6)])
        runner.score([req("42", judge=0.5), req("42", task="flag", maybe=0.7), req("42", task="flag"),
                      req("42", task="rule_only", maybe=0.0)])
        stats = runner.stats()
    # t: agree, disagree, agree, disagree, agree (0.5 counts as a pass) -> 3 / 5.
    assert stats["reward_agreement/t"] == pytest.approx(0.6) and stats["reward_agreement_count/t"] == 5
    # flag: the second sample has no judge score (None), so only the first counts.
    assert stats["reward_agreement/flag"] == 1.0 and stats["reward_agreement_count/flag"] == 1
    assert "reward_agreement/rule_only" not in stats


def test_configuration_errors_are_raised_early_and_name_the_fix(rw):
    with pytest.raises(ValueError, match=r"unknown reward 'no_such_reward'"):
        RewardRunner({"t": [RewardSpec("no_such_reward")]})
    with pytest.raises(ValueError, match=r"alias"):
        RewardRunner({"t": [RewardSpec(rw("exact")), RewardSpec(rw("exact"), weight=2.0)]})
    with pytest.raises(ValueError, match=r"no rewards"):
        RewardRunner({"t": []})
    with pytest.raises(ValueError, match=r"finite"):
        RewardSpec("math", weight=float("nan"))
    with RewardRunner({"t": [RewardSpec(rw("exact")), RewardSpec(rw("exact"), alias="exact2")],
                       "u": [RewardSpec(rw("scaled"), kwargs={"factor": 3.0})]}) as runner:
        with pytest.raises(ValueError, match=r"'nope'.*known tasks: \['t', 'u'\]"):
            runner.score([req(), req(task="nope")])
        (both, scaled) = runner.score([req(), req(task="u")])
    assert both.components == {"exact": 1.0, "exact2": 1.0}
    assert scaled.components == {"scaled": 1.5}  # kwargs are bound like functools.partial


def test_parallel_processes_share_a_batch(rw):
    slow = {"t": [RewardSpec(rw("async_exact"))]}
    with RewardRunner(slow, num_procs=2) as runner:
        results = runner.score([req(str(i)) for i in range(40)] + [req()])
        stats = runner.stats()
    assert [r.reward for r in results] == [0.0] * 40 + [1.0]  # order kept though two processes answered
    assert stats["reward_calls/t/async_exact"] == 41


def test_merge_stats_sums_counts_and_reweights_agreement():
    merged = merge_stats([{"reward_calls/t/a": 3, "reward_agreement/t": 1.0, "reward_agreement_count/t": 1},
                          {"reward_calls/t/a": 2, "reward_agreement/t": 0.5, "reward_agreement_count/t": 3}])
    assert merged == {"reward_calls/t/a": 5, "reward_agreement/t": 0.625, "reward_agreement_count/t": 4}


@pytest.fixture
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
def test_ray_actor_pool_scores_in_order(rw, ray_local):
    specs = {"t": [RewardSpec(rw("exact")), RewardSpec(rw("hang"), kwargs={"pid_file": os.devnull})]}
    actor = ray_local.remote(num_cpus=0.5)(RewardWorker)
    workers = [actor.remote(specs, timeout_s=2.0) for _ in range(2)]
    requests = [req(str(40 + i % 3), hang=i == 4) for i in range(7)]
    results = score(RoundWorkers([], workers), requests)
    assert [r.components["exact"] for r in results] == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert results[4].errors == {"hang": "timeout"} and [r.reward for r in results][:3] == [1.0, 1.0, 2.0]
    assert score(RoundWorkers([], workers), [req()])[0].reward == 2.0  # fewer requests than actors
    stats = stats_in_pool(workers)
    assert stats["reward_calls/t/exact"] == 8 and stats["reward_timeouts/t/hang"] == 1
    ray_local.get([w.close.remote() for w in workers])


def test_model_based_and_per_reward_timeouts(rw):
    """Model-based rewards (by name or flag) get model_timeout_s; a spec's own timeout_s wins over both."""
    hang = {"kwargs": {"pid_file": os.devnull}}
    specs = {"t": [RewardSpec(rw("hang"), alias="rule", **hang),
                   RewardSpec(rw("hang"), alias="judge_like", model_based=True, **hang),
                   RewardSpec(rw("hang"), alias="own", timeout_s=0.5, model_based=True, **hang)]}
    with RewardRunner(specs, timeout_s=0.5, model_timeout_s=3.0) as runner:
        assert [runner.time_limit("t", i) for i in range(3)] == [0.5, 3.0, 0.5]
        start = time.monotonic()
        result = runner.score([req(hang=True)])[0]
        elapsed = time.monotonic() - start
    assert result.errors == {"rule": "timeout", "judge_like": "timeout", "own": "timeout"}
    assert 4.0 <= elapsed < 4.0 + 30  # 0.5 + 3.0 + 0.5 s of waiting, plus three process restarts
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        RewardSpec("math", timeout_s=0)
    with pytest.raises(ValueError, match="model_timeout_s > 0"):
        RewardRunner({"t": [RewardSpec("math")]}, model_timeout_s=-1)
    # Without model_timeout_s, model-based rewards share timeout_s.
    with RewardRunner({"t": [RewardSpec(rw("fake_judge"), kwargs={"judge": 1.0})]}, timeout_s=2.0) as runner:
        assert runner.time_limit("t", 0) == 2.0 and runner.specs["t"][0].is_model_based
