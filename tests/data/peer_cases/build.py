"""Rebuild the peer-case files in this folder from the peers' own repositories (needs checkouts of them).

    python tests/data/peer_cases/build.py --math-verify DIR --ifeval DIR --human-eval DIR --bfcl DIR

Each file holds a sample of cases with the verdict of the peer's own reference, which
tests/rewards/test_reward_peer_cases.py checks `get_reward(name)` against:
- math_verify.jsonl: parametrized cases of Math-Verify's tests/test_all.py (and test_numina_cases.py,
  test_open_thoughts.py, test_boxed.py) that use the configuration of our `math` reward (LaTeX + expression
  extraction, float precision 6, strict), with their expected verdict.
- ifeval.jsonl: the responses that google-research's instruction_following_eval/instructions_test.py
  checks, one line per check of a registered IFEval instruction, with the verdict of the reference checker.
- humaneval.jsonl: HumanEval problems (data/HumanEval.jsonl.gz) with their canonical solution, a
  `return None` body and another problem's solution, plus the harness's example samples; verdict = exit
  status of HumanEval's check program (prompt + completion + test + check(entry_point)).
- bfcl.jsonl: BFCL v4 Python categories: calls built from possible_answer (gold, optional args omitted,
  one wrong value, one dropped argument, wrong name, extra call, reordered parallel calls); verdict =
  BFCL's ast_checker (bfcl_eval/eval_checker/ast_eval/ast_checker.py) run on the same calls.
The full-size agreement figures (all cases, not the sample) are in docs/rewards.md.
"""
from __future__ import annotations

import argparse
import ast
import copy
import enum
import gzip
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import types
import unittest
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
MATH_FILES = ("test_all.py", "test_numina_cases.py", "test_open_thoughts.py", "test_boxed.py")
BFCL_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple",
                   "live_parallel", "live_parallel_multiple")


