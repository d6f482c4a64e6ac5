"""The Qwen3 post-training recipe as one command (Qwen3 Technical Report, section 4 and Table 22).

    rl recipe configs/recipe_tiny.yaml --output-dir runs/recipe [--smoke]

Stages, in order, each a section of the recipe YAML (rl/recipe_config.py), each starting from the previous
stage's final checkpoint (the first from `model`):
    cold_start    rl build-agent-data (scripted tool-use episodes) + procedural worked arithmetic -> rl sft
    reasoning_rl  rl filter (k samples per query, keep a pass rate in the band) -> rl train on the kept rows
    fusion        rl build-fusion-data (rejection sampling in both modes) + procedural chats -> rl sft
    general_rl    rl train over many tasks (soft switch: the policy writes the think block; think_mode reward)
    distill       from the weak starting model (`distill.student`) with the `distill.teacher` stage's model:
                  off-policy (rl build-fusion-data with the teacher -> rl sft), then on-policy (rl distill)
The evaluation suite (rl/recipe_eval.py) runs on the starting model ("base") and after every stage.

Written to the recipe folder: <stage>/ (the stage's data, run folders and eval/eval.json), recipe.json
(per row: the model, the metrics, the stage's own figures such as the filter's counts or the distillation's
reverse KL, and its seconds), recipe.md (the table of `table` metrics, each with its 95% bootstrap
half-width) and recipe.png. recipe.json is rewritten after each stage (whose checkpoints then drop their
optimizer states; their models stay), so a killed recipe restarts at the
unfinished stage: its finished steps are skipped (data files are written whole or not at all) and its runs
resume from their own last checkpoints (a run whose last checkpoint is its final step is not started again).

`--reevaluate` runs the evaluation suite again on every finished row's model (after the `eval` section
changed) and rewrites the table; nothing is trained.

`--smoke` runs every stage for one or two steps on a handful of rows and evaluates on a few prompts
(`SMOKE`): it checks the whole pipeline, not the numbers.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from rl.config import ConfigError, SFTConfig, TrainConfig, load_config
from rl.recipe_config import STAGES, RecipeConfig

log = logging.getLogger("rl")

SMOKE = {
    "rl": {"run.steps": 2, "run.eval_every": 0, "checkpoint.every": 0},
    "sft": {"sft.max_steps": 2},
    "eval": {"prompts": 4, "samples": 2, "dialogs": 4, "turns": 2, "budgets": [0, 16]},
    "sizes": {"agent_episodes": 4, "arithmetic_rows": 16, "filter_queries": 8, "filter_k": 2, "prompts": 8},
}
"""--smoke: overrides of every RL and SFT run, of the eval section, and of the stages' data sizes."""


def as_overrides(values: dict[str, Any]) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


