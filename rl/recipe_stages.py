"""The recipe's stages (rl/recipe.py): each `stage(recipe, model) -> (final model, figures for recipe.json)`.

Each step of a stage is skipped when its output is already there (a data file is written whole or not
at all; a run folder resumes from its last checkpoint), so a killed recipe restarts the unfinished
stage where it stopped.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("rl")


def sft_to_end(cfg: Any) -> str:
    """`rl sft` to its last step (resumed when its folder holds a run); the final model."""
    from rl.thinking.sft import planned_steps, sft

    if not finished(cfg.output_dir, planned_steps(cfg)):
        sft(cfg, resume=(cfg.output_dir / "metrics.jsonl").exists())
    return final_model(cfg.output_dir)


def train_to_end(cfg: Any) -> str:
    """`rl train` to its last step (resumed when its folder holds a run); the final model."""
    from rl.driver import train

    if not finished(cfg.output_dir, cfg.run.steps):
        train(cfg, resume=(cfg.output_dir / "metrics.jsonl").exists())
    return final_model(cfg.output_dir)


def finished(run_dir: Path, steps: int) -> bool:
    """The run folder's last checkpoint is its final step: nothing left to run (no actors started)."""
    from rl.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    return latest is not None and latest[1]["step"] >= steps


def final_model(run_dir: Path) -> str:
    """The model folder of a run's last checkpoint."""
    from rl.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise RuntimeError(f"{run_dir} has no checkpoint after the run; see {run_dir}/console.log")
    return str(latest[0] / "model")


def concat_jsonl(parts: list[Path], out: Path) -> int:
    """`parts` joined into `out` (written whole); returns the row count."""
    lines = [ln for p in parts for ln in p.read_text().splitlines() if ln.strip()]
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in lines))
    tmp.replace(out)
    return len(lines)


def arithmetic_rows(n: int, seed: int, out: Path) -> Path:
    from rl.thinking.fusion_data import arithmetic_fusion_rows, write_rows

    if not out.is_file():
        write_rows(arithmetic_fusion_rows(n, seed) if n else [], out)
    return out


def cold_start(recipe: Any, model: str) -> tuple[str, dict[str, Any]]:
    """Scripted agent episodes + worked arithmetic chats -> SFT."""
    from rl.agent_data import build_agent_data

    sec, d = recipe.cfg.cold_start, recipe.stage_dir("cold_start")
    d.mkdir(parents=True, exist_ok=True)
    agent = d / "agent_demos.jsonl"
    if not agent.is_file():
        build_agent_data(recipe.sampling_config(sec.agent_config, model), agent, sec.agent_episodes)
    rows = concat_jsonl([agent, arithmetic_rows(sec.arithmetic_rows, recipe.cfg.seed, d / "arithmetic.jsonl")],
                        d / "data.jsonl")
    model = recipe.run_sft(recipe.sft_config(sec.config, sec.overrides, model, d / "run", d / "data.jsonl"))
    return model, {"data_rows": rows}


def reasoning_rl(recipe: Any, model: str) -> tuple[str, dict[str, Any]]:
    """rl filter on the config's first task, then GRPO on the kept rows."""
    from rl.query_filter import filter_queries

    sec, d = recipe.cfg.reasoning_rl, recipe.stage_dir("reasoning_rl")
    sampling = recipe.sampling_config(sec.config, model)
    task = sampling.data.tasks[0].name
    stats = filter_queries(sampling, d / "filtered.jsonl", task=task, k=sec.filter_k,
                           band=(sec.filter_band[0], sec.filter_band[1]), max_queries=sec.filter_queries, model=model)
    entry = {**stats["task_entry"], "eval_size": 0}
    prompts = sampling.rollout.prompts_per_step
    figures = {"filter": {k: stats[k] for k in ("queries", "kept", "too_easy", "too_hard", "pass_histogram")}}
    extra = [f"data.tasks={json.dumps([entry])}"]
    if stats["kept"] < prompts:  # too few rows in the band to fill one step: train on the unfiltered task
        log.warning("recipe: the filter kept %d queries, fewer than a step's %d prompts; reasoning RL trains on "
                    "the unfiltered task", stats["kept"], prompts)
        figures["filter"]["fallback"] = "unfiltered"
        extra = []
    model = recipe.run_train(recipe.train_config(sec.config, sec.overrides, model, d / "run", extra))
    return model, figures


