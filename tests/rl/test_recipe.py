"""`rl recipe` (rl/recipe.py): the stage order and model chaining, resuming at the unfinished stage, the
config checks, the evaluation suite's numbers (rl/recipe_eval.py) and the table (rl/recipe_table.py).
The whole recipe on the packaged model runs in tests/e2e/test_recipe_smoke.py."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from rl.config import ConfigError
from rl.recipe import SMOKE, Recipe
from rl.recipe_config import STAGES, load_recipe
from rl.recipe_eval import bootstrap_ci, task_metrics, wilson_ci
from rl.recipe_table import changes, markdown, paired_interval, write_table
from tests.helpers import ROOT

RECIPE = ROOT / "configs" / "recipe_tiny.yaml"


def fake_recipe(tmp_path, monkeypatch, fail_at: str | None = None, stages: list[str] | None = None):
    """A Recipe whose stages and evaluation are recorded instead of run: stage S turns model M into M+S."""
    import rl.recipe_stages as stages_module

    calls = []

    def runner(stage):
        def run(recipe, model):
            calls.append((stage, model))
            if stage == fail_at:
                raise RuntimeError(f"killed in {stage}")
            return f"{model}+{stage}", {"figure": stage}
        return run

    monkeypatch.setattr(stages_module, "STAGE_RUNNERS", {s: runner(s) for s in STAGES})
    monkeypatch.setattr("rl.console.log_to_run_folder", lambda out: None)  # keep this process's loggers as they are
    overrides = [f"output_dir={tmp_path}"] + ([f"stages={json.dumps(stages)}"] if stages else [])
    recipe = Recipe(load_recipe(RECIPE, overrides))
    monkeypatch.setattr(recipe, "evaluate", lambda model, out: {
        "metrics": {"arithmetic/accuracy": len(model) / 100, "arithmetic/accuracy/ci95": 0.01},
        "per_prompt": {"arithmetic/accuracy": [len(model) / 100] * 4}})
    return recipe, calls


def test_stages_run_in_order_each_from_the_last_model(tmp_path, monkeypatch):
    recipe, calls = fake_recipe(tmp_path, monkeypatch)
    state = recipe.run()
    model = "packaged:smollm2-135m-instruct"
    assert calls == [(s, model + "".join(f"+{p}" for p in STAGES[:i])) for i, s in enumerate(STAGES)]
    assert list(state["rows"]) == ["base", *STAGES]
    assert state["rows"]["distill"]["model"] == model + "".join(f"+{s}" for s in STAGES)
    assert state["rows"]["fusion"]["figure"] == "fusion" and state["rows"]["base"]["metrics"]["arithmetic/accuracy"] > 0
    assert json.loads((tmp_path / "recipe.json").read_text()) == json.loads(json.dumps(state))
    table = (tmp_path / "recipe.md").read_text()
    assert all(f"| {s} |" in table for s in ["base", *STAGES]) and (tmp_path / "recipe.png").stat().st_size > 1000
    # each stage is compared with the row it started from; distillation with its student, the base model
    starts = {s: state["rows"][s]["start"] for s in STAGES}
    assert starts == {"cold_start": "base", "reasoning_rl": "cold_start", "fusion": "reasoning_rl",
                      "general_rl": "fusion", "distill": "base"}
    assert "| reasoning_rl (cold_start) | +0.130 [+0.13, +0.13] * |" in table  # "+reasoning_rl" is 13 characters


def test_a_killed_recipe_resumes_at_the_unfinished_stage(tmp_path, monkeypatch):
    recipe, calls = fake_recipe(tmp_path, monkeypatch, fail_at="fusion")
    with pytest.raises(RuntimeError, match="killed in fusion"):
        recipe.run()
    assert list(json.loads((tmp_path / "recipe.json").read_text())["rows"]) == ["base", "cold_start", "reasoning_rl"]
    recipe, calls = fake_recipe(tmp_path, monkeypatch)
    recipe.run()
    assert [s for s, _ in calls] == ["fusion", "general_rl", "distill"]  # the finished stages are not run again
    assert calls[0][1].endswith("+cold_start+reasoning_rl")


def test_reevaluate_evaluates_every_row_again_and_trains_nothing(tmp_path, monkeypatch):
    recipe, calls = fake_recipe(tmp_path, monkeypatch)
    recipe.run()
    recipe, calls = fake_recipe(tmp_path, monkeypatch)
    seen = []
    monkeypatch.setattr(recipe, "evaluate", lambda model, out: seen.append((model, out)) or {
        "metrics": {"arithmetic/accuracy": 1.0}, "per_prompt": {}})
    state = recipe.reevaluate()
    assert calls == [] and [m for m, _ in seen] == [row["model"] for row in state["rows"].values()]
    assert seen[0][1] == tmp_path / "base" and seen[1][1] == tmp_path / "cold_start" / "eval"
    assert all(row["metrics"] == {"arithmetic/accuracy": 1.0} for row in state["rows"].values())
    assert "| distill | 1.000 |" in (tmp_path / "recipe.md").read_text()


def test_a_subset_of_stages_skips_the_others(tmp_path, monkeypatch):
    recipe, calls = fake_recipe(tmp_path, monkeypatch, stages=["cold_start", "general_rl"])
    recipe.run()
    assert calls == [("cold_start", "packaged:smollm2-135m-instruct"),
                     ("general_rl", "packaged:smollm2-135m-instruct+cold_start")]


@pytest.mark.parametrize("override, message", [
    ('stages=["fusion", "cold_start"]', "out of order"),
    ('stages=["sft"]', "choose from"),
    ("reasoning_rl.filter_band=[0.1]", "filter_band"),
    ("cold_start.episodes=3", "episodes"),
])
def test_recipe_config_errors_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(RECIPE, [override])


def test_smoke_shrinks_every_stage_and_refuses_a_full_recipe_folder(tmp_path):
    cfg = load_recipe(RECIPE, [f"output_dir={tmp_path}"])
    recipe = Recipe(cfg, smoke=True)
    assert cfg.cold_start.agent_episodes == SMOKE["sizes"]["agent_episodes"] and cfg.eval.prompts == 4
    assert cfg.reasoning_rl.filter_band == [0.0, 1.0]
    rl_cfg = recipe.train_config(cfg.general_rl.config, cfg.general_rl.overrides, "M", tmp_path / "g")
    assert (rl_cfg.run.steps, rl_cfg.model.path, rl_cfg.output_dir) == (2, "M", tmp_path / "g")
    recipe.save()
    with pytest.raises(ConfigError, match="holds a smoke recipe"):
        Recipe(load_recipe(RECIPE, [f"output_dir={tmp_path}"]), smoke=False)


def test_every_stage_config_of_the_tiny_recipe_loads(tmp_path):
    cfg = load_recipe(RECIPE, [f"output_dir={tmp_path}"])
    recipe = Recipe(cfg)
    for section in (cfg.reasoning_rl, cfg.general_rl, cfg.distill):
        recipe.train_config(section.config, section.overrides, "M", tmp_path)
    for section in (cfg.cold_start, cfg.fusion):
        recipe.sft_config(section.config, section.overrides, "M", tmp_path, tmp_path / "d.jsonl")
    assert cfg.distill.teacher in STAGES


def test_bootstrap_interval_shrinks_with_more_prompts():
    assert bootstrap_ci([1.0] * 10) == 0.0
    few, many = bootstrap_ci([0.0, 1.0] * 4), bootstrap_ci([0.0, 1.0] * 64)
    assert 0.1 < few < 0.5 and many < few / 2
    assert math.isnan(bootstrap_ci([1.0]))


def test_wilson_interval_is_not_zero_at_the_ends_and_shrinks_with_turns():
    assert 0.1 < wilson_ci(1.0, 11) < 0.2 and 0.1 < wilson_ci(0.0, 11) < 0.2
    assert wilson_ci(0.5, 400) < wilson_ci(0.5, 100) / 1.9 and math.isnan(wilson_ci(0.5, 0))


def test_task_metrics_accuracy_and_tool_use(monkeypatch):
    math_task, agent = SimpleNamespace(name="arithmetic", env=None), SimpleNamespace(name="agent_python", env="python")
    groups = [(math_task, 0), (math_task, 1), (agent, 0)]
    solved = [True, False, True, True, False, False]
    scored = [SimpleNamespace(solved=s) for s in solved]
    rollouts = [SimpleNamespace(env_info={})] * 4 + [SimpleNamespace(env_info={"tool_calls": 2, "tool_errors": 1}),
                                                    SimpleNamespace(env_info={"tool_calls": 0, "tool_errors": 0})]
    monkeypatch.setattr("rl.evaluate.solved", lambda result, task: result.solved)
    metrics, per_prompt = task_metrics([math_task, agent], groups, scored, rollouts, k=2)
    assert metrics["arithmetic/accuracy"] == 0.75 and metrics["agent_python/accuracy"] == 0.0
    assert metrics["tool/success"] == 0.0 and metrics["tool/called"] == 0.5 and metrics["tool/well_formed"] == 0.5
    assert per_prompt == {"arithmetic/accuracy": [0.5, 1.0], "agent_python/accuracy": [0.0], "tool/success": [0.0]}


def test_table_cells_show_the_interval_and_the_stage_figures(tmp_path):
    state = {"name": "t", "rows": {
        "base": {"metrics": {"a": 0.25, "a/ci95": 0.1}, "seconds": 60},
        "reasoning_rl": {"metrics": {"a": 0.5, "a/ci95": 0.05}, "seconds": 120,
                         "filter": {"kept": 10, "queries": 64}},
        "distill": {"metrics": {"a": float("nan")}, "seconds": 30, "reverse_kl": {"first": 0.3, "last": 0.1}}}}
    text = markdown(state, ["a", "b"])
    assert "| base | 0.250 ± 0.100 | - | 1.0 min |" in text
    assert "filter kept 10 of 64" in text and "reverse KL 0.300 -> 0.100" in text and "| distill | - | - |" in text
    write_table(state, ["a"], tmp_path)
    assert (tmp_path / "recipe.png").read_bytes()[:4] == b"\x89PNG"


def test_changes_pair_prompts_and_mark_only_changes_whose_interval_excludes_zero():
    before = [0.0] * 24 + [1.0] * 24
    state = {"name": "t", "rows": {
        "base": {"metrics": {"acc": 0.5, "tf": 0.5, "tf/ci95": 0.1}, "per_prompt": {"acc": before}},
        # each of 12 prompts gains: paired, a clear rise (unpaired intervals of +-0.14 would overlap)
        "cold_start": {"start": "base", "metrics": {"acc": 0.75, "tf": 0.9, "tf/ci95": 0.05},
                       "per_prompt": {"acc": [1.0] * 12 + [0.0] * 12 + [1.0] * 24}},
        # the same mean, the prompts shuffled: no paired change; a share moving inside its noise
        "fusion": {"start": "cold_start", "metrics": {"acc": 0.75, "tf": 0.85, "tf/ci95": 0.05},
                   "per_prompt": {"acc": [0.0] * 12 + [1.0] * 36}},
        "distill": {"start": None, "metrics": {"acc": 0.1}}}}
    text = changes(state, ["acc", "tf"])
    lines = {ln.split(" |")[0]: ln for ln in text.splitlines()}
    assert "+0.250 [+0.12, +0.38] *" in lines["| cold_start (base)"]  # 12 of 48 prompts rose by 1.0
    assert "+0.400 [+0.29, +0.51] *" in lines["| cold_start (base)"]  # hypot(0.1, 0.05) = 0.112
    assert "+0.000" in lines["| fusion (cold_start)"] and "*" not in lines["| fusion (cold_start)"]
    assert not any(k.startswith("| distill") for k in lines)  # no start row: nothing to compare with
    delta, low, high = paired_interval([1.0, 0.0, 1.0], [0.0, 0.0, 1.0])
    assert delta == 1 / 3 and 0.0 <= low <= delta <= high <= 1.0


def test_first_last_averages_the_first_and_last_steps(tmp_path):
    from rl.recipe_stages import first_last

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": i, **({"kl": float(i)} if i != 3 else {})}) + "\n"
                               for i in range(1, 14)))
    assert first_last(tmp_path, "kl") == {"first": (1 + 2 + 4 + 5 + 6) / 5, "last": (9 + 10 + 11 + 12 + 13) / 5,
                                         "steps": 5}
    assert first_last(tmp_path, "kl", window=50) == {"first": 25 / 6, "last": 10.5, "steps": 6}  # half the 12 steps
    assert first_last(tmp_path, "missing") == {}
