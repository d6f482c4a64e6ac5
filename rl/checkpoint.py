"""Checkpoint folders of a run: <run>/checkpoints/step_000010/{model/, deepspeed/, trainer_state.json}.

A checkpoint is written into `step_N.tmp/` and renamed to `step_N/` only when complete, so a run
killed mid-save (even with SIGKILL) leaves the previous checkpoint as the latest valid one. Resume
reads `trainer_state.json` (the number of finished steps, the wandb run id); the data order needs no
state because it is a function of (seed, step) (see rl/data.py).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

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
