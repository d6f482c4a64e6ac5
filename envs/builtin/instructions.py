"""Instruction-following tasks: IFEval-style verifiable constraints (reward "ifeval"), length control
(the report's LengthCtrl: a target word count, reward "length") and structured output (JSON matching
a schema, reward "json_schema").

Every row carries `solution`, a response written here that satisfies the row (what `rl tasks show`
prints and the tests score): the instructions are drawn from groups that cannot contradict each other.
Options: ifeval `max_instructions` (1-3, default 2); length_control `targets` (word counts, default
[10, 20, 30, 40]).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from envs.builtin.common import check_options
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

TOPICS = ["the ocean", "bicycles", "coffee", "libraries", "the moon", "gardening", "rainy days", "chess",
          "bread baking", "mountains", "public parks", "trains", "honeybees", "winter mornings", "old maps",
          "street food", "lighthouses", "board games", "forests", "clocks", "kites", "rivers", "deserts",
          "handwriting", "museums", "snow", "tea", "bridges", "owls", "markets"]
KEYWORDS = ["history", "future", "people", "nature", "science", "music", "water", "light", "travel", "friends"]
FORBIDDEN = ["banana", "purple", "rocket", "violin", "dragon", "umbrella"]
END_PHRASE = "Is there anything else I can help with?"


def _solution(row: Row) -> str:
    return row["solution"]


# ------------------------------------------------------------------------------------------- ifeval
@dataclass(frozen=True)
class Instruction:
    id: str
    """IFEval instruction id (lm-eval's registry)."""
    group: str
    """At most one instruction per group in a row (the groups' rules would contradict each other)."""
    kwargs: Callable[[random.Random], dict[str, Any]]
    describe: Callable[[dict[str, Any]], str]


INSTRUCTIONS = [
    Instruction("punctuation:no_comma", "comma", lambda r: {}, lambda k: "Do not use any commas."),
    Instruction("change_case:english_lowercase", "case", lambda r: {},
                lambda k: "Write only in lowercase English letters."),
    Instruction("change_case:english_capital", "case", lambda r: {},
                lambda k: "Write only in CAPITAL English letters."),
    Instruction("keywords:existence", "keywords", lambda r: {"keywords": r.sample(KEYWORDS, 2)},
                lambda k: f"Include the words '{k['keywords'][0]}' and '{k['keywords'][1]}'."),
    Instruction("keywords:forbidden_words", "forbidden", lambda r: {"forbidden_words": r.sample(FORBIDDEN, 2)},
                lambda k: f"Do not use the words '{k['forbidden_words'][0]}' or '{k['forbidden_words'][1]}'."),
    Instruction("length_constraints:number_words", "words",
                lambda r: r.choice([{"num_words": 80, "relation": "less than"}, {"num_words": 10, "relation": "at least"}]),
                lambda k: f"Use {k['relation']} {k['num_words']} words."),
    Instruction("detectable_format:number_bullet_lists", "layout", lambda r: {"num_bullets": r.choice([2, 3])},
                lambda k: f"Answer with exactly {k['num_bullets']} bullet points starting with '* '."),
    Instruction("length_constraints:number_paragraphs", "layout", lambda r: {"num_paragraphs": 2},
                lambda k: "Write 2 paragraphs separated by the line ***."),
    Instruction("detectable_format:title", "title", lambda r: {},
                lambda k: "Start with a title in double angular brackets, like <<title>>."),
    Instruction("detectable_content:postscript", "ending", lambda r: {"postscript_marker": "P.S."},
                lambda k: "End with a postscript starting with P.S."),
    Instruction("startend:end_checker", "ending", lambda r: {"end_phrase": END_PHRASE},
                lambda k: f"End your response with the exact phrase '{k['end_phrase']}'."),
    Instruction("startend:quotation", "quote", lambda r: {}, lambda k: "Wrap your whole response in double quotes."),
]


def _ifeval_solution(topic: str, chosen: dict[str, dict[str, Any]]) -> str:
    """A response that follows every chosen instruction (the row's reference answer)."""
    sentences = [f"{topic.capitalize()} is a topic many people find interesting.",
                 f"There is a lot to learn about {topic}.", f"Spending time with {topic} can be rewarding."]
    if "keywords:existence" in chosen:
        a, b = chosen["keywords:existence"]["keywords"]
        sentences.append(f"It connects {a} and {b}.")
    if "detectable_format:number_bullet_lists" in chosen:
        n = chosen["detectable_format:number_bullet_lists"]["num_bullets"]
        groups = [sentences[i::n] for i in range(n)]
        body = "\n".join("* " + " ".join(g) for g in groups)
    elif "length_constraints:number_paragraphs" in chosen:
        half = len(sentences) // 2
        body = " ".join(sentences[:half]) + "\n\n***\n\n" + " ".join(sentences[half:])
    else:
        body = " ".join(sentences)
    if "detectable_format:title" in chosen:
        body = f"<<A note on {topic}>>\n\n{body}"
    if "detectable_content:postscript" in chosen:
        body += "\n\nP.S. Thank you for reading."
    if "startend:end_checker" in chosen:
        body += " " + chosen["startend:end_checker"]["end_phrase"]
    if "change_case:english_lowercase" in chosen:
        body = body.lower()
    if "change_case:english_capital" in chosen:
        body = body.upper()
    if "startend:quotation" in chosen:
        # bullets must start their lines, so the opening quote then gets a line of its own
        body = f'"\n{body}"' if body.lstrip().startswith("*") else f'"{body}"'
    return body


def ifeval_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("ifeval", options, {"max_instructions": 2})
    if not 1 <= opts["max_instructions"] <= 3:
        raise ValueError(f"ifeval: max_instructions must be 1-3, got {opts['max_instructions']}")
    rng = random.Random(f"ifeval-{seed}")
    rows = []
    for _ in range(size):
        topic = rng.choice(TOPICS)
        chosen: dict[str, dict[str, Any]] = {}
        descriptions, groups = [], set()
        count = rng.randint(1, opts["max_instructions"])
        for inst in rng.sample(INSTRUCTIONS, len(INSTRUCTIONS)):
            if len(chosen) == count or inst.group in groups:
                continue
            kwargs = inst.kwargs(rng)
            chosen[inst.id] = kwargs
            groups.add(inst.group)
            descriptions.append(inst.describe(kwargs))
        prompt = f"Write a short note about {topic}. " + " ".join(descriptions)
        rows.append({"prompt": prompt, "instruction_id_list": list(chosen), "kwargs": list(chosen.values()),
                     "solution": _ifeval_solution(topic, chosen)})
    return rows


IFEVAL = TaskSpec(
    name="ifeval",
    description="IFEval-style verifiable instructions (case, commas, keywords, bullets, endings, ...); "
                "fraction followed, IFEval's own checkers",
    generate=ifeval_rows,
    rewards=[RewardSpec("ifeval", 1.0)],
    source="procedural (12 IFEval instruction types)",
    reference=_solution,
)


# ------------------------------------------------------------------------------------ length control
def length_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("length_control", options, {"targets": [10, 20, 30, 40]})
    rng = random.Random(f"length_control-{seed}")
    rows = []
    for _ in range(size):
        topic, target = rng.choice(TOPICS), int(rng.choice(opts["targets"]))
        filler = (f"{topic.capitalize()} can teach us something new every day if we pay attention to "
                  "the small details around us and stay curious about how things work. ").split()
        words = (filler * (target // len(filler) + 1))[:target]
        rows.append({"prompt": f"Write about {topic} in exactly {target} words.", "target_words": target,
                     "solution": " ".join(words)})
    return rows


LENGTH_CONTROL = TaskSpec(
    name="length_control",
    description="LengthCtrl: write about a topic in a target number of words; 1.0 within 10%, linear decay",
    generate=length_rows,
    rewards=[RewardSpec("length", 1.0)],
    source="procedural",
    reference=_solution,
)


# ---------------------------------------------------------------------------------- structured output
NAMES = ["Ada", "Bruno", "Chen", "Dalia", "Emeka", "Freya", "Goran", "Hana", "Ivo", "Jun"]
CITIES = ["Lisbon", "Oslo", "Nairobi", "Lima", "Seoul", "Porto", "Quebec", "Dakar", "Hanoi", "Perth"]
ITEMS = ["lamp", "kettle", "backpack", "chair", "notebook", "helmet", "camera", "blanket"]


def _person(r: random.Random) -> tuple[str, dict[str, str], dict[str, Any]]:
    name, age, city = r.choice(NAMES), r.randint(18, 90), r.choice(CITIES)
    return (f"{name} is {age} years old and lives in {city}.",
            {"name": "string", "age": "integer", "city": "string"}, {"name": name, "age": age, "city": city})


def _product(r: random.Random) -> tuple[str, dict[str, str], dict[str, Any]]:
    item, price, stock = r.choice(ITEMS), r.randint(5, 300), r.choice([True, False])
    text = f"The {item} costs {price} dollars and is {'in stock' if stock else 'sold out'}."
    return text, {"item": "string", "price": "number", "in_stock": "boolean"}, {"item": item, "price": price,
                                                                               "in_stock": stock}


def _meeting(r: random.Random) -> tuple[str, dict[str, str], dict[str, Any]]:
    who, day, hour = r.sample(NAMES, 2), r.choice(["Monday", "Tuesday", "Friday"]), r.randint(8, 17)
    text = f"{who[0]} meets {who[1]} on {day} at {hour} o'clock."
    return text, {"people": "array", "day": "string", "hour": "integer"}, {"people": who, "day": day, "hour": hour}


def json_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    check_options("json_output", options, {})
    rng = random.Random(f"json_output-{seed}")
    rows = []
    for _ in range(size):
        text, types, values = rng.choice([_person, _product, _meeting])(rng)
        properties = {k: ({"type": "array", "items": {"type": "string"}} if t == "array" else {"type": t})
                      for k, t in types.items()}
        schema = {"type": "object", "properties": properties, "required": list(types), "additionalProperties": False}
        keys = ", ".join(f"{k} ({t})" for k, t in types.items())
        rows.append({"prompt": f"Return only a JSON object with the keys {keys} for this text: {text}",
                     "schema": schema, "expected": values, "solution": _json_text(values)})
    return rows


def _json_text(values: dict[str, Any]) -> str:
    import json

    return json.dumps(values)


JSON_OUTPUT = TaskSpec(
    name="json_output",
    description="structured output: a JSON object that validates against a schema (jsonschema) with the right values",
    generate=json_rows,
    rewards=[RewardSpec("json_schema", 1.0)],
    source="procedural",
    reference=_solution,
)
