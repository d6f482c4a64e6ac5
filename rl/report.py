"""`rl report RUN_DIR`: a PNG + HTML summary of a run that a person can look at.

    rl report runs/general            # writes runs/general/report.png and runs/general/report.html

Reads <run>/metrics.jsonl (one JSON object per step, rl/metrics.py). The PNG has one small panel per
task: its mean reward (solid) and accuracy (dashed) per step, plus the overall reward. The HTML embeds
the PNG and adds two tables: the last step's per-task numbers (reward, accuracy, response length,
truncation, thinking ratio) and the last evaluation's pass@1 / pass@k per task (rl/evaluate.py).
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import Any

_EVAL_KEY = re.compile(r"^eval/(?P<task>[^/]+)/(?P<metric>pass@\d+|reward)$")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass the folder of a run (`rl train ... --output-dir DIR`)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{path} is empty: the run has not finished a step yet")
    return records


def task_names(records: list[dict[str, Any]]) -> list[str]:
    """Tasks that have per-task reward curves (`reward/<task>/mean`), without the per-mode entries."""
    names = {k.split("/")[1] for r in records for k in r if k.startswith("reward/") and k.endswith("/mean")
             and k.count("/") == 2}
    return sorted(n for n in names if not n.startswith("mode_"))


def series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def eval_table(records: list[dict[str, Any]]) -> tuple[int | None, dict[str, dict[str, float]]]:
    """The last step with eval/* metrics and its {task: {metric: value}}."""
    for record in reversed(records):
        table: dict[str, dict[str, float]] = {}
        for key, value in record.items():
            match = _EVAL_KEY.match(key)
            if match:
                table.setdefault(match["task"], {})[match["metric"]] = value
        if table:
            return record["step"], table
    return None, {}


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = ["(all tasks)"] + task_names(records)
    cols = min(6, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False, sharex=True)
    for ax, name in zip(axes.flat, names):
        key = "reward/mean" if name == "(all tasks)" else f"reward/{name}/mean"
        ax.plot(*series(records, key), marker="o", ms=3, label="reward")
        if name != "(all tasks)":
            steps, acc = series(records, f"reward/{name}/accuracy")
            if steps:
                ax.plot(steps, acc, ls="--", marker=".", label="accuracy")
        ax.set_title(name, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("per-task reward (solid) and accuracy (dashed) by step", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("" if value is None else html.escape(str(value)))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(records: list[dict[str, Any]], png: Path, run_dir: Path) -> str:
    last = records[-1]
    tasks = task_names(records)
    step_rows = [[t, last.get(f"reward/{t}/mean"), last.get(f"reward/{t}/accuracy"),
                  last.get(f"rollout/{t}/response_len"), last.get(f"rollout/{t}/truncation_rate"),
                  last.get(f"rollout/{t}/thinking_ratio"), last.get(f"rollout/{t}/count")] for t in tasks]
    eval_step, table = eval_table(records)
    metrics = sorted({m for row in table.values() for m in row}, key=lambda m: (m != "pass@1", m))
    eval_html = (f"<h2>Evaluation at step {eval_step}</h2>"
                 + _table(["task", *metrics], [[t, *(table[t].get(m) for m in metrics)] for t in sorted(table)])
                 if table else "<h2>Evaluation</h2><p>No eval/* metrics in this run (set run.eval_every).</p>")
    image = base64.b64encode(png.read_bytes()).decode()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>rl report: {html.escape(str(run_dir))}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(str(run_dir))}</h1>
<p>{len(records)} logged steps (last: {last['step']}); overall reward {_fmt(last.get('reward/mean'))},
response length {_fmt(last.get('rollout/response_len'))} tokens.</p>
<img src="data:image/png;base64,{image}" style="max-width:100%">
<h2>Per task at step {last['step']}</h2>
{_table(["task", "reward", "accuracy", "response_len", "truncation", "thinking_ratio", "samples"], step_rows)}
{eval_html}
</body></html>"""


def write_report(run_dir: Path, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write report.png and report.html for `run_dir` into `out_dir` (default: the run folder)."""
    records = read_metrics(run_dir)
    out_dir = out_dir or run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    png, page = out_dir / "report.png", out_dir / "report.html"
    plot(records, png)
    page.write_text(render_html(records, png, run_dir))
    return page, png


def window_mean(records: list[dict[str, Any]], key: str, first: bool, n: int = 5) -> float | None:
    """Mean of `key` over the first (or last) `n` steps that logged it."""
    values = series(records, key)[1]
    chosen = values[:n] if first else values[-n:]
    return sum(chosen) / len(chosen) if chosen else None


def accuracy_key(records: list[dict[str, Any]]) -> str | None:
    """The accuracy to summarise: the only task's, else none (a mix has one per task, in the report)."""
    tasks = task_names(records)
    return f"reward/{tasks[0]}/accuracy" if len(tasks) == 1 else None


def summary(run_dir: Path, wall_s: float, checkpoint: Path | None, report: Path | None) -> str:
    """What a run did, in a few lines, for the end of `rl train`."""
    records = read_metrics(run_dir)
    steps = len(records)
    n = min(5, max(1, steps // 2))  # first and last windows never overlap
    lines = [f"run finished: {steps} steps in {wall_s / 60:.1f} min ({wall_s / max(steps, 1):.1f} s/step)"]
    keys = [("reward", "reward/mean")] + ([("accuracy", key)] if (key := accuracy_key(records)) else [])
    for label, key in keys:
        start, end = window_mean(records, key, True, n), window_mean(records, key, False, n)
        if start is not None and end is not None:
            lines.append(f"  {label:<9} {start:.3f} (first {n} steps) -> {end:.3f} (last {n}), {end - start:+.3f}")
    lines.append(f"  run folder {run_dir}  (metrics.jsonl, rollouts/, console.log)")
    if report is not None:
        lines.append(f"  report     {report}")
    if checkpoint is not None:
        lines.append(f"  checkpoint {checkpoint}")
    return "\n".join(lines)
