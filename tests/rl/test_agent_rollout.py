"""rl/rollout/agent_loop.py with a scripted engine (no model) and the real Qwen3 tokenizer: token-in/token-out
contexts, loss masks (env tokens 0, model tokens 1), logprobs, turn and token limits, and envs or tools
that raise, hang or flood, which end only their own episode. Also the RolloutWorker routing, the
driver's agent requests, and the env metrics."""
from __future__ import annotations

import dataclasses
import time

import pytest
from transformers import AutoTokenizer

from tests.agent_helpers import LOGPROB, FakeEngine, call, store_policy, tool_results
from envs import Env, StepResult
from envs.agents.tools import ToolEnv, tool_schema
from envs.base import env_prompt
from envs.tasks import get_task_spec
from rewards.env import env_reward
from rl.rollout.agent_loop import AgentRollouts, ObservationTokens
from rl.metrics import env_metrics
from rl.models import qwen3_tokenizer_dir
from rl.thinking.tags import EMPTY_THINK
from rl.thinking.chat import render_chat
from rl.types import RolloutRequest

HERE = __file__


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))


def request(tok, env: str, row: dict, *, max_new: int = 1024, thinking: bool = False, system: str | None = None,
            uid: str = "1-0") -> RolloutRequest:
    messages, tools = env_prompt(env, row)
    if system:
        messages = [{"role": "system", "content": system}, *messages]
    text = render_chat(tok, messages, thinking=thinking, tools=tools)
    return RolloutRequest(uid=uid, task="t", prompt_ids=tok.encode(text, add_special_tokens=False),
                          max_new_tokens=max_new, thinking=thinking, env=env, row=row)


def segments(mask: list[int]) -> list[tuple[int, int, int]]:
    """(value, start, end) runs of the loss mask."""
    runs, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            runs.append((mask[start], start, i))
            start = i
    return runs


def store_row(kind: str) -> dict:
    return next(r for r in get_task_spec("agent_store").generate(40, 0, {}) if r["goal"]["kind"] == kind)


# ---------------------------------------------------------------------------------- tokens and masks
def test_tool_episode_keeps_sampled_tokens_and_masks_env_tokens(tok):
    engine = FakeEngine(tok, store_policy)
    req = request(tok, "store", store_row("cancel"))
    [r] = AgentRollouts(engine, tok).run([req], weights_version=7)

    info = r.env_info
    assert (info["turns"], info["tool_calls"], info["tool_errors"]) == (4, 3, 0)
    assert info["reward"] == 1.0 and info["success"] is True and info["stop_reason"] == "done" and info["error"] is None
    assert r.finish_reason == "stop" and r.weights_version == 7 and r.text == "Done."
    assert len(r.response_ids) == len(r.loss_mask) == len(r.logprobs) <= req.max_new_tokens

    runs = segments(r.loss_mask)
    assert [v for v, _, _ in runs] == [1, 0, 1, 0, 1, 0, 1]                    # model, env, model, ...
    model_runs = [r.response_ids[s:e] for v, s, e in runs if v == 1]
    assert model_runs == engine.emitted                                         # exactly the sampled ids
    for v, s, e in runs:
        assert set(r.logprobs[s:e]) == ({LOGPROB} if v else {0.0})
    # Token-in/token-out: every turn was generated from prompt + all earlier ids, never re-tokenised.
    for k, (prompts, _) in enumerate(engine.calls):
        assert prompts[0] == req.prompt_ids + r.response_ids[:runs[2 * k][1]]
    # Env tokens are the chat template's rendering of the tool message plus the next generation prompt.
    for (v, s, e), result in zip([run for run in runs if run[0] == 0], tool_results(tok.decode(r.response_ids))):
        assert tok.decode(r.response_ids[s:e]) == (f"\n<|im_start|>user\n<tool_response>\n{result}\n</tool_response>"
                                                   f"<|im_end|>\n<|im_start|>assistant\n{EMPTY_THINK}")
    transcript = info["messages"]
    assert [m["role"] for m in transcript] == ["assistant", "tool"] * 3 + ["assistant"]


def test_thinking_mode_observations_end_with_a_plain_generation_prompt(tok):
    row = {"secret": 9, "low": 1, "high": 20, "guesses": 5}
    engine = FakeEngine(tok, lambda context: "<think>\nmiddle\n</think>\n\n10")
    [r] = AgentRollouts(engine, tok).run([request(tok, "guess_number", row, thinking=True)])
    env_run = next((s, e) for v, s, e in segments(r.loss_mask) if v == 0)
    assert tok.decode(r.response_ids[slice(*env_run)]) == \
        "\n<|im_start|>user\nLower. 4 guesses left.<|im_end|>\n<|im_start|>assistant\n"
    assert r.env_info["turns"] == 5 and r.env_info["reward"] == 0.0 and r.env_info["success"] is False
    assert r.finish_reason == "stop" and env_reward(r.text, env_info=r.env_info).score == 0.0


