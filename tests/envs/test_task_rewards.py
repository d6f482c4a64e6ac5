"""The small rule rewards the task catalogue added: length, overlong, json_schema, rag, premise,
language, translation, choice (positive and negative cases each).

    .venv/bin/python -m pytest tests/test_task_rewards.py -q
"""
from __future__ import annotations

import jsonschema
import pytest

from rewards.base import required_fields
from rewards.choice import choice_reward, picked_letter
from rewards.language import language_probabilities, language_reward, translation_reward
from rewards.length import length_reward, overlong_reward
from rewards.premise import premise_reward
from rewards.rag import rag_reward
from rewards.registry import get_reward
from rewards.structured import extract_json, json_schema_reward

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.mark.parametrize("name, fn", [("length", length_reward), ("overlong", overlong_reward),
                                      ("json_schema", json_schema_reward), ("rag", rag_reward),
                                      ("premise", premise_reward), ("language", language_reward),
                                      ("translation", translation_reward), ("choice", choice_reward)])
def test_builtin_names_resolve(name, fn):
    assert get_reward(name) is fn


# ------------------------------------------------------------------------------------------- length
def test_length_full_marks_within_tolerance():
    assert length_reward(" ".join(["w"] * 52), target_words=50).score == 1.0  # 4% off, tolerance 10%
    assert length_reward(" ".join(["w"] * 50), target_words=50, tolerance=0.0).score == 1.0


def test_length_decreases_with_distance_and_reaches_zero():
    near = length_reward(" ".join(["w"] * 70), target_words=50).score
    far = length_reward(" ".join(["w"] * 90), target_words=50).score
    assert 0 < far < near < 1
    assert length_reward(" ".join(["w"] * 100), target_words=50).score == 0.0
    assert length_reward("", target_words=50).score == 0.0
    assert length_reward("a b", target_words=4, tolerance=0.0).score == pytest.approx(0.5)


def test_length_rejects_bad_rows():
    with pytest.raises(ValueError, match="target_words"):
        length_reward("x", target_words=0)
    assert required_fields(length_reward) == ("target_words",)


# ----------------------------------------------------------------------------------------- overlong
def test_overlong_is_dapo_soft_punishment():
    assert overlong_reward("", response_tokens=40, max_new_tokens=64, cache_tokens=16).score == 0.0
    assert overlong_reward("", response_tokens=48, max_new_tokens=64, cache_tokens=16).score == 0.0
    assert overlong_reward("", response_tokens=56, max_new_tokens=64, cache_tokens=16).score == pytest.approx(-0.5)
    assert overlong_reward("", response_tokens=64, max_new_tokens=64, cache_tokens=16).score == -1.0
    assert overlong_reward("", response_tokens=60, max_new_tokens=100).score == 0.0  # default cache: 20 tokens
    assert overlong_reward("", response_tokens=90, max_new_tokens=100).score == pytest.approx(-0.5)


def test_overlong_without_driver_fields_raises():
    with pytest.raises(ValueError, match="response_tokens"):
        overlong_reward("text", task="t")
    assert required_fields(overlong_reward) == ()  # the data never carries them; the driver adds them


# -------------------------------------------------------------------------------------- json_schema
def test_json_schema_valid_and_matching():
    assert json_schema_reward('{"name": "Ada", "age": 36}', schema=SCHEMA).score == 1.0
    text = 'Here it is:\n```json\n{"name": "ada ", "age": 36}\n```'
    assert json_schema_reward(text, schema=SCHEMA, expected={"name": "Ada", "age": 36}).score == 1.0
    assert json_schema_reward('Sure! {"name": "Ada", "age": 36} done', schema=SCHEMA).score == 1.0


def test_json_schema_partial_and_zero():
    wrong_value = json_schema_reward('{"name": "Ada", "age": 35}', schema=SCHEMA, expected={"name": "Ada", "age": 36})
    assert wrong_value.score == pytest.approx(0.75)
    assert json_schema_reward('{"name": "Ada", "age": "36"}', schema=SCHEMA).score == 0.0  # wrong type
    assert json_schema_reward('{"name": "Ada", "age": 36, "x": 1}', schema=SCHEMA).score == 0.0  # extra key
    assert json_schema_reward("no json here", schema=SCHEMA).score == 0.0
    assert json_schema_reward("```json\n{broken\n```", schema=SCHEMA).score == 0.0


def test_json_schema_accepts_json_text_columns_and_rejects_bad_schemas():
    import json

    assert json_schema_reward('{"name": "A", "age": 1}', schema=json.dumps(SCHEMA), expected='{"age": 1}').score == 1.0
    with pytest.raises(jsonschema.SchemaError):
        json_schema_reward("{}", schema={"type": "no-such-type"})
    with pytest.raises(ValueError, match="not JSON"):
        json_schema_reward("{}", schema="{oops")
    assert extract_json('x [1, 2] y') == [1, 2]


