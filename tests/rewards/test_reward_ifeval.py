"""The `ifeval` reward (rewards/ifeval.py): every IFEval instruction type, strict vs loose, row format.

Expected verdicts follow the reference checkers' own semantics (lm-evaluation-harness's copy of
google-research's instruction_following_eval), e.g. words are `\\w+` runs ("don't" is two), sentences
come from NLTK's Punkt model, keyword frequency counts substrings, "less than" is strict.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nltk
import pytest

import rewards.ifeval as ifeval_module
from rewards.base import required_fields
from rewards.ifeval import install_punkt_tab, ifeval_reward, instruction_ids
from rewards.registry import get_reward
from tests.helpers import ROOT

# Every kwarg name that appears in the google/IFEval dataset: each row's kwargs dicts carry all of
# them, None where an instruction does not use one.
IFEVAL_KWARG_NAMES = (
    "capital_frequency", "capital_relation", "end_phrase", "first_word", "forbidden_words", "frequency",
    "keyword", "keywords", "language", "let_frequency", "let_relation", "letter", "nth_paragraph",
    "num_bullets", "num_highlights", "num_paragraphs", "num_placeholders", "num_sentences", "num_words",
    "postscript_marker", "prompt_to_repeat", "relation", "section_spliter",
)


def dataset_kwargs(**given):
    """A kwargs dict as the IFEval dataset stores it (every name present, None when unused)."""
    return {name: given.get(name) for name in IFEVAL_KWARG_NAMES} | given


# (instruction id, kwargs, a response that follows it, a response that violates it)
CASES = [
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "The NASA and ESA teams met today.", "The Nasa team met today."),
    # "I" is an all-capital token too, so "I love NASA" has 2 and is not "less than 2".
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "We love NASA.", "I love NASA."),
    ("change_case:english_capital", {},
     "THIS IS MY ANSWER, WRITTEN ENTIRELY IN CAPITAL LETTERS AND IN ENGLISH.",
     "This is my answer, written mostly in lowercase letters and in English."),
    ("change_case:english_lowercase", {},
     "this is my answer, written entirely in lowercase letters and in english.",
     "This is my answer, written mostly in lowercase letters and in English."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a haiku about rain."},
     "Write a haiku about rain.\nSoft rain on the roof / the gutters hum a low tune / the street turns to glass",
     "Here is a haiku about rain: soft rain on the roof."),
    ("combination:two_responses", {},
     "Paris is the capital of France.\n******\nThe capital of France is Paris.",
     "Paris is the capital of France.\n******\nParis is the capital of France."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Dear [name], please come to [address] at noon.", "Dear [name], please come at noon."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "See you at the meeting.\n\nP.S. Bring the slides.", "See you at the meeting. Bring the slides."),
    ("detectable_format:constrained_response", {},
     "My answer is yes.", "Yes, definitely."),
    ("detectable_format:json_format", {},
     '```json\n{"city": "Paris", "population": 2100000}\n```', "{city: Paris}"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nThe problem.\nSection 2\nThe solution.", "Section 1\nThe problem and the solution."),
    # Exactly num_bullets: too many violates (5, so that loose, dropping up to 2 lines, still sees 3+).
    ("detectable_format:number_bullet_lists", {"num_bullets": 2},
     "* apples\n* pears", "* apples\n* pears\n* plums\n* figs\n* kiwis"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "Two points: *price matters* and *quality matters*.", "One point: *price matters*."),
    ("detectable_format:title", {},
     "<<Ode to Rain>>\nRain falls softly.", "Ode to Rain\nRain falls softly."),
    ("keywords:existence", {"keywords": ["rain", "cloud"]},
     "The cloud brought rain.", "The sky was clear."),
    # Forbidden words match whole words only: "badge" is fine.
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "awful"]},
     "The badge looked good.", "The weather was bad."),
    # Keyword frequency counts substrings, case-insensitively: "Category" and "catalog" hold "cat".
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": "at least"},
     "My cat reads the Category list and the catalog.", "My cat sleeps; the dog barks."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "less than"},
     "A zebra ran.", "The pizza was hot."),
    ("language:response_language", {"language": "de"},
     "Das Wetter ist heute sehr schön, und wir gehen am Nachmittag in den Park spazieren.",
     "The weather is very nice today, and we are going for a walk in the park this afternoon."),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
     "Cats sleep a lot.\n\nHowever, they hunt at night.", "Cats sleep a lot.\n\nBut they hunt at night."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "First part.\n***\nSecond part.\n***\nThird part.", "First part.\n***\nSecond part."),
    # Punkt knows "Mr." and "p.m." are no sentence ends: 2 sentences, which is "less than 3".
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "Mr. Smith arrived at 5 p.m. today. He sat down.", "He came. He saw. He left."),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
     "He came. He saw. He left.", "Mr. Smith arrived at 5 p.m. today. He sat down."),
    # Words are \w+ runs: "I don't know" is 4 words (I, don, t, know), not "less than 4".
    ("length_constraints:number_words", {"num_words": 4, "relation": "less than"},
     "I do not", "I don't know"),
    ("length_constraints:number_words", {"num_words": 4, "relation": "at least"},
     "I don't know", "I do not"),
    ("punctuation:no_comma", {},
     "No commas appear in this answer.", "Well, one comma appears here."),
    ("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"},
     '"Paris is the capital. Is there anything else I can help with?"',
     "Is there anything else I can help with? Paris is the capital."),
    ("startend:quotation", {},
     '"Paris is the capital of France."', "Paris is the capital of France."),
]


def test_the_registry_serves_the_25_reference_instruction_types_and_every_one_is_tested():
    ids = instruction_ids()
    assert len(ids) == 25 and "punctuation:no_comma" in ids
    assert {case[0] for case in CASES} == set(ids)
    assert get_reward("ifeval") is ifeval_reward
    assert required_fields(ifeval_reward) == ("instruction_id_list", "kwargs")


@pytest.mark.parametrize("instruction_id, kwargs, following, violating", CASES,
                         ids=[f"{case[0]}-{i}" for i, case in enumerate(CASES)])
@pytest.mark.parametrize("strict", [True, False])
def test_each_instruction_type_with_a_following_and_a_violating_response(
        instruction_id, kwargs, following, violating, strict):
    row = {"instruction_id_list": [instruction_id], "kwargs": [dataset_kwargs(**kwargs)],
           "prompt": "(the prompt)", "strict": strict}
    good = ifeval_reward(following, **row)
    assert good.score == 1.0 and good.details["followed"] == [True]
    bad = ifeval_reward(violating, **row)
    assert bad.score == 0.0 and bad.details["followed"] == [False]
    assert bad.details["mode"] == ("strict" if strict else "loose")


def test_loose_also_tries_the_response_without_its_first_line():
    row = {"instruction_id_list": ["detectable_format:json_format"], "kwargs": [{}]}
    response = 'Sure, here is the JSON you asked for:\n{"city": "Paris"}'
    assert ifeval_reward(response, **row).score == 0.0
    assert ifeval_reward(response, strict=False, **row).score == 1.0
    # ... and without asterisks: the bold marker hides the ending in strict mode only.
    row = {"instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": "Any other questions?"}]}
    assert ifeval_reward("Thanks. **Any other questions?**", **row).score == 0.0
    assert ifeval_reward("Thanks. **Any other questions?**", strict=False, **row).score == 1.0
    # Loose is an upper bound, not a free pass.
    assert ifeval_reward("Thanks. Goodbye.", strict=False, **row).score == 0.0


# Three rows in the google/IFEval format (written for these tests, in the style of the dataset).
ROWS = [
    {"key": 1001,
     "prompt": "Write a short summary of the history of the bicycle. Do not use any commas and highlight "
               "at least 2 sections with markdown, i.e. *highlighted section*. Use at least 30 words.",
     "instruction_id_list": ["punctuation:no_comma", "detectable_format:number_highlighted_sections",
                             "length_constraints:number_words"],
     "kwargs": [dataset_kwargs(), dataset_kwargs(num_highlights=2),
                dataset_kwargs(relation="at least", num_words=30)]},
    {"key": 1002,
     "prompt": "Write a riddle about a clock. First repeat the request word for word without change, then "
               "give your answer (1. do not say any words or characters before repeating the request; 2. the "
               "request you need to repeat does not include this sentence). Your answer must be in lowercase.",
     "instruction_id_list": ["combination:repeat_prompt", "change_case:english_lowercase"],
     "kwargs": [dataset_kwargs(prompt_to_repeat="Write a riddle about a clock."), dataset_kwargs()]},
    {"key": 1003,
     "prompt": "Describe your ideal weekend in exactly 3 paragraphs separated by the markdown divider ***. "
               "End your response with the exact phrase 'See you soon.'",
     "instruction_id_list": ["length_constraints:number_paragraphs", "startend:end_checker"],
     "kwargs": [dataset_kwargs(num_paragraphs=3), dataset_kwargs(end_phrase="See you soon.")]},
]

BICYCLE = ("The bicycle began in 1817 as the *running machine* of Karl Drais which riders pushed along with "
           "their feet. Pedals came decades later and the *safety bicycle* of the 1880s gave us the shape we "
           "still ride today.")


def test_dataset_rows_score_the_fraction_of_instructions_followed():
    row = ROWS[0]
    assert ifeval_reward(BICYCLE, **row).score == 1.0
    with_comma = BICYCLE.replace("1817 as", "1817, as")
    result = ifeval_reward(with_comma, **row)
    assert result.score == pytest.approx(2 / 3) and result.details["followed"] == [False, True, True]
    assert result.details["instruction_id_list"] == row["instruction_id_list"]
    assert ifeval_reward(with_comma, all_or_nothing=True, **row).score == 0.0
    assert ifeval_reward(BICYCLE, all_or_nothing=True, **row).score == 1.0

    riddle = ("write a riddle about a clock.\ni have hands but cannot clap and a face that never smiles. "
              "what am i? a clock.")
    assert ifeval_reward(riddle, **ROWS[1]).score == 1.0
    assert ifeval_reward(riddle.replace("what am i", "What am I"), **ROWS[1]).details["followed"] == [True, False]

    weekend = "I sleep late.\n***\nI walk in the park.\n***\nI cook for friends. See you soon."
    assert ifeval_reward(weekend, **ROWS[2]).score == 1.0
    assert ifeval_reward(weekend.replace("\n***\nI cook", " I cook"), **ROWS[2]).score == 0.5


def test_an_empty_response_follows_nothing_and_a_row_without_instructions_is_not_applicable():
    assert ifeval_reward("   \n", **ROWS[0]).details["followed"] == [False, False, False]
    # The forbidden-words check alone would pass on empty text; the reference still says no.
    row = {"instruction_id_list": ["keywords:forbidden_words"], "kwargs": [{"forbidden_words": ["x"]}]}
    assert ifeval_reward("", strict=False, **row).score == 0.0
    assert ifeval_reward("anything", instruction_id_list=[], kwargs=[]).score is None


def test_malformed_rows_raise_errors_that_say_what_to_fix():
    with pytest.raises(ValueError, match="unknown instruction id 'punctuation:no_commas'.*known ids"):
        ifeval_reward("x", instruction_id_list=["punctuation:no_commas"], kwargs=[{}])
    with pytest.raises(ValueError, match="2 entries but kwargs has 1"):
        ifeval_reward("x", instruction_id_list=["punctuation:no_comma", "startend:quotation"], kwargs=[{}])
    # The reference would draw a missing (None or 0) argument at random: a data error here.
    with pytest.raises(ValueError, match=r"lacks a value for \['num_words'\]"):
        ifeval_reward("x", instruction_id_list=["length_constraints:number_words"],
                      kwargs=[dataset_kwargs(relation="at least")])
    with pytest.raises(ValueError, match=r"lacks a value for \['num_highlights'\]"):
        ifeval_reward("x", instruction_id_list=["detectable_format:number_highlighted_sections"],
                      kwargs=[{"num_highlights": 0}])
    with pytest.raises(ValueError, match=r"lacks a value for \['prompt_to_repeat'\]"):
        ifeval_reward("x", instruction_id_list=["combination:repeat_prompt"], kwargs=[{}], prompt="Say hi.")
    with pytest.raises(ValueError, match=r"unexpected argument\(s\) \['num_word'\]"):
        ifeval_reward("x", instruction_id_list=["length_constraints:number_words"],
                      kwargs=[{"num_word": 3, "num_words": 3, "relation": "at least"}])
    with pytest.raises(ValueError, match="supported relation"):  # the reference's own check
        ifeval_reward("x", instruction_id_list=["length_constraints:number_words"],
                      kwargs=[{"num_words": 3, "relation": "at most"}])
    with pytest.raises(TypeError, match="must be a dict"):
        ifeval_reward("x", instruction_id_list=["punctuation:no_comma"], kwargs=[None])
    with pytest.raises(TypeError, match="must be lists"):
        ifeval_reward("x", instruction_id_list="punctuation:no_comma", kwargs=[{}])


def test_the_punkt_model_written_offline_is_nltks_english_punkt_tab(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))  # the install adds tmp_path to it
    install_punkt_tab(tmp_path)
    install_punkt_tab(tmp_path)  # already there: nothing to do
    assert str(tmp_path) in nltk.data.path
    folder = tmp_path / "tokenizers" / "punkt_tab"
    assert [p.name for p in folder.iterdir()] == ["english"]
    # Byte sizes of the files in NLTK's punkt_tab/english (entry order varies, sizes do not).
    sizes = {p.name: p.stat().st_size for p in (folder / "english").iterdir()}
    assert sizes == {"abbrev_types.txt": 619, "collocations.tab": 594, "ortho_context.tab": 236303,
                     "sent_starters.txt": 241}


def test_a_writer_that_loses_the_race_leaves_the_winners_model_and_no_staging_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    winner = tmp_path / "winner"
    install_punkt_tab(winner)
    target = tmp_path / "tokenizers" / "punkt_tab" / "english"
    real_rename = os.rename

    def other_process_wins(src, dst):
        real_rename(winner / "tokenizers" / "punkt_tab" / "english", target)
        real_rename(src, dst)  # raises: the target is now a non-empty folder

    monkeypatch.setattr(ifeval_module.os, "rename", other_process_wins)
    install_punkt_tab(tmp_path)
    assert [p.name for p in target.parent.iterdir()] == ["english"]
    assert len(list(target.iterdir())) == 4


def test_a_fresh_process_without_nltk_data_scores_sentences_offline(tmp_path):
    # NLTK may not download here: a process with an empty cache and no NLTK data must write the model.
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "NLTK_DATA": str(tmp_path / "none"),
           "HOME": str(tmp_path)}
    code = ("import nltk, os\n"
            "installed = any(os.path.isdir(os.path.join(p, 'tokenizers', 'punkt_tab')) for p in nltk.data.path)\n"
            "from rewards.ifeval import ifeval_reward as f\n"
            "r = f('Mr. Smith arrived at 5 p.m. today. He sat down.', "
            "instruction_id_list=['length_constraints:number_sentences'], "
            "kwargs=[{'num_sentences': 2, 'relation': 'at least'}])\n"
            "print(r.score, installed)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    score, installed = out.stdout.split()
    assert score == "1.0"
    assert "Error loading" not in out.stderr  # no download was attempted
    written = tmp_path / "cache" / "qwen3-rl" / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    assert installed == "True" or written.is_dir()  # a machine with NLTK data uses that instead


@pytest.mark.parametrize("instruction_id, kwargs", [
    # Two rows of IFEval's own input_data.jsonl (keys 1122 and 1129) ask for a non-letter "letter".
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 4, "let_relation": "at least"}),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": -1, "let_relation": "at least"}),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "so"}),
])
def test_values_the_reference_would_replace_at_random_raise(instruction_id, kwargs):
    """The reference draws a random argument for invalid values too, not only for missing ones:
    scoring such a row would be a coin flip, so it is a data error that names the row's kwargs."""
    import random

    import lm_eval.tasks.ifeval.instructions as reference
    with pytest.raises(ValueError, match="would draw a random one"):
        ifeval_reward("so it goes", instruction_id_list=[instruction_id], kwargs=[kwargs])
    assert reference.random is random  # the check put the reference's own module back
    valid = dict(kwargs, letter="a", let_frequency=1) if "letter" in kwargs else dict(kwargs, nth_paragraph=1)
    assert ifeval_reward("so a\n\nb", instruction_id_list=[instruction_id], kwargs=[valid]).score == 1.0