def test_soft_switch_observations_end_with_a_plain_generation_prompt(tok):
    """thinking.switch=soft: after a tool result the next generation prompt pre-fills nothing in
    non-thinking mode either; the policy writes the empty block itself, as in its first turn."""
    row = {"secret": 9, "low": 1, "high": 20, "guesses": 5}
    engine = FakeEngine(tok, lambda context: "<think>\n\n</think>\n\n10")
    req = dataclasses.replace(request(tok, "guess_number", row), soft_switch=True)
    [r] = AgentRollouts(engine, tok).run([req])
    env_run = next((s, e) for v, s, e in segments(r.loss_mask) if v == 0)
    assert tok.decode(r.response_ids[slice(*env_run)]) == \
        "\n<|im_start|>user\nLower. 4 guesses left.<|im_end|>\n<|im_start|>assistant\n"


def test_observation_tokens_close_a_turn_that_ended_with_another_eos(tok):
    obs = ObservationTokens(tok)
    messages = [{"role": "tool", "content": "42"}]
    after_im_end = tok.decode(obs.ids(messages, False, tok.convert_tokens_to_ids("<|im_end|>")))
    after_eot = tok.decode(obs.ids(messages, False, tok.convert_tokens_to_ids("<|endoftext|>")))
    assert after_im_end.startswith("\n<|im_start|>user\n<tool_response>\n42\n")
    assert after_eot == "<|im_end|>" + after_im_end


def test_project_template_gives_the_same_observation_tokens(tok):
    """A tokenizer whose template does not know enable_thinking (SmolLM2's ChatML) renders with the
    project template; its tool turns must tokenise as they would in a whole rendered conversation."""
    plain = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    plain.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"  # no enable_thinking
    messages = [{"role": "tool", "content": "a"}, {"role": "tool", "content": "b"}]
    ids = ObservationTokens(plain).ids(messages, False, plain.convert_tokens_to_ids("<|im_end|>"))
    assert ids == ObservationTokens(tok).ids(messages, False, tok.convert_tokens_to_ids("<|im_end|>"))


# ------------------------------------------------------------------------------------------- limits
def test_max_turns_ends_an_episode_that_keeps_calling_tools(tok):
    engine = FakeEngine(tok, lambda context: call("list_orders", user_id="U-0"))
    [r] = AgentRollouts(engine, tok).run([request(tok, "store", store_row("cancel"))])
    info = r.env_info
    assert info["stop_reason"] == "max_turns" and info["turns"] == 6 == len(engine.calls)
    assert info["tool_calls"] == 6 and info["tool_errors"] == 6 and info["reward"] is None
    assert r.finish_reason == "env" and env_reward(r.text, env_info=info).score == 0.0
    assert segments(r.loss_mask)[-1][0] == 1       # nothing is appended after the last model turn


def test_token_budget_counts_model_and_env_tokens_of_all_turns(tok):
    row = store_row("cancel")
    for budget in (5, 60, 150, 300):
        engine = FakeEngine(tok, store_policy)
        [r] = AgentRollouts(engine, tok).run([request(tok, "store", row, max_new=budget)])
        assert len(r.response_ids) <= budget
        assert r.env_info["stop_reason"] == "token_budget" and r.finish_reason == "length"
        assert all(limit >= 1 for _, limits in engine.calls for limit in limits)
        # each turn was asked for exactly the tokens left
        for prompts, limits in engine.calls:
            assert limits == [budget - (len(prompts[0]) - len(r.request.prompt_ids))]


def test_episodes_of_different_lengths_share_waves(tok):
    rows = [store_row("cancel"), store_row("total")]
    engine = FakeEngine(tok, store_policy)
    out = AgentRollouts(engine, tok).run([request(tok, "store", row, uid=f"1-{i}") for i, row in enumerate(rows)])
    assert [r.env_info["turns"] for r in out] == [4, 3]
    assert [len(p) for p, _ in engine.calls] == [2, 2, 2, 1]                   # the short one leaves early
    assert all(r.env_info["success"] for r in out)


# ----------------------------------------------------------------------------- envs that misbehave
class RaisingEnv(Env):
    max_turns = 3

    def step(self, assistant_text):
        raise RuntimeError("the env has a bug")