class Recipe:
    """Runs the stages; `self.state` is recipe.json (rows by name, in order)."""

    def __init__(self, cfg: RecipeConfig, smoke: bool = False):
        self.cfg, self.smoke, self.out = cfg, smoke, cfg.out
        self.path = self.out / "recipe.json"
        self.state: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else \
            {"name": cfg.name, "smoke": smoke, "rows": {}}
        if self.state.get("smoke", smoke) != smoke:
            raise ConfigError(f"{self.path} holds a {'smoke' if self.state['smoke'] else 'full'} recipe; use another "
                              "--output-dir for this one")
        if smoke:
            for section in (cfg.cold_start, cfg.reasoning_rl, cfg.fusion, cfg.distill, cfg.eval):
                for key, value in {**SMOKE["sizes"], **(SMOKE["eval"] if section is cfg.eval else {})}.items():
                    if hasattr(section, key):
                        setattr(section, key, value)
            cfg.reasoning_rl.filter_band = [0.0, 1.0]  # keep every query: a smoke run must have rows to train on

    # ------------------------------------------------------------------------------------------ configs
    def stage_dir(self, stage: str) -> Path:
        return self.out / stage

    def train_config(self, path: str, overrides: dict[str, Any], model: str, out: Path, extra: list[str] = ()
                     ) -> TrainConfig:
        smoke = as_overrides(SMOKE["rl"]) if self.smoke else []
        return load_config(path, as_overrides(overrides) + smoke + list(extra) + [
            f"model.path={model}", f"run.output_dir={out}", f"run.seed={self.cfg.seed}"])

    def sft_config(self, path: str, overrides: dict[str, Any], model: str, out: Path, data: Path) -> SFTConfig:
        smoke = as_overrides(SMOKE["sft"]) if self.smoke else []
        return load_config(path, as_overrides(overrides) + smoke + [
            f"model.path={model}", f"run.output_dir={out}", f"run.seed={self.cfg.seed}", f"sft.data={data}"],
            kind=SFTConfig)

    def sampling_config(self, path: str, model: str) -> TrainConfig:
        """A GRPO config used for sampling only (filter, fusion data): the model and seed set."""
        return load_config(path, [f"model.path={model}", f"run.seed={self.cfg.seed}"])

    # --------------------------------------------------------------------------------------------- runs
    def run_sft(self, cfg: SFTConfig) -> str:
        from rl.recipe_stages import sft_to_end

        return sft_to_end(cfg)

    def run_train(self, cfg: TrainConfig) -> str:
        from rl.recipe_stages import train_to_end

        return train_to_end(cfg)

    def evaluate(self, model: str, out: Path) -> dict[str, Any]:
        """A row's `metrics` and `per_prompt` (rl/recipe_eval.py)."""
        from rl.recipe_eval import evaluate_suite

        seed = [f"run.seed={self.cfg.eval.seed}"]  # rows of their own, not the stages' (EvalSuite.seed)
        cfg = load_config(self.cfg.eval.config, as_overrides(self.cfg.eval.overrides) + seed)
        metrics, per_prompt = evaluate_suite(cfg, self.cfg.eval, model, out)
        return {"metrics": metrics, "per_prompt": per_prompt}

    def start_row(self, stage: str, last: str) -> str | None:
        """The row a stage's model starts from, which the table compares it with: the last stage run, or for
        distillation its student (`base` when that is the recipe's model; None for another model)."""
        if stage != "distill":
            return last
        return "base" if self.cfg.distill.student in (None, self.cfg.model) else None

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name("recipe.json.tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str) + "\n")
        tmp.replace(self.path)

    # -------------------------------------------------------------------------------------------- stages
    def run(self) -> dict[str, Any]:
        """Every configured stage not already in recipe.json, then the table; returns recipe.json."""
        from rl.console import log_to_run_folder
        from rl.recipe_stages import STAGE_RUNNERS

        log_to_run_folder(self.out)  # the libraries' and actors' lines go to DIR/console.log, not the console
        rows = self.state["rows"]
        if "base" not in rows:
            t0 = time.monotonic()
            rows["base"] = {"model": self.cfg.model, **self.evaluate(self.cfg.model, self.out / "base"),
                            "seconds": time.monotonic() - t0}
            self.save()
        model, last = self.cfg.model, "base"
        for stage in STAGES:
            if stage not in self.cfg.stages:
                continue
            if stage in rows:
                model, last = rows[stage]["model"], stage
                continue
            log.info("recipe: stage %s from %s", stage, model)
            t0 = time.monotonic()
            start = self.start_row(stage, last)
            model, figures = STAGE_RUNNERS[stage](self, model)
            rows[stage] = {"model": model, "start": start, **self.evaluate(model, self.stage_dir(stage) / "eval"),
                           **figures, "seconds": time.monotonic() - t0}
            last = stage
            self.save()
            drop_optimizer_states(self.stage_dir(stage))
        from rl.recipe_table import write_table

        write_table(self.state, self.cfg.table, self.out)
        return self.state

    def reevaluate(self) -> dict[str, Any]:
        """The evaluation suite again (as the `eval` section now says) on every row's model; the table anew."""
        from rl.console import log_to_run_folder
        from rl.recipe_table import write_table

        log_to_run_folder(self.out)
        for name, row in self.state["rows"].items():
            log.info("recipe: evaluating %s again (%s)", name, row["model"])
            out = self.out / "base" if name == "base" else self.stage_dir(name) / "eval"
            row.update(self.evaluate(row["model"], out))
            self.save()
        write_table(self.state, self.cfg.table, self.out)
        return self.state


def drop_optimizer_states(stage_dir: Path) -> None:
    """A finished stage keeps its checkpoints' models, not their DeepSpeed optimizer states (1.6 GB for a
    135M model): the next stage starts a fresh optimizer, and the stage will not be resumed."""
    import shutil

    for state in stage_dir.glob("**/checkpoints/step_*/deepspeed"):
        shutil.rmtree(state)
