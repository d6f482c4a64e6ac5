"""The run folder (config.yaml, metrics.jsonl, rollouts/) and its checkpoint folders:
<run>/checkpoints/step_000010/{model/, deepspeed/, trainer_state.json}.

A checkpoint is written into `step_N.tmp/` and renamed to `step_N/` only when complete, so a run
killed mid-save (even with SIGKILL) leaves the previous checkpoint as the latest valid one. Resume
reads `trainer_state.json` (the number of finished steps, the wandb run id); the data order needs no
state because it is a function of (seed, step) (see rl/data.py).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rl.config_io import ConfigError, save_config

if TYPE_CHECKING:
    from rl.config import BaseConfig

log = logging.getLogger("rl")

STATE_FILE = "trainer_state.json"


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def staging_dir(run_dir: Path, step: int) -> Path:
    path = checkpoints_dir(run_dir) / f"step_{step:06d}.tmp"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def finalize(run_dir: Path, staging: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the trainer state, publish the folder atomically and prune old checkpoints."""
    (staging / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2))
    final = checkpoints_dir(run_dir) / f"step_{step:06d}"
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (half-written `.tmp` folders are ignored)."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_FILE).exists()]
    return sorted(done, key=lambda p: int(p.name.split("_")[1]))


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    found = list_checkpoints(run_dir)
    if not found:
        return None
    return found[-1], json.loads((found[-1] / STATE_FILE).read_text())


def prepare_run_dir(out: Path, cfg: BaseConfig, resume: bool) -> tuple[int, Path | None, str | None]:
    """Create the run folder; on resume find the checkpoint and drop metrics logged after it (`rl train`
    and `rl sft`)."""
    if not resume and (out / "metrics.jsonl").exists():
        raise ConfigError(f"run folder {out} already holds a run; pass --resume to continue it, or choose "
                          "another --output-dir")
    start, found, run_id = 0, None, None
    if resume:
        latest = latest_checkpoint(out)
        if latest is None:
            log.warning("--resume: no complete checkpoint in %s, starting from step 0", out)
        else:
            found, state = latest
            start, run_id = state["step"], state.get("wandb_run_id")
        _truncate_metrics(out / "metrics.jsonl", start)
    (out / "rollouts").mkdir(parents=True, exist_ok=True)
    for stale in checkpoints_dir(out).glob("*.tmp"):
        shutil.rmtree(stale)  # a save that was killed half-way
    save_config(cfg, out / "config.yaml")
    return start, found, run_id


def _truncate_metrics(path: Path, keep_through: int) -> None:
    import json

    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= keep_through]
    path.write_text("".join(ln + "\n" for ln in lines))