class HangingEnv(Env):
    max_turns = 3
    step_timeout_s = 0.5

    def step(self, assistant_text):
        time.sleep(60)


class FloodingEnv(Env):
    max_turns = 2
    max_observation_chars = 50

    def step(self, assistant_text):
        return StepResult([{"role": "user", "content": "z" * 5_000_000}], done=False)


class BadResultEnv(Env):
    max_turns = 2

    def step(self, assistant_text):
        return {"done": True}


class BadResetEnv(Env):
    def reset(self, row):
        raise KeyError("secret")


class AsyncEnv(Env):
    max_turns = 3

    def reset(self, row):
        self.steps = 0
        return super().reset(row)

    async def step(self, assistant_text):
        self.steps += 1
        done = self.steps == 2
        return StepResult([{"role": "user", "content": "again"}], done=done, reward=0.5 if done else None,
                          success=done)


def test_a_raising_hanging_or_flooding_env_ends_only_its_own_episode(tok):
    names = ["RaisingEnv", "HangingEnv", "FloodingEnv", "BadResultEnv", "BadResetEnv", "AsyncEnv"]
    row = {"prompt": "go"}
    reqs = [request(tok, "store", store_row("cancel"), uid="1-0")]
    go = tok.encode(render_chat(tok, [{"role": "user", "content": "go"}], thinking=False), add_special_tokens=False)
    reqs += [RolloutRequest(uid=f"1-{i + 1}", task="t", prompt_ids=go, max_new_tokens=200, thinking=False,
                            env=f"{HERE}:{name}", row=row) for i, name in enumerate(names)]
    engine = FakeEngine(tok, lambda context: store_policy(context) if "find_user" in context.split("<|im_start|>")[1]
                        else "ok")
    t0 = time.perf_counter()
    out = AgentRollouts(engine, tok).run(reqs)
    assert time.perf_counter() - t0 < 10                                       # the hung step did not block it
    good, raising, hanging, flooding, bad_result, bad_reset, async_env = out
    assert good.env_info["success"] and good.env_info["stop_reason"] == "done"
    assert raising.env_info["stop_reason"] == "env_error"
    assert "RuntimeError: the env has a bug" in raising.env_info["error"]
    assert hanging.env_info["stop_reason"] == "env_timeout" and "0.5" in hanging.env_info["error"]
    assert raising.finish_reason == hanging.finish_reason == "env" and raising.env_info["turns"] == 1
    assert flooding.env_info["stop_reason"] == "max_turns"
    flood_obs = flooding.env_info["messages"][1]["content"]
    assert flood_obs.startswith("z" * 50) and "4999950 more characters" in flood_obs
    assert flooding.loss_mask.count(0) < 60 and len(flooding.response_ids) <= 200
    assert bad_result.env_info["stop_reason"] == "env_error"
    assert "expected envs.base.StepResult" in bad_result.env_info["error"]
    assert bad_reset.env_info["stop_reason"] == "env_error" and "reset: KeyError" in bad_reset.env_info["error"]
    assert bad_reset.response_ids == [] and bad_reset.env_info["turns"] == 0
    assert async_env.env_info["reward"] == 0.5 and async_env.env_info["success"] and async_env.env_info["turns"] == 2
    for r in (raising, hanging, bad_result, bad_reset):
        assert env_reward(r.text, env_info=r.env_info).score is None         # not the model's fault


class ToolTroubleEnv(ToolEnv):
    max_turns = 4
    tool_timeout_s = 0.5
    max_output_chars = 100

    def reset(self, row):
        self.tools = [tool_schema(name, name, {}) for name in ("boom", "sleep", "flood")]
        return [{"role": "user", "content": "go"}]

    def functions(self):
        return {"boom": lambda: 1 / 0, "sleep": lambda: time.sleep(30), "flood": lambda: "q" * 1_000_000}

    def finish(self, answer):
        return StepResult([], done=True, reward=1.0, success=True)


def test_a_tool_that_raises_hangs_or_floods_is_an_observation_not_a_failure(tok):
    script = iter([call("boom") + call("sleep") + call("flood"), "<tool_call>{oops</tool_call>", "finished"])
    engine = FakeEngine(tok, lambda context: next(script))
    t0 = time.perf_counter()
    [r] = AgentRollouts(engine, tok).run([request(tok, f"{HERE}:ToolTroubleEnv", {})])
    assert time.perf_counter() - t0 < 10
    info = r.env_info
    assert info["stop_reason"] == "done" and info["success"] and info["turns"] == 3
    assert (info["tool_calls"], info["tool_errors"]) == (4, 3)               # boom, sleep, malformed
    boom, sleep, flood, malformed = [m["content"] for m in info["messages"] if m["role"] == "tool"]
    assert "ZeroDivisionError" in boom and "did not finish within 0.5 s" in sleep and "not valid JSON" in malformed
    assert flood.startswith("q" * 100) and "999900 more characters" in flood


