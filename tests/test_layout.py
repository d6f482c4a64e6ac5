"""The code's shape, read from the source with `ast`: imports go one way (docs/architecture.md), and
no function or file outgrows a reading.

Layers, lowest first; a module may import modules of its own layer or a lower one, never a higher one
(imports inside functions count too). Leaves import nothing of the project but other leaves.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rl", "rewards", "envs", "launch")

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaf", ("rl", "rl.types", "rl.grpo", "rl.config", "rl.config_checks", "rl.config_io", "rl.task_config", "rl.algo_config",
              "rl.plugins", "rl.models", "rl.vllm_setup", "rl.checkpoint", "rl.console", "rl.thinking", "rl.thinking.tags", "rl.thinking.chat",
              "rl.thinking.budget", "rl.recipe_config", "rewards.spec", "rewards.base")),
    ("rewards", ("rewards",)),
    ("envs", ("envs",)),
    ("actor support", ("rl.weight_sync", "rl.fault", "rl.data", "rl.metrics", "rl.lora", "rl.learner_state",
                       "rl.learner_logprobs")),
    ("actors", ("rl.rollout", "rl.learner", "rl.teacher")),
    ("orchestration", ("rl.actors", "rl.round", "rl.pipeline", "rl.evaluate", "rl.report")),
    ("stages and the driver", ("rl.thinking.sft", "rl.thinking.fusion_data", "rl.thinking.evals", "rl.query_filter",
                               "rl.agent_data", "rl.recipe", "rl.recipe_eval", "rl.recipe_stages",
                               "rl.recipe_table", "rl.driver")),
    ("entry points", ("rl.cli", "launch")),
]
"""(layer name, module prefixes); a module belongs to the layer of its longest matching prefix."""
PACKAGE_ONLY = {"rl", "rl.thinking"}
"""Entries that name a package's __init__ only: their other modules are listed one by one, so a new
module there has no layer until someone places it (test_every_module_has_a_layer fails)."""

MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 450
DATA_TABLES = {"tests/data/peer_cases/build.py"}
"""Files that are mostly data (test-case tables), exempt from the file length limit."""


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[int, str]:
    """(index, name) of the layer whose longest prefix matches `module`."""
    best = (-1, -1, "")
    for index, (name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            covers = module.startswith(prefix + ".") and prefix not in PACKAGE_ONLY
            if (module == prefix or covers) and len(prefix) > best[0]:
                best = (len(prefix), index, name)
    if best[0] < 0:
        raise KeyError(f"module {module} is in no layer; add it to LAYERS in tests/test_layout.py")
    return best[1], best[2]


def imported_modules(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, project module) of every import in `tree`, at any depth; `from pkg import sub` names the
    submodule when `sub` is one."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".") + ([""] if is_package else [])  # a package's __init__ is inside it
                package = parts[: len(parts) - node.level]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in known else base))
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def layer_violations(root: Path) -> list[str]:
    """Every import of a higher layer, as "file:line: module (layer) imports module (layer)"."""
    paths = [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))]
    known = {module_name(root, p) for p in paths}
    problems = []
    for path in paths:
        module = module_name(root, path)
        index, name = layer_of(module)
        for line, target in imported_modules(ast.parse(path.read_text()), module, path.name == "__init__.py", known):
            target_index, target_name = layer_of(target)
            if target_index > index:
                problems.append(f"{path.relative_to(root)}:{line}: {module} ({name}) imports {target} ({target_name})")
    return problems


def test_imports_go_one_way():
    assert layer_violations(ROOT) == []


@pytest.mark.parametrize("victim, bad_import", [
    ("rl/grpo.py", "from rl.driver import train"),                # a leaf importing the top
    ("rewards/math.py", "import envs.tasks"),                     # rewards importing envs
    ("envs/tasks.py", "    from rl.round import build_requests"),  # inside a function, indented
])
def test_a_deliberate_violation_is_caught(tmp_path: Path, victim: str, bad_import: str):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / victim
    text = path.read_text()
    if bad_import.startswith(" "):
        text += f"\n\ndef _sneaky():\n{bad_import}\n"
    else:
        text += f"\n{bad_import}\n"
    path.write_text(text)
    problems = layer_violations(tmp_path)
    assert len(problems) == 1 and problems[0].startswith(victim), problems


def test_every_module_has_a_layer():
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            layer_of(module_name(ROOT, path))
    with pytest.raises(KeyError, match="rl.brand_new is in no layer"):
        layer_of("rl.brand_new")  # a new module of rl/ must be placed, not fall into the leaves


def python_files() -> list[Path]:
    return sorted(p for d in ("rl", "rewards", "envs", "launch", "tests", "benchmarks", "examples")
                  for p in (ROOT / d).rglob("*.py"))


def test_no_function_or_file_outgrows_a_reading():
    long_files, long_functions = [], []
    for path in python_files():
        rel = str(path.relative_to(ROOT))
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES and rel not in DATA_TABLES:
            long_files.append(f"{rel}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel}:{node.lineno} {node.name}: {lines} lines")
    assert long_files == [], f"files over {MAX_FILE_LINES} lines: split them by responsibility"
    assert long_functions == [], f"functions over {MAX_FUNCTION_LINES} lines: split them"