def fusion(recipe: Any, model: str) -> tuple[str, dict[str, Any]]:
    """Mixed-mode chats by rejection sampling from the model (+ procedural ones) -> SFT."""
    sec, d = recipe.cfg.fusion, recipe.stage_dir("fusion")
    sampled = sample_chats(recipe, sec.data_config, model, sec.prompts, sec.threshold, d / "sampled.jsonl")
    rows = concat_jsonl([sampled, arithmetic_rows(sec.arithmetic_rows, recipe.cfg.seed + 1, d / "arithmetic.jsonl")],
                        d / "data.jsonl")
    model = recipe.run_sft(recipe.sft_config(sec.config, sec.overrides, model, d / "run", d / "data.jsonl"))
    return model, {"data_rows": rows, "sampled_rows": count_rows(sampled)}


def general_rl(recipe: Any, model: str) -> tuple[str, dict[str, Any]]:
    sec, d = recipe.cfg.general_rl, recipe.stage_dir("general_rl")
    return recipe.run_train(recipe.train_config(sec.config, sec.overrides, model, d / "run")), {}


def distill(recipe: Any, model: str) -> tuple[str, dict[str, Any]]:
    """From the weak student: off-policy (SFT on the teacher's sampled answers), then on-policy."""
    sec, d = recipe.cfg.distill, recipe.stage_dir("distill")
    rows = recipe.state["rows"]
    teacher = rows[sec.teacher]["model"] if sec.teacher in rows else sec.teacher
    if sec.teacher in ("base", *recipe.cfg.stages) and sec.teacher not in rows:
        raise RuntimeError(f"distill.teacher {sec.teacher!r} is a stage that has not run")
    student = sec.student or recipe.cfg.model
    figures: dict[str, Any] = {"teacher": teacher, "student": student}
    if sec.prompts:
        sft_cfg = recipe.sft_config(sec.sft_config, sec.sft_overrides, student, d / "off_policy",
                                    d / "teacher_chats.jsonl")
        distilled, figures["off_policy_rows"] = off_policy_distill(recipe.sampling_config(sec.data_config, teacher),
                                                                   sft_cfg, sec.prompts, sec.min_reward)
        student = distilled or student
    cfg = recipe.train_config(sec.config, sec.overrides, student, d / "on_policy", [f"distill.teacher={teacher}"])
    model = recipe.run_train(cfg)
    figures["reverse_kl"] = first_last(cfg.output_dir, "distill/reverse_kl")
    return model, figures


def off_policy_distill(teacher_cfg: Any, sft_cfg: Any, prompts: int, min_reward: float = 1.0
                       ) -> tuple[str | None, int]:
    """Off-policy distillation: the teacher (`teacher_cfg`'s model) answers `prompts` prompts of its config's
    tasks in both modes, its best well-formed response per prompt is kept when its reward reaches
    `min_reward` (`rl build-fusion-data`), and the student (`sft_cfg`'s model) is trained on them by SFT into
    `sft_cfg`'s run folder. The data goes to `sft_cfg.sft.data` (kept when it exists). Returns (the
    student's final model, or None when fewer responses than one SFT batch were kept; the rows kept)."""
    data = Path(sft_cfg.sft.data)
    if not data.is_file():
        from rl.thinking.fusion_data import build_fusion_data

        build_fusion_data(teacher_cfg, data, prompts=prompts, threshold=min_reward, no_think_threshold=min_reward)
    kept = count_rows(data)
    if kept < sft_cfg.sft.batch_size:
        log.warning("off-policy distillation: the teacher kept %d responses (reward >= %s), fewer than one SFT "
                    "batch (%d); skipped", kept, min_reward, sft_cfg.sft.batch_size)
        return None, kept
    return sft_to_end(sft_cfg), kept


def sample_chats(recipe: Any, config: str, model: str, prompts: int, threshold: float, out: Path) -> Path:
    """`rl build-fusion-data` with `model` (rejection sampling in both modes), unless `out` exists."""
    from rl.thinking.fusion_data import build_fusion_data

    if not out.is_file():
        build_fusion_data(recipe.sampling_config(config, model), out, prompts=prompts, threshold=threshold)
    return out


def count_rows(path: Path) -> int:
    return sum(1 for ln in path.read_text().splitlines() if ln.strip())


def first_last(run_dir: Path, key: str, window: int = 5) -> dict[str, float]:
    """A metric's mean over the first and over the last `window` steps of a run that logged it (one step's
    value is as noisy as a batch; at most half the steps each, as `rl train`'s closing summary does)."""
    from rl.report import read_metrics, series, window_mean

    records = read_metrics(run_dir)
    n = max(1, min(window, len(series(records, key)[1]) // 2))
    first, last = window_mean(records, key, True, n), window_mean(records, key, False, n)
    return {} if first is None else {"first": first, "last": last, "steps": n}


STAGE_RUNNERS: dict[str, Callable[[Any, str], tuple[str, dict[str, Any]]]] = {
    "cold_start": cold_start, "reasoning_rl": reasoning_rl, "fusion": fusion, "general_rl": general_rl,
    "distill": distill}