def write(name: str, rows: list[dict]) -> None:
    with open(HERE / name, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    print(f"{name}: {len(rows)} cases")


def math_verify_cases(repo: Path, max_chars: int) -> list[dict]:
    """(gold, pred, expected) of every parametrized test that calls compare_strings with LaTeX + expr
    extraction and no other option (the configuration of our reward)."""
    rows = []
    for name in MATH_FILES:
        tree = ast.parse((repo / "tests" / name).read_text())
        for fn in tree.body:
            if not isinstance(fn, ast.FunctionDef) or not fn.decorator_list:
                continue
            deco = fn.decorator_list[0]
            if not (isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize"):
                continue
            call = next((n for n in ast.walk(fn) if isinstance(n, ast.Call)
                         and getattr(n.func, "id", "") == "compare_strings"), None)
            options = {k.arg: k.value for k in call.keywords} if call else None
            if options is None or set(options) - {"match_types"}:
                continue
            if "match_types" in options and ast.literal_eval(options["match_types"]) != ["latex", "expr"]:
                continue
            names = [n.strip() for n in ast.literal_eval(deco.args[0]).split(",")]
            for values in ast.literal_eval(deco.args[1]):
                case = dict(zip(names, values))
                if len(case["pred"]) + len(case["gold"]) <= max_chars:
                    rows.append({"source": f"Math-Verify tests/{name}::{fn.name}", "gold": case["gold"],
                                 "pred": case["pred"], "expected": float(case["expected"])})
    return rows


def ifeval_cases(repo: Path) -> list[dict]:
    """Run instructions_test.py with every registered checker wrapped to record (id, kwargs, response,
    the reference checker's verdict); the test's own assertions still run against that verdict."""
    import rewards.ifeval  # installs NLTK's punkt_tab offline before lm-eval's checkers are imported
    rewards.ifeval.instruction_ids()
    import lm_eval.tasks.ifeval.instructions as reference
    import lm_eval.tasks.ifeval.instructions_registry as registry

    id_of = {cls: iid for iid, cls in registry.INSTRUCTION_DICT.items()}
    rows: list[dict] = []

    def recording(cls: type) -> type:
        class Recording(cls):
            def build_description(self, **kwargs):
                self.recorded = kwargs
                return super().build_description(**kwargs)

            def check_following(self, value):
                verdict = super().check_following(value)
                rows.append({"source": "instruction_following_eval/instructions_test.py", "id": id_of[cls],
                             "kwargs": getattr(self, "recorded", {}), "response": value, "expected": bool(verdict)})
                return verdict
        return Recording

    shim = types.ModuleType("instructions")
    shim.__getattr__ = lambda name: getattr(reference, name)
    for cls in id_of:
        setattr(shim, cls.__name__, recording(cls))
    package = types.ModuleType("instruction_following_eval")
    package.instructions = shim
    sys.modules.update({"instruction_following_eval": package, "instruction_following_eval.instructions": shim})
    spec = importlib.util.spec_from_file_location("instructions_test", repo / "instruction_following_eval" / "instructions_test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = unittest.TextTestRunner(verbosity=0).run(unittest.defaultTestLoader.loadTestsFromModule(module))
    if not result.wasSuccessful():
        raise RuntimeError("IFEval's own tests fail on the reference checkers; fix the environment first")
    return rows


def humaneval_check(problem: dict, completion: str) -> bool:
    program = problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return subprocess.run([sys.executable, "-c", program], cwd=tmp, capture_output=True, timeout=5,
                                  stdin=subprocess.DEVNULL).returncode == 0
        except subprocess.TimeoutExpired:
            return False


def humaneval_cases(repo: Path, count: int) -> list[dict]:
    with gzip.open(repo / "data" / "HumanEval.jsonl.gz", "rt") as f:
        problems = [json.loads(line) for line in f]
    picked = random.Random(0).sample(range(len(problems)), count)
    rows = []
    for i in picked:
        p = problems[i]
        for kind, completion in (("canonical", p["canonical_solution"]), ("return None", "    return None\n"),
                                 ("another problem's solution", problems[(i + 1) % len(problems)]["canonical_solution"])):
            rows.append({"source": f"human-eval {p['task_id']}", "kind": kind, "completion": completion,
                         **{k: p[k] for k in ("prompt", "test", "entry_point")}, "expected": humaneval_check(p, completion)})
    example = json.loads((repo / "data" / "example_problem.jsonl").read_text())
    for line in (repo / "data" / "example_samples.jsonl").read_text().splitlines():
        completion = json.loads(line)["completion"]
        rows.append({"source": "human-eval data/example_samples.jsonl", "kind": "example sample",
                     "completion": completion, **{k: example[k] for k in ("prompt", "test", "entry_point")},
                     "expected": humaneval_check(example, completion)})
    return rows


def load_bfcl_checker(repo: Path):
    """BFCL's ast_checker with stubs for the imports its Python path does not use (model registry, Java/JS)."""
    class Language(enum.Enum):
        PYTHON = "python"
        JAVA = "java"
        JAVASCRIPT = "javascript"

    def stub(name: str, **attrs) -> None:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module

    for name in ("bfcl_eval", "bfcl_eval.constants", "bfcl_eval.eval_checker", "bfcl_eval.eval_checker.ast_eval",
                 "bfcl_eval.eval_checker.ast_eval.type_convertor"):
        stub(name)
    stub("bfcl_eval.constants.enums", Language=Language)
    stub("bfcl_eval.constants.model_config",
         MODEL_CONFIG_MAPPING=defaultdict(lambda: types.SimpleNamespace(underscore_to_dot=False)))
    stub("bfcl_eval.constants.type_mappings", JAVA_TYPE_CONVERSION={}, JS_TYPE_CONVERSION={})
    stub("bfcl_eval.eval_checker.ast_eval.type_convertor.java_type_converter", java_type_converter=None)
    stub("bfcl_eval.eval_checker.ast_eval.type_convertor.js_type_converter", js_type_converter=None)
    path = repo / "berkeley-function-call-leaderboard" / "bfcl_eval" / "eval_checker" / "ast_eval" / "ast_checker.py"
    spec = importlib.util.spec_from_file_location("bfcl_ast_checker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda functions, calls, truth, category: module.ast_checker(
        functions, calls, truth, Language.PYTHON, category, "stub")["valid"]


def gold_calls(truth: list[dict], omit_optional: bool) -> list[dict]:
    calls = []
    for expected in truth:
        (name, args), = expected.items()
        call = {}
        for arg, accepted in args.items():
            values = [v for v in accepted if v != ""]
            if values and not ("" in accepted and omit_optional):
                call[arg] = values[0]
        calls.append({name: call})
    return calls


def wrong(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 7
    if isinstance(value, str):
        return value + "zz"
    if isinstance(value, list):
        return value + value[:1] if value else [1]
    return {**value, "zz_extra": 1}


def bfcl_variants(truth: list[dict], rng: random.Random) -> list[tuple[str, list[dict]]]:
    calls = gold_calls(truth, False)
    out = [("gold", calls), ("gold, optional omitted", gold_calls(truth, True))]
    (name, args), = calls[0].items()
    if args:
        arg = rng.choice(sorted(args))
        changed = copy.deepcopy(calls)
        changed[0][name][arg] = wrong(args[arg])
        out.append(("wrong value", changed))
        dropped = copy.deepcopy(calls)
        del dropped[0][name][arg]
        out.append(("dropped argument", dropped))
    out.append(("wrong name", [{name + "_x": args}] + copy.deepcopy(calls[1:])))
    out.append(("extra call", copy.deepcopy(calls + calls[:1])))
    if len(calls) > 1:
        out.append(("reordered", list(reversed(copy.deepcopy(calls)))))
    return out


def bfcl_cases(repo: Path, per_category: int, max_schema_chars: int = 4000) -> list[dict]:
    """One row per question (its schemas and ground truth once), with the call variants and verdicts."""
    checker = load_bfcl_checker(repo)
    data = repo / "berkeley-function-call-leaderboard" / "bfcl_eval" / "data"
    rng, rows = random.Random(0), []
    for category in BFCL_CATEGORIES:
        questions = {json.loads(line)["id"]: json.loads(line)
                     for line in (data / f"BFCL_v4_{category}.json").read_text().splitlines()}
        answers = [json.loads(line) for line in (data / "possible_answer" / f"BFCL_v4_{category}.json").read_text().splitlines()]
        small = [a for a in answers if len(json.dumps(questions[a["id"]]["function"])) <= max_schema_chars]
        for answer in rng.sample(small, min(per_category, len(small))):
            functions, truth = questions[answer["id"]]["function"], answer["ground_truth"]
            variants = [{"kind": kind, "calls": calls, "expected": checker(functions, calls, truth, category)}
                        for kind, calls in bfcl_variants(truth, rng)]
            rows.append({"source": f"BFCL v4 {answer['id']}", "function": functions, "possible_answer": truth,
                         "variants": variants})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--math-verify", type=Path, required=True, help="checkout of huggingface/Math-Verify")
    parser.add_argument("--ifeval", type=Path, required=True,
                        help="folder holding instruction_following_eval/ (google-research/google-research)")
    parser.add_argument("--human-eval", type=Path, required=True, help="checkout of openai/human-eval")
    parser.add_argument("--bfcl", type=Path, required=True, help="checkout of ShishirPatil/gorilla")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parents[2]))
    write("math_verify.jsonl", math_verify_cases(args.math_verify, max_chars=20000))  # long ones test the answer window
    write("ifeval.jsonl", ifeval_cases(args.ifeval))
    write("humaneval.jsonl", humaneval_cases(args.human_eval, count=12))
    write("bfcl.jsonl", bfcl_cases(args.bfcl, per_category=5))


if __name__ == "__main__":
    main()
