"""The built-in task catalogue: every category draws rows offline, renders short prompts, gives its
reference answer full marks and a wrong answer less (judge / reward-model tasks: the worker is called
and returns a score), plus load-time errors and `rl tasks`.

    .venv/bin/python -m pytest tests/test_tasks.py -q
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from envs.catalogue import (MODEL_KWARG, as_completion, list_tasks, reference_answer, sample_task, score_requests,
                            with_model)
from envs.tasks import BUILTIN_TASKS, get_task_spec, load_task
from rewards.runner import RewardRunner
from rewards.spec import RewardSpec
from rl.config import ConfigError, TaskConfig
from rl.models import qwen3_tokenizer_dir
from rl.thinking.tags import assistant_response
from rl.thinking.chat import render_chat

ROWS = 6
MAX_PROMPT_TOKENS = 256  # rollout.max_prompt_tokens of the embedded default
CATEGORIES = [n for n in BUILTIN_TASKS if get_task_spec(n).env is None]
AGENT_TASKS = [n for n in BUILTIN_TASKS if get_task_spec(n).env is not None]
MODEL_BASED = {n for n in CATEGORIES if any(s.name in MODEL_KWARG for s in get_task_spec(n).rewards)}
# Wrong answers: generic ones, and one that breaks the rules a bare "I don't know" happens to follow
# (IFEval's "fewer than 80 words", forbidden words).
WRONG = ["I don't know.", "Sorry, I can't: banana purple rocket violin dragon umbrella. " + "word " * 90,
         "<tool_call>{\"name\": \"nothing\", \"arguments\": {}}</tool_call>"]


def wrong_answers(task, row) -> list[str]:
    answers = list(WRONG)
    mode = task.row_mode(row)
    if mode is not None:  # a response in the other mode (format / ThinkFollow tasks)
        answers.append(assistant_response(None if mode else "Let me think.", "I don't know."))
    return answers


@pytest.fixture(scope="module")
def tasks() -> dict:
    return {name: sample_task(name, seed=0, size=ROWS) for name in CATEGORIES}


@pytest.fixture(scope="module")
def scores(tasks, tiny_model) -> dict:
    """{task: [(reference result, [wrong results])] per row}, all scored in one RewardRunner batch."""
    for task in tasks.values():
        task.rewards = with_model(task.rewards, str(tiny_model))
    plan, requests = [], []
    for name, task in tasks.items():
        for row in task.train:
            batch = score_requests(task, row, [reference_answer(get_task_spec(name), row)] + wrong_answers(task, row))
            plan.append((name, len(requests), len(batch)))
            requests += batch
    with RewardRunner({n: t.rewards for n, t in tasks.items()}, timeout_s=120.0, num_procs=2) as runner:
        scored = runner.score(requests)
    results: dict = {}
    for name, start, n in plan:
        results.setdefault(name, []).append(scored[start:start + n])
    return results


def test_catalogue_has_at_least_22_categories():
    entries = list_tasks()
    assert len(CATEGORIES) >= 22 and len(entries) == len(BUILTIN_TASKS)
    assert all({"name", "reward", "source", "size"} <= set(e) for e in entries)


@pytest.mark.parametrize("name", CATEGORIES + AGENT_TASKS)
def test_rows_offline_with_prompts_and_splits(name):
    task = load_task(TaskConfig(name=name, size=40, eval_size=8), seed=1)
    assert task.train and task.eval, "needs a train and an eval split"
    assert {r["task"] for r in task.train + task.eval} == {name}
    again = load_task(TaskConfig(name=name, size=40, eval_size=8), seed=1)
    assert [json.dumps(r, sort_keys=True, default=str) for r in again.train] == \
           [json.dumps(r, sort_keys=True, default=str) for r in task.train], "generation must be deterministic"
    train_rows = {json.dumps(r, sort_keys=True, default=str) for r in task.train}
    assert not train_rows & {json.dumps(r, sort_keys=True, default=str) for r in task.eval}, "eval rows leak into train"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())


@pytest.mark.parametrize("name", CATEGORIES)  # agent tasks list JSON tool schemas: tests/test_agents*.py
def test_prompts_fit_the_default_prompt_budget(name, tokenizer):
    task = load_task(TaskConfig(name=name, size=60, eval_size=0), seed=2)
    for row in task.train:
        messages, tools = task.chat(row, False)
        assert messages[-1]["role"] == "user" and messages[-1]["content"].strip()
        n = len(tokenizer.encode(render_chat(tokenizer, messages, thinking=True, tools=tools), add_special_tokens=False))
        assert n <= MAX_PROMPT_TOKENS, f"{name}: a {n}-token prompt: {messages}"


@pytest.mark.slow  # the shared `scores` fixture takes ~2-3 min: reward processes import lm-eval, load models
@pytest.mark.parametrize("name", sorted(set(CATEGORIES) - MODEL_BASED))
def test_reference_gets_full_marks_and_wrong_answers_less(name, scores):
    for reference, *wrong in scores[name]:
        assert not reference.errors, reference.errors
        assert all(v == 1.0 for v in reference.components.values()), (name, reference.components, reference.details)
        assert min(w.reward for w in wrong) < reference.reward, (name, [w.components for w in wrong])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODEL_BASED))
def test_model_based_tasks_call_the_model_and_get_a_score(name, scores):
    for reference, *wrong in scores[name]:
        for result in (reference, *wrong):
            assert not result.errors, result.errors
            (value,) = result.components.values()
            assert isinstance(value, float) and 0.0 <= value <= 1.0  # judge P(YES) / sigmoid of the RM score
        assert len({round(r.reward, 6) for r in (reference, *wrong)}) > 1, "the model's score ignores the answer"


def test_reference_of_a_non_thinking_prompt_gets_the_empty_think_block():
    assert as_completion("42", thinking=False).startswith("<think>\n\n</think>")
    assert as_completion("42", thinking=True) == "42"


# ---------------------------------------------------------------------------------------- load errors
def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_file_row_missing_a_reward_field_names_file_and_row(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "1+1?", "answer": "2"}, {"prompt": "2+2?"}])
    cfg = TaskConfig(name="qa", source=str(data), rewards=[{"name": "math"}], eval_size=0)
    cfg.rewards = [RewardSpec("math")]
    with pytest.raises(ConfigError, match=r"qa\.jsonl: line 2 of task 'qa' is missing field\(s\) \['answer'\] that "
                                          r"reward 'math' needs"):
        load_task(cfg, seed=0)


def test_file_row_of_another_task_names_file_and_row(tmp_path):
    from rewards.spec import RewardSpec

    data = write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "a", "answer": "1", "task": "qa"},
                                                  {"prompt": "b", "answer": "2", "task": "unknown_task"}])
    with pytest.raises(ConfigError, match=r"mixed\.jsonl: line 2 has task 'unknown_task'"):
        load_task(TaskConfig(name="qa", source=str(data), rewards=[RewardSpec("math")]), seed=0)


def test_file_row_without_prompt_and_unknown_source(tmp_path):
    from rewards.spec import RewardSpec

    data = write_jsonl(tmp_path / "bad.jsonl", [{"question": "1+1?", "answer": "2"}])
    with pytest.raises(ConfigError, match=r"line 1 of task 'qa' has neither `prompt` nor `messages`"):
        load_task(TaskConfig(name="qa", source=str(data), rewards=[RewardSpec("math")]), seed=0)
    # the column mapping fixes it
    task = load_task(TaskConfig(name="qa", source=str(data), rewards=[RewardSpec("math")],
                                columns={"question": "prompt"}, eval_size=0), seed=0)
    assert task.train[0]["prompt"] == "1+1?"
    with pytest.raises(ConfigError, match="unknown task source 'no_such_task'.*Built-ins"):
        load_task(TaskConfig(name="no_such_task"), seed=0)


def code_task(data: Path) -> TaskConfig:
    return TaskConfig(name="py", source=str(data), rewards=[RewardSpec("code")], eval_size=0)


def test_code_row_without_tests_fails_at_load_time_with_its_line(tmp_path):
    data = tmp_path / "code.jsonl"
    data.write_text(json.dumps({"prompt": "add", "tests": ["assert add(1, 2) == 3"]}) + "\n\n"  # a blank line counts
                    + json.dumps({"prompt": "HumanEval style", "test": "def check(c): pass", "entry_point": "f"}) + "\n"
                    + json.dumps({"prompt": "no tests", "tests": None}) + "\n")
    with pytest.raises(ConfigError, match=r"code\.jsonl: line 4 of task 'py' is missing field\(s\) \['tests\|test'\] "
                                          r"\(tests or test: either one\) that reward 'code' needs.*columns"):
        load_task(code_task(data), seed=0)
    data.write_text(data.read_text().rsplit("\n", 2)[0] + "\n")  # without the last row: `tests` or `test` will do
    assert len(load_task(code_task(data), seed=0).train) == 2


def test_required_fields_with_alternatives():
    from rewards.base import missing_fields, reward_spec

    assert missing_fields({"test": "def check(c): ...", "answer": None}, ("tests|test", "answer")) == ["answer"]
    assert missing_fields({"tests": None}, ("tests|test",)) == ["tests|test"]
    with pytest.raises(TypeError, match="tuple of field names"):
        reward_spec(required="answer")  # a bare string would read as the fields 'a', 'n', 's', ...


def test_invalid_utf8_and_json_name_the_file_and_line(tmp_path):
    good = json.dumps({"prompt": "1+1?", "answer": "2"}).encode() + b"\n"
    cases = {
        b'{"prompt": "caf\xe9", "answer": "1"}\n': r"line 3: not valid UTF-8 \(byte 16 of the line is b'\\xe9'\)",
        b'{"prompt": "x", "answer": }\n': r"line 3, column 27: not valid JSON \(Expecting value\)",
        b'["prompt", "answer"]\n': r"line 3: a JSON list, not an object",
    }
    for bad, message in cases.items():
        data = tmp_path / "qa.jsonl"
        data.write_bytes(good + good + bad + good)
        with pytest.raises(ConfigError, match=r"qa\.jsonl, " + message):
            load_task(TaskConfig(name="qa", source=str(data), rewards=[RewardSpec("math")]), seed=0)
    array = tmp_path / "qa.json"
    array.write_text('[{"prompt": "1+1?", "answer": "2"},\n {"prompt": "x" "answer": "1"}]')
    with pytest.raises(ConfigError, match=r"qa\.json, line 2, column 17: not valid JSON"):
        load_task(TaskConfig(name="qa", source=str(array), rewards=[RewardSpec("math")]), seed=0)
    table = tmp_path / "qa.csv"
    table.write_bytes(b"prompt,answer\n1+1?,2\ncaf\xe9,1\n")
    with pytest.raises(ConfigError, match=r"qa\.csv, line 3: not valid UTF-8"):
        load_task(TaskConfig(name="qa", source=str(table), rewards=[RewardSpec("math")]), seed=0)


def test_json_array_file_and_columns(tmp_path):
    array = tmp_path / "qa.json"
    array.write_text(json.dumps([{"question": "1+1?", "gold": "2"}, {"question": "2+2?"}]))
    cfg = TaskConfig(name="qa", source=str(array), rewards=[RewardSpec("math")], eval_size=0,
                     columns={"question": "prompt", "gold": "answer"})
    with pytest.raises(ConfigError, match=r"qa\.json: row 2 of task 'qa' is missing field\(s\) \['answer'\]"):
        load_task(cfg, seed=0)
    array.write_text(json.dumps([{"question": "1+1?", "gold": "2", "answer": "3"}]))
    with pytest.raises(ConfigError, match=r"renames to \['answer'\], which .* already has"):
        load_task(cfg, seed=0)


def test_unknown_generator_option_is_an_error():
    with pytest.raises(ValueError, match="unknown option"):
        load_task(TaskConfig(name="rag", options={"passage": 3}), seed=0)


# ----------------------------------------------------------------------------------------------- CLI
def test_rl_tasks_json_lists_every_category():
    out = subprocess.run([sys.executable, "-m", "rl.cli", "tasks", "--json"], capture_output=True, text=True, check=True)
    entries = json.loads(out.stdout)
    assert [e["name"] for e in entries] == list(BUILTIN_TASKS)
    assert {e["name"]: e["reward"] for e in entries}["arithmetic"] == "math (1) + format (0.1)"


def test_rl_tasks_show_json_scores_the_reference():
    out = subprocess.run([sys.executable, "-m", "rl.cli", "tasks", "show", "competition_math", "--json"],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert "\\boxed{}" in info["prompt"] and "\\boxed{" in info["reference"]
    assert info["reward_for_reference"] == 1.0 and info["errors"] == {}


@pytest.mark.skipif(not AGENT_TASKS, reason="no agent tasks in the table")
def test_show_on_an_agent_task_explains_why_there_is_no_reference_score():
    from envs.catalogue import show_task

    info = show_task(AGENT_TASKS[0])
    assert info["reward_for_reference"] is None and "agent task" in info["note"] and info["messages"]
