"""The quiet console (rl/console.py): which lines reach it, what goes to RUN/console.log, and the
closing summary (rl/report.py)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from rl.console import LOG_ENV, VERBOSE_ENV, ConsoleFilter
from rl.report import summary
from tests.helpers import ROOT


def record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


@pytest.mark.parametrize("name, level, message, shown", [
    ("rl.driver", logging.INFO, "resumed from step 10", True),
    ("rewards.runner", logging.WARNING, "reward 'code' failed", True),
    ("vllm.engine", logging.INFO, "Initializing a V1 LLM engine", False),
    ("DeepSpeed", logging.INFO, "DeepSpeed info: version=0.18", False),
    ("vllm.model_loader", logging.WARNING, "KV cache is smaller than asked", True),
    ("vllm.rotary", logging.WARNING, "RotaryEmbedding: Failed to load weights", False),
    ("ray", logging.ERROR, "actor died", True),
])
def test_console_filter(monkeypatch, name, level, message, shown):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    assert ConsoleFilter().filter(record(name, level, message)) is shown
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert ConsoleFilter().filter(record(name, level, message)) is True, "--verbose shows everything"


ACTOR = """
import logging, os, sys
from rl.console import quiet_actor
logging.basicConfig(level=logging.INFO)  # what Ray's workers have: everything to stderr
quiet_actor()
print("a print from a library")
os.write(2, b"C++ noise on fd 2\\n")
logging.getLogger("vllm").info("engine started")
logging.getLogger("rl.rollout").warning("a warning of ours")
logging.getLogger("rl.rollout").warning("RotaryEmbedding: Failed to load weights")
"""


def test_an_actors_output_goes_to_the_run_log_and_only_our_warnings_to_the_console(tmp_path):
    log = tmp_path / "console.log"
    env = {"PATH": "/usr/bin:/bin", LOG_ENV: str(log), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", ACTOR], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout == "" and proc.stderr.strip() == "WARNING rl.rollout: a warning of ours"
    kept = log.read_text()
    assert all(text in kept for text in ("a print from a library", "C++ noise", "engine started", "a warning of ours"))
    verbose = subprocess.run([sys.executable, "-c", ACTOR], capture_output=True, text=True, check=True,
                             env={**env, VERBOSE_ENV: "1"})
    assert "a print from a library" in verbose.stdout and "C++ noise" in verbose.stderr


def test_closing_summary_names_the_change_and_where_to_look(tmp_path):
    rewards = [0.2, 0.3, 0.2, 0.3, 0.2, 0.5, 0.6, 0.7, 0.6, 0.8, 0.9, 0.9]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for step, reward in enumerate(rewards, 1):
            f.write(json.dumps({"step": step, "reward/mean": reward, "reward/arithmetic/mean": reward,
                                "reward/arithmetic/accuracy": reward / 2}) + "\n")
    text = summary(tmp_path, 120.0, tmp_path / "checkpoints" / "step_000012", tmp_path / "report.html")
    lines = text.splitlines()
    assert lines[0] == "run finished: 12 steps in 2.0 min (10.0 s/step)"
    assert lines[1].split() == ["reward", "0.240", "(first", "5", "steps)", "->", "0.780", "(last", "5),", "+0.540"]
    assert lines[2].split()[:2] == ["accuracy", "0.120"]
    assert f"checkpoint {tmp_path / 'checkpoints' / 'step_000012'}" in text and "report.html" in text


def test_the_progress_bar_names_the_command_and_shows_the_loss_for_sft(tmp_path, capsys):
    from rl.metrics import RunLogger

    bars = {}
    for desc, metrics, shown in (("grpo", {"reward/mean": 0.5, "time/step": 2.0}, ("reward", "reward/mean")),
                                 ("sft", {"loss/sft": 1.25}, ("loss", "loss/sft"))):
        logger = RunLogger(tmp_path / desc, {}, mode="disabled", project="p", run_name=desc, total_steps=2,
                           start_step=0, progress_bar=True, desc=desc, shown=shown)
        (tmp_path / desc).mkdir()
        logger.log(1, metrics)
        logger.close()
        bars[desc] = capsys.readouterr().err
    assert "grpo:" in bars["grpo"] and "reward=0.500" in bars["grpo"]
    assert "sft:" in bars["sft"] and "loss=1.250" in bars["sft"] and "reward" not in bars["sft"]
