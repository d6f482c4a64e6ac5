"""The recipe's stage-by-stage table: recipe.md (markdown) and recipe.png, from recipe.json's rows.

A cell is `mean ± half-width` of the metric's 95% bootstrap interval over prompts (rl/recipe_eval.py).
The distill row's notes also show the reverse KL to the teacher at the first and last on-policy step.

Under it, "change from the start" compares each stage with the row its model started from (`start`: the
previous stage; for distillation, its student): the difference and its 95% interval. The suite scores the
same prompts after every stage, so an accuracy's interval is a paired bootstrap over prompts (the
per-prompt differences resampled together); a ThinkFollow share, whose dialogs unfold differently per
model, gets the two Wilson half-widths combined in quadrature (Newcombe's approximation). A change is
beyond noise (marked *) when its interval excludes 0. That is the usual test of a difference; asking the
two rows' own intervals not to overlap would be far stricter (a ~0.5% level, not 5%).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rl.recipe_eval import bootstrap_interval


def cell(metrics: dict[str, float], name: str) -> str:
    value = metrics.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    ci = metrics.get(f"{name}/ci95")
    return f"{value:.3f} ± {ci:.3f}" if ci is not None and not math.isnan(ci) else f"{value:.3f}"


def markdown(state: dict[str, Any], columns: list[str]) -> str:
    lines = ["| stage | " + " | ".join(columns) + " | notes |", "|---" * (len(columns) + 2) + "|"]
    for stage, row in state["rows"].items():
        notes = []
        if "filter" in row:
            f = row["filter"]
            notes.append(f"filter kept {f['kept']} of {f['queries']}" + (" (fell back)" if "fallback" in f else ""))
        if row.get("reverse_kl"):
            kl = row["reverse_kl"]
            notes.append(f"reverse KL {kl['first']:.3f} -> {kl['last']:.3f}"
                         + (f" (means of the first and last {kl['steps']} steps)" if "steps" in kl else ""))
        notes.append(f"{row['seconds'] / 60:.1f} min")
        lines.append(f"| {stage} | " + " | ".join(cell(row["metrics"], c) for c in columns) + f" | {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def paired_interval(after: list[float], before: list[float]) -> tuple[float, float, float]:
    """Mean of `after - before` over paired prompts and its 95% bootstrap interval (low, high)."""
    diffs = [a - b for a, b in zip(after, before)]
    return (sum(diffs) / len(diffs), *bootstrap_interval(diffs))


def change(row: dict[str, Any], start: dict[str, Any], name: str) -> tuple[float, float, float] | None:
    """(difference, low, high) of metric `name` from `start` to `row`; None when either lacks it."""
    a, b = row.get("per_prompt", {}).get(name), start.get("per_prompt", {}).get(name)
    if a and b and len(a) == len(b):
        return paired_interval(a, b)
    after, before = row["metrics"].get(name), start["metrics"].get(name)
    if after is None or before is None or math.isnan(after) or math.isnan(before):
        return None
    half = math.hypot(row["metrics"].get(f"{name}/ci95", math.nan), start["metrics"].get(f"{name}/ci95", math.nan))
    return after - before, after - before - half, after - before + half


def change_cell(delta: tuple[float, float, float] | None) -> str:
    if delta is None or any(math.isnan(v) for v in delta):
        return "-"
    d, low, high = delta
    return f"{d:+.3f} [{low:+.2f}, {high:+.2f}]" + (" *" if low > 0 or high < 0 else "")


def changes(state: dict[str, Any], columns: list[str]) -> str:
    """The "change from the start" table (module docstring)."""
    rows = state["rows"]
    lines = ["| stage (from) | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for stage, row in rows.items():
        start = row.get("start")
        if start in rows:
            cells = [change_cell(change(row, rows[start], c)) for c in columns]
            lines.append(f"| {stage} ({start}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(state: dict[str, Any], columns: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    stages = list(state["rows"])
    fig, ax = plt.subplots(figsize=(1.6 * len(stages) + 3, 4))
    for name in columns:
        ys = [state["rows"][s]["metrics"].get(name, float("nan")) for s in stages]
        errs = [state["rows"][s]["metrics"].get(f"{name}/ci95", 0.0) for s in stages]
        ax.errorbar(range(len(stages)), ys, yerr=[0.0 if math.isnan(e) else e for e in errs], marker="o",
                    capsize=3, label=name)
    ax.set_xticks(range(len(stages)), stages)
    ax.set(ylabel="score (95% bootstrap interval)", ylim=(-0.02, 1.02), title=f"recipe {state['name']}: stage by stage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_table(state: dict[str, Any], columns: list[str], out: Path) -> str:
    """Write recipe.md and recipe.png into `out`; returns the markdown."""
    text = markdown(state, columns) + ("\nChange from the start (95% interval; * beyond noise):\n\n"
                                       + changes(state, columns))
    (out / "recipe.md").write_text(f"# recipe {state['name']}{' (smoke)' if state.get('smoke') else ''}\n\n{text}")
    plot(state, columns, out / "recipe.png")
    return text
