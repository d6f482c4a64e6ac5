"""benchmarks/learner_memory.py at toy sizes: one measuring step through the learner's code, the table
and JSON from the measurements, and the estimate of an unchunked point that would not fit."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT))

from benchmarks import learner_memory  # noqa: E402

TOY = ["--vocab", "2048", "--hidden", "64", "--layers", "1", "--prompt", "8", "--chunk", "16", "--threads", "1"]


@pytest.mark.parametrize("mode", learner_memory.MODES)
def test_one_measurement_runs_a_grpo_step(mode, capsys):
    """What a measuring child process does, here in this one: a forward + backward at 40 tokens."""
    assert learner_memory.main(["--out", "unused", *TOY, "--measure", mode, "40"]) == 0
    point = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert point["peak_gib"] >= 0 and point["seconds"] > 0


def test_main_writes_aligned_figures_and_estimates_what_does_not_fit(tmp_path, monkeypatch):
    """Fake measurements: the body grows by 1 GiB per 1000 tokens, the whole logits by 4 GiB per 1000
    tokens, the chunked logits stay at 0.5 GiB; with --max-gib 30 the last unchunked point (predicted
    8 + 32 = 40 GiB) is not run but estimated the same way."""
    runs = []

    def fake_child(args, mode, tokens):
        runs.append((mode, tokens))
        body = tokens / 1000
        return {"peak_gib": body + {"chunked": 0.5, "unchunked": 4 * tokens / 1000, "body": 0.0}[mode],
                "seconds": 1.0}

    monkeypatch.setattr(learner_memory, "run_child", fake_child)
    out = tmp_path / "lm.json"
    assert learner_memory.main(["--out", str(out), *TOY, "--lengths", "1000", "2000", "8000", "--max-gib", "30"]) == 0
    data = json.loads(out.read_text())
    assert data["response_tokens"] == [1000, 2000, 8000]
    assert ("unchunked", 8000) not in runs and ("unchunked", 2000) in runs
    assert data["unchunked_measured"] == [True, True, False]
    assert data["peak_gib_unchunked"] == pytest.approx([5.0, 10.0, 40.0])
    assert data["logits_gib_chunked"] == pytest.approx([0.5, 0.5, 0.5])
    assert data["peak_gib_chunked"] == pytest.approx([1.5, 2.5, 8.5])


@pytest.mark.slow
def test_the_script_runs_end_to_end(tmp_path):
    out = tmp_path / "lm.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "learner_memory.py"), "--out", str(out), *TOY,
                           "--lengths", "48"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    for key in ("peak_gib_chunked", "peak_gib_unchunked", "logits_gib_chunked", "peak_gib_body"):
        assert len(data[key]) == 1 and data[key][0] >= 0, key
    assert "logits part, chunked" in proc.stdout