# ---------------------------------------------------------------------------------------------- rag
def test_rag_full_marks_need_answer_and_citation():
    assert rag_reward("Velmora has 3,421 inhabitants [2].", answer="3,421", citations=[2]).score == 1.0
    assert rag_reward("The answer is 3421 [2]", answer=["3,421", "3421"], citations=[2]).score == 1.0


def test_rag_partial_and_zero():
    assert rag_reward("Velmora has 3,421 inhabitants.", answer="3,421", citations=[2]).score == pytest.approx(0.7)
    assert rag_reward("3,421 [1][2]", answer="3,421", citations=[2]).score == pytest.approx(0.85)
    assert rag_reward("It has 5,000 inhabitants [2].", answer="3,421", citations=[2]).score == 0.0
    assert rag_reward("13,421 [2]", answer="3,421", citations=[2]).score == 0.0  # not a token match


# ------------------------------------------------------------------------------------------ premise
@pytest.mark.parametrize("text", ["That premise is false: his prize was in physics.",
                                  "Actually, Einstein never won a Nobel Prize in Chemistry.",
                                  "He did not win it; the question is mistaken.",
                                  "There is no such thing as a tenth planet."])
def test_premise_rejections_score_on_false_premises(text):
    assert premise_reward(text, premise_false=True).score == 1.0


def test_premise_negatives():
    assert premise_reward("He won it for his work on catalysts.", premise_false=True).score == 0.0
    assert premise_reward("That is not true.", premise_false=False, answer="Paris").score == 0.0
    assert premise_reward("It is Paris.", premise_false=False, answer="Paris").score == 1.0
    assert premise_reward("It is Lyon.", premise_false=False, answer="Paris").score == 0.5
    with pytest.raises(TypeError, match="bool"):
        premise_reward("x", premise_false="yes")


# ---------------------------------------------------------------------------------------- language
@pytest.mark.parametrize("text, lang", [("La capitale de l'Italie est Rome, une ville magnifique.", "fr"),
                                        ("Die Hauptstadt von Italien ist Rom, eine schöne Stadt.", "de"),
                                        ("La capital de Italia es Roma, una ciudad muy bonita.", "es")])
def test_language_detects_the_asked_language(text, lang):
    assert language_reward(text, language=lang).score == 1.0
    assert language_reward(text, language="en").score < 0.1


def test_language_partial_credit_for_mixed_text():
    mixed = "casa house maison"  # langdetect (seeded) hesitates: {"pt": ~0.86, "en": ~0.14}
    probs = language_probabilities(mixed)
    assert len(probs) >= 2
    runner_up = sorted(probs, key=probs.get)[-2]
    result = language_reward(mixed, language=runner_up)
    assert 0.0 < result.score < 1.0 and result.score == probs[runner_up]


def test_language_zero_for_no_letters_and_deterministic():
    assert language_reward("12345", language="fr").score == 0.0
    assert language_reward("", language="fr").score == 0.0
    text = "Ciao, come stai oggi?"
    assert language_reward(text, language="it").score == language_reward(text, language="it").score


# ------------------------------------------------------------------------------------- translation
def test_translation_chrf():
    assert translation_reward("Le chat dort sur le canapé.", answer="Le chat dort sur le canapé.").score == 1.0
    close = translation_reward("Le chat dort sur le sofa.", answer="Le chat dort sur le canapé.").score
    wrong = translation_reward("Der Hund bellt laut.", answer="Le chat dort sur le canapé.").score
    assert 0.3 < close < 1.0 and wrong < 0.2 and wrong < close
    # only the first line counts by default: commentary after the translation is ignored
    assert translation_reward("Le chat dort.\n(This is French.)", answer="Le chat dort.").score == 1.0
    with pytest.raises(ValueError, match="reference"):
        translation_reward("x", answer="")


# ------------------------------------------------------------------------------------------ choice
@pytest.mark.parametrize("text, letter", [("The answer is (B).", "B"), ("Answer: C", "C"), ("\\boxed{D}", "D"),
                                          ("B) 9.8 m/s^2", "B"), ("A", "A"), ("(C) Neon", "C")])
def test_choice_picks(text, letter):
    assert picked_letter(text) == letter
    assert choice_reward(text, answer=letter).score == 1.0


@pytest.mark.parametrize("text", ["A or B, hard to say", "the answer is a bird", "I am not sure", "Answer: C"])
def test_choice_wrong_or_no_pick(text):
    assert choice_reward(text, answer="B").score == 0.0


def test_choice_rejects_bad_gold():
    with pytest.raises(ValueError, match="one letter"):
        choice_reward("A", answer="AB")
