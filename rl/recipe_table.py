"""The recipe's stage-by-stage table: recipe.md (markdown) and recipe.png, from recipe.json's rows.

A cell is `mean ± half-width` of the metric's 95% bootstrap interval over prompts (rl/recipe_eval.py);
a change between two rows is beyond noise when the intervals do not overlap. The distill row's cells
also show the reverse KL to the teacher at the first and last on-policy step.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any


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
            notes.append(f"reverse KL {row['reverse_kl']['first']:.3f} -> {row['reverse_kl']['last']:.3f}")
        notes.append(f"{row['seconds'] / 60:.1f} min")
        lines.append(f"| {stage} | " + " | ".join(cell(row["metrics"], c) for c in columns) + f" | {'; '.join(notes)} |")
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
    text = markdown(state, columns)
    (out / "recipe.md").write_text(f"# recipe {state['name']}{' (smoke)' if state.get('smoke') else ''}\n\n{text}")
    plot(state, columns, out / "recipe.png")
    return text