# ---------------------------------------------------------------------------- worker, driver, metrics
def test_rollout_worker_routes_agent_requests_and_keeps_order(tok):
    from rl.rollout.worker import RolloutWorker

    engine = FakeEngine(tok, lambda context: "7" if "guess" in context.lower() else "single answer")
    worker = RolloutWorker(str(qwen3_tokenizer_dir()), "scripted", temperature=1.0, top_p=1.0, seed=0, engine=engine)
    game = request(tok, "guess_number", {"secret": 7, "low": 1, "high": 9, "guesses": 3}, uid="1-1")
    plain = RolloutRequest(uid="1-0", task="t", prompt_ids=tok.encode("<|im_start|>user\nhi<|im_end|>\n"),
                           max_new_tokens=16, thinking=False)
    out = worker.generate([plain, game, plain])
    assert [r.request.uid for r in out] == ["1-0", "1-1", "1-0"]
    assert out[0].env_info == {} and out[0].text == "single answer"
    assert out[0].loss_mask == [1] * len(out[0].response_ids)
    assert out[1].env_info["success"] and out[1].env_info["turns"] == 1 and out[1].text == "7"


@pytest.mark.parametrize("switch", ["soft", "hard"])
def test_driver_builds_agent_requests_with_tools_in_the_prompt(tok, switch):
    from envs.tasks import load_task
    from rl.config import load_config
    from rl.data import TaskMix
    from rl.round import build_requests, check_prompt_lengths

    cfg = load_config(None, ["rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_prompt_tokens=600",
                             "rollout.max_new_tokens=1024", f"thinking.switch={switch}",
                             "data.tasks=[{name: agent_store, size: 8, eval_size: 2}]"])
    tasks = [load_task(t, 0) for t in cfg.data.tasks]
    check_prompt_lengths(tasks, tok, cfg.rollout.max_prompt_tokens)
    with pytest.raises(Exception, match="max_prompt_tokens"):
        check_prompt_lengths(tasks, tok, 200)                                   # tools count in the length
    requests, rows, prefixes = build_requests(0, cfg, TaskMix(tasks, 0), tok)
    assert all(r.env == "store" and r.row is not None and "goal" in r.row for r in requests)
    text = tok.decode(requests[0].prompt_ids)
    assert "<tools>" in text and '"name": "cancel_order"' in text
    if switch == "hard":  # the template's non-thinking prompt: the empty block is written for the policy
        assert text.endswith(f"<|im_start|>assistant\n{EMPTY_THINK}") and prefixes[0] == EMPTY_THINK
    else:  # the flag asks; the policy writes the (empty) block itself, in the first turn and every later one
        assert text.endswith("/no_think<|im_end|>\n<|im_start|>assistant\n") and prefixes[0] == ""
        assert all(r.soft_switch and not r.thinking for r in requests)
    assert requests[0].row == {k: v for k, v in rows[0].items() if k != "thinking"}

    out = AgentRollouts(FakeEngine(tok, store_policy), tok).run(requests)
    assert all(r.env_info["success"] for r in out)


def test_env_metrics_per_step_and_per_task(tok):
    engine = FakeEngine(tok, store_policy)
    out = AgentRollouts(engine, tok).run([request(tok, "store", store_row("cancel")),
                                          request(tok, "store", store_row("total"))])
    m = env_metrics(out)
    assert m["env/turns"] == 3.5 and m["env/tool_calls"] == 2.5 and m["env/tool_errors"] == 0.0
    assert m["env/success"] == 1.0 and m["env/error_rate"] == 0.0 and m["env/t/turns"] == 3.5
    assert m["time/env"] > 0 and m["time/env_generation"] > 0
    assert env_metrics([]) == {}
    cut = AgentRollouts(FakeEngine(tok, store_policy), tok).run(
        [request(tok, "store", store_row("cancel"), max_new=40)])
    assert cut[0].env_info["success"] is None and env_metrics(cut)["env/success"] == 0.0   # unfinished: failed
    silent = AgentRollouts(FakeEngine(tok, lambda c: "hi"), tok).run([request(tok, "single_turn", {"prompt": "hi"})])
    assert silent[0].env_info["stop_reason"] == "done" and "env/success" not in env_metrics(silent)
