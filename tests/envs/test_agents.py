"""The built-in agent envs, driven by scripted policies (no model): each reaches success and failure;
tool-call handling (malformed, unknown, bad arguments, raising, slow, huge); lookup; the env reward;
the agent tasks as task categories; the runnable example in examples/."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent_helpers import call, store_policy
from envs import Env, StepResult, get_env
from envs.agents.tools import ToolEnv, ToolError, tool_schema
from envs.base import EnvError, call_all, env_prompt
from envs.tasks import get_task_spec, load_task
from rewards.env import env_reward
from rewards.spec import RewardSpec
from rl.config import ConfigError, TaskConfig
from tests.helpers import ROOT



def rows(task: str, n: int = 12, **options) -> list[dict]:
    return get_task_spec(task).generate(n, 0, options)


def play(env: Env, row: dict, policy) -> tuple[list[StepResult], list[dict]]:
    """Run one episode with `policy(conversation so far) -> assistant text`, as the rollout would."""
    conversation = env.reset(row)
    results = []
    for _ in range(env.max_turns):
        text = policy(conversation)
        conversation.append({"role": "assistant", "content": text})
        result = env.step(text)
        results.append(result)
        conversation += result.messages
        if result.done:
            break
    return results, conversation


# -------------------------------------------------------------------------------------------- python
def test_python_env_solves_with_the_tool_and_fails_on_a_wrong_answer():
    row = next(r for r in rows("agent_python") if "prime" in r["prompt"])
    n = int(row["prompt"].split("below ")[1].rstrip("?"))
    program = f"print(sum(p for p in range(2, {n}) if all(p % d for d in range(2, int(p**0.5) + 1))))"

    def solver(conversation):
        if conversation[-1]["role"] == "tool":
            return f"The sum is \\boxed{{{conversation[-1]['content'].strip()}}}."
        return call("python", code=program)

    results, _ = play(get_env("python")(), row, solver)
    assert [r.done for r in results] == [False, True]
    assert results[0].tool_calls == 1 and results[0].tool_errors == 0
    assert results[0].messages[0]["content"].strip() == row["answer"]          # the sandbox really ran it
    assert results[-1].reward == 1.0 and results[-1].success is True

    results, _ = play(get_env("python")(), row, lambda c: "I think it is \\boxed{12}.")
    assert len(results) == 1 and results[0].reward == 0.0 and results[0].success is False


def test_python_tool_reports_failures_to_the_model():
    env = get_env("python")()
    env.reset({"prompt": "q", "answer": "1"})
    crash = env.step(call("python", code="1 / 0"))
    assert not crash.done and crash.tool_errors == 0                            # a failing program is a result
    assert "ZeroDivisionError" in crash.messages[0]["content"] and "exit status 1" in crash.messages[0]["content"]
    env.run_limits = type(env.run_limits)(wall_s=1.0)
    t0 = time.perf_counter()
    slow = env.step(call("python", code="while True: pass"))
    assert time.perf_counter() - t0 < 5 and slow.tool_errors == 1 and "killed" in slow.messages[0]["content"]
    huge = env.step(call("python", code="print('x' * 100000)"))
    assert len(huge.messages[0]["content"]) < 1200 and "truncated" in huge.messages[0]["content"]
    empty = env.step(call("python", code=""))
    assert empty.tool_errors == 1 and "non-empty" in empty.messages[0]["content"]


def test_python_questions_have_the_answers_a_program_computes():
    for row in rows("agent_python", 40):
        assert row["answer"].lstrip("-").isdigit()
    assert len({r["prompt"] for r in rows("agent_python", 40)}) == 40
    with pytest.raises(ValueError, match="max_n"):
        rows("agent_python", 2, max_n=5)


# -------------------------------------------------------------------------------------------- search
def test_search_env_retrieves_and_grades_against_the_reference():
    row = next(r for r in rows("agent_search", 46) if r["prompt"] == "Who founded Port Anselm?")

    def researcher(conversation):
        if conversation[-1]["role"] != "tool":
            return call("search", query="Port Anselm founded")
        found = "Ilse Varga" if "Ilse Varga" in conversation[-1]["content"] else "unknown"
        return f"Answer: {found}"

    results, _ = play(get_env("search")(), row, researcher)
    assert "[port-anselm]" in results[0].messages[0]["content"]
    assert results[-1].reward == 1.0 and results[-1].success

    results, _ = play(get_env("search")(), row, lambda c: "Answer: Benedikt Osk")
    assert results[0].reward == 0.0 and results[0].success is False
    results, _ = play(get_env("search")(), row, lambda c: "Answer: Ilse")       # partial credit, no success
    assert results[0].reward == pytest.approx(2 / 3) and results[0].success is False


def test_every_search_question_is_answerable_from_its_top_passages():
    from envs.agents.search import corpus_index

    qs = rows("agent_search", 100)
    assert len(qs) == 46
    for q in qs:
        assert q["doc_id"] in [d["id"] for d in corpus_index().search(q["prompt"])], q["prompt"]
    env = get_env("search")()
    env.reset(qs[0])
    assert env.step(call("search", query="the of a")).messages[0]["content"].startswith("No results")


# ---------------------------------------------------------------------------------------------- game
def binary_search(conversation):
    low, high = map(int, re.search(r"from (\d+) to (\d+)", conversation[0]["content"]).groups())
    guess = None
    for m in conversation[1:]:
        if m["role"] == "assistant":
            guess = int(m["content"])
        elif m["content"].startswith("Higher"):
            low = guess + 1
        elif m["content"].startswith("Lower"):
            high = guess - 1
    return str((low + high) // 2)


def test_guess_number_binary_search_always_wins_and_a_fixed_guess_loses():
    games = rows("agent_game", 40)
    for row in games:
        results, _ = play(get_env("guess_number")(), row, binary_search)
        assert results[-1].done and results[-1].reward == 1.0 and results[-1].success
        assert len(results) <= row["guesses"]
    row = next(r for r in games if r["secret"] != 7)
    results, conversation = play(get_env("guess_number")(), row, lambda c: "My guess: 7")
    assert len(results) == row["guesses"] and results[-1].reward == 0.0 and results[-1].success is False
    assert conversation[-1]["content"] == f"Out of guesses: the number was {row['secret']}."


def test_guess_number_invalid_moves_cost_a_guess():
    env = get_env("guess_number")()
    env.reset({"secret": 5, "low": 1, "high": 20, "guesses": 3})
    first = env.step("no idea")
    assert not first.done and first.info["invalid_moves"] == 1
    assert "Reply with one integer" in first.messages[0]["content"]
    assert "2 guesses left" in first.messages[0]["content"]
    assert env.step("99").info["invalid_moves"] == 2                           # out of range
    assert env.step("<think>maybe 3</think>\n\n5").success                     # a number in the thought is not a move


# --------------------------------------------------------------------------------------------- store
def as_text(conversation):
    """The conversation as the chat template shows it (what `store_policy` reads)."""
    from rl.thinking.chat import render_project_chat

    return render_project_chat(conversation, thinking=False)


@pytest.mark.parametrize("kind", ["cancel", "ship_to", "total"])
def test_store_scripted_agent_chains_ids_through_calls(kind):
    row = next(r for r in rows("agent_store", 40) if r["goal"]["kind"] == kind)
    results, conversation = play(get_env("store")(), row, lambda c: store_policy(as_text(c)))
    assert results[-1].done and results[-1].reward == 1.0 and results[-1].success
    assert sum(r.tool_calls for r in results) == (2 if kind == "total" else 3)
    assert sum(r.tool_errors for r in results) == 0
    if kind != "total":  # the id the last call used came from the list_orders result
        last_call = json.loads(conversation[-3]["content"].split("<tool_call>")[1].split("</tool_call>")[0])
        assert last_call["arguments"]["order_id"] in conversation[-4]["content"]


def test_store_wrong_action_or_no_action_fails():
    row = next(r for r in rows("agent_store", 40) if r["goal"]["kind"] == "cancel")
    results, _ = play(get_env("store")(), row, lambda c: store_policy(as_text(c), wrong=True))
    assert results[-1].done and results[-1].reward == 0.0 and results[-1].info["state_ok"] is False
    results, _ = play(get_env("store")(), row, lambda c: "Done, cancelled!")
    assert results[0].reward == 0.0 and results[0].success is False
    env = get_env("store")()
    env.reset(row)
    made_up = env.step(call("cancel_order", order_id="O-0000"))
    assert made_up.tool_errors == 1 and "no order with id 'O-0000'" in made_up.messages[0]["content"]


# ------------------------------------------------------------------------------- ToolEnv error handling
class Calculator(ToolEnv):
    max_calls_per_turn = 2
    tool_timeout_s = 0.5
    max_output_chars = 100

    def reset(self, row):
        self.tools = [tool_schema("add", "Add.", {"a": "integer", "b": "integer"})]
        return [{"role": "user", "content": "1 + 2?"}]

    def functions(self):
        return {"add": lambda a, b: a + b, "slow": lambda: time.sleep(5), "huge": lambda: "y" * 10_000,
                "bug": lambda: {}["missing"], "refuse": self.refuse, "broken": self.broken}

    def refuse(self):
        raise ToolError("not today")

    def broken(self):
        raise EnvError("the backend is down")

    def finish(self, answer):
        return StepResult([], done=True, reward=float(answer.strip() == "3"))


def test_tool_env_turns_every_kind_of_bad_call_into_an_error_observation():
    env = Calculator()
    env.reset({})
    ok = env.step(call("add", a=1, b=2))
    assert ok.messages == [{"role": "tool", "content": "3"}] and (ok.tool_calls, ok.tool_errors) == (1, 0)
    cases = {
        "<tool_call>{not json}</tool_call>": "not valid JSON",
        '<tool_call>{"name": "add"}</tool_call>': 'must be {"name"',
        call("mul", a=1): "unknown tool 'mul'",
        call("add", a=1): "bad arguments for add",
        call("add", a=1, b=2, c=3): "bad arguments for add",
        call("slow"): "did not finish within 0.5 s",
        call("bug"): "bug raised KeyError",
        call("refuse"): "Error: not today",
    }
    for text, expected in cases.items():
        result = env.step(text)
        assert not result.done and result.tool_errors == 1, text
        assert expected in result.messages[0]["content"], (text, result.messages)
    huge = env.step(call("huge"))
    assert huge.tool_errors == 0 and len(huge.messages[0]["content"]) < 160
    assert "9900 more characters" in huge.messages[0]["content"]
    many = env.step(call("add", a=1, b=1) + call("add", a=2, b=2) + call("add", a=3, b=3))
    assert [m["content"] for m in many.messages[:2]] == ["2", "4"]
    assert "at most 2 tool calls" in many.messages[2]["content"]
    assert (many.tool_calls, many.tool_errors) == (3, 1)
    assert env.step("<think>" + call("add", a=1, b=2) + "</think>\n\n3").done   # calls while thinking are not calls
    with pytest.raises(EnvError, match="backend is down"):
        env.step(call("broken"))


def test_calls_with_a_time_limit_return_hung_raising_and_async_calls():
    async def async_value():
        return 7

    t0 = time.perf_counter()
    slow, raising, value, awaited = call_all(
        [lambda: time.sleep(30), lambda: 1 / 0, lambda: 5, async_value], [0.3, 1.0, 1.0, 1.0])
    assert time.perf_counter() - t0 < 2
    assert slow.timed_out and isinstance(raising.error, ZeroDivisionError) and "ZeroDivisionError" in raising.traceback
    assert value.value == 5 and awaited.value == 7


# ------------------------------------------------------------------------------- lookup, reward, tasks
def test_get_env_built_ins_import_strings_and_clear_errors():
    assert get_env("single_turn") is Env
    assert get_env("guess_number").__name__ == "GuessNumberEnv"
    assert get_env(f"{__file__}:Calculator").__name__ == "Calculator"
    with pytest.raises(ValueError, match="Built-ins: .*guess_number.*python"):
        get_env("chess")
    with pytest.raises(TypeError, match="not a subclass of envs.base.Env"):
        get_env(f"{__file__}:binary_search")
    with pytest.raises(ValueError, match="has no attribute"):
        get_env("envs.agents.game:Missing")


def test_single_turn_default_env_is_one_turn_of_the_row_chat():
    env = get_env("single_turn")()
    assert env.max_turns == 1 and env.tools is None
    assert env.reset({"prompt": "hi"}) == [{"role": "user", "content": "hi"}]
    assert env.step("hello") == StepResult([], done=True)


def test_env_reward_passes_the_env_score_and_fails_unfinished_episodes():
    info = {"reward": 0.5, "success": False, "turns": 2, "tool_calls": 1, "tool_errors": 0, "stop_reason": "done",
            "error": None}
    assert env_reward("x", env_info=info).score == 0.5
    assert env_reward("x", env_info={**info, "reward": None, "stop_reason": "max_turns"}).score == 0.0
    assert env_reward("x", env_info={**info, "reward": None, "stop_reason": "token_budget"}).score == 0.0
    assert env_reward("x", env_info={**info, "reward": None, "stop_reason": "env_error"}).score is None
    assert env_reward("x", env_info={**info, "reward": None}).score is None
    with pytest.raises(ValueError, match="only agent tasks have"):
        env_reward("x", task="arithmetic")


@pytest.mark.parametrize("task,env,tools", [
    ("agent_python", "python", ["python"]), ("agent_search", "search", ["search"]), ("agent_game", "guess_number", []),
    ("agent_store", "store", ["find_user", "list_orders", "cancel_order", "set_shipping_city"])])
def test_agent_tasks_load_as_task_categories(task, env, tools):
    loaded = load_task(TaskConfig(name=task, size=20, eval_size=5), 0)
    assert loaded.env == env and [s.name for s in loaded.rewards] == ["env"]
    messages, schemas = loaded.chat(loaded.train[0], thinking=False)
    assert [t["function"]["name"] for t in schemas or []] == tools
    assert messages[-1]["role"] == "user"
    assert messages[-1]["content"] == env_prompt(env, loaded.train[0])[0][-1]["content"]
    if loaded.system_prompt:
        assert messages[0] == {"role": "system", "content": loaded.system_prompt}


def test_task_env_config_is_checked_at_load_time(tmp_path, monkeypatch):
    data = tmp_path / "games.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"guess {k}", "secret": k, "low": 1, "high": 20, "guesses": 4}) + "\n"
                            for k in range(1, 11)))
    task = load_task(TaskConfig(name="mine", source=str(data), env="guess_number", rewards=[RewardSpec("env")]), 0)
    assert task.env == "guess_number" and task.chat(task.train[0], False)[1] is None
    with pytest.raises(ConfigError, match="unknown env 'chess'"):
        load_task(TaskConfig(name="x", source="agent_game", env="chess", size=5, eval_size=0), 0)
    with pytest.raises(ConfigError, match="do not apply a thinking budget"):
        load_task(TaskConfig(name="agent_game", size=5, eval_size=0, thinking_budget=64), 0)
    monkeypatch.chdir(ROOT)  # a relative file path is made absolute: rollout actors run in another directory
    relative = load_task(TaskConfig(name="x", source="agent_game", env="tests/envs/test_agents.py:Calculator", size=5,
                                    eval_size=0), 0)
    assert relative.env == f"{ROOT / 'tests' / 'envs' / 'test_agents.py'}:Calculator"


def test_config_field_env_loads_from_yaml():
    from rl.config import load_config

    cfg = load_config(ROOT / "configs" / "agent_tiny.yaml")
    assert {t.name for t in cfg.data.tasks} >= {"agent_game"}
    cfg = load_config(None, ["data.tasks=[{name: mine, source: agent_game, env: guess_number}]"])
    assert cfg.data.tasks[0].env == "guess_number"


# ------------------------------------------------------------------------------------------- example
def test_example_env_runs_as_a_script_and_as_an_import_string():
    example = ROOT / "examples" / "agent_env.py"
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "reward=1.0" in out.stdout and "reward=0.0" in out.stdout
    cls = get_env(f"{example}:UnitConverterEnv")
    env = cls()
    env.reset({"prompt": "How many metres are 3 km?", "answer": 3000})
    result = env.step(call("convert", value=3, unit_from="km", unit_to="m"))
    assert result.messages[0]["content"] == "3000.0" and not result.done
    final = env.step("3000 metres")
    assert final.done and final.reward == 1.0 and math.isclose(final.info["given"], 3000)
