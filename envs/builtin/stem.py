"""STEM multiple choice (GPQA/MMLU-style format): physics and chemistry calculations with distractors
from typical mistakes, plus short science facts; reward "choice" (the picked letter).

Options: `choices` (options per question, 3-4, default 4).
"""
from __future__ import annotations

import random
from typing import Any, Callable

from envs.builtin.common import check_options
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

LETTERS = "ABCD"
Question = tuple[str, str, list[str]]
"""(question, correct option, wrong options)."""


def _num(x: float) -> str:
    return f"{x:g}"


def _speed(r: random.Random) -> Question:
    d, t = r.choice([60, 90, 120, 150, 240]), r.choice([2, 3, 4])
    return (f"A train travels {d} km in {t} hours. What is its average speed?", f"{_num(d / t)} km/h",
            [f"{_num(d * t)} km/h", f"{_num(t / d)} km/h", f"{_num(d + t)} km/h"])


def _ohm(r: random.Random) -> Question:
    res, i = r.choice([2, 4, 5, 10, 20]), r.choice([0.5, 2, 3])
    return (f"A current of {_num(i)} A flows through a {res} ohm resistor. What is the voltage across it?",
            f"{_num(res * i)} V", [f"{_num(res / i)} V", f"{_num(i / res)} V", f"{_num(res + i)} V"])


def _density(r: random.Random) -> Question:
    m, v = r.choice([20, 54, 80, 100]), r.choice([4, 10, 20])
    return (f"An object has a mass of {m} g and a volume of {v} cm^3. What is its density?",
            f"{_num(m / v)} g/cm^3", [f"{_num(m * v)} g/cm^3", f"{_num(v / m)} g/cm^3", f"{_num(m - v)} g/cm^3"])


def _kinetic(r: random.Random) -> Question:
    m, v = r.choice([2, 4, 10]), r.choice([3, 5, 6])
    return (f"What is the kinetic energy of a {m} kg mass moving at {v} m/s?", f"{_num(0.5 * m * v * v)} J",
            [f"{_num(m * v * v)} J", f"{_num(0.5 * m * v)} J", f"{_num(m * v)} J"])


def _weight(r: random.Random) -> Question:
    m = r.choice([3, 5, 12, 50])
    return (f"Taking g = 10 m/s^2, what is the weight of a {m} kg object on Earth?", f"{m * 10} N",
            [f"{m} N", f"{m / 10:g} N", f"{m * 100} N"])


def _wave(r: random.Random) -> Question:
    f, lam = r.choice([2, 5, 10, 50]), r.choice([0.5, 2, 4])
    return (f"A wave has frequency {f} Hz and wavelength {_num(lam)} m. What is its speed?", f"{_num(f * lam)} m/s",
            [f"{_num(f / lam)} m/s", f"{_num(lam / f)} m/s", f"{_num(f + lam)} m/s"])


MOLAR = {"H2O": 18, "CO2": 44, "CH4": 16, "NH3": 17, "O2": 32, "NaCl": 58.5, "N2": 28, "HCl": 36.5}


def _molar(r: random.Random) -> Question:
    name = r.choice(sorted(MOLAR))
    wrong = r.sample([v for k, v in MOLAR.items() if v != MOLAR[name]], 3)
    return (f"What is the approximate molar mass of {name}?", f"{_num(MOLAR[name])} g/mol",
            [f"{_num(w)} g/mol" for w in wrong])


ELEMENTS = ["hydrogen", "helium", "lithium", "beryllium", "boron", "carbon", "nitrogen", "oxygen", "fluorine",
            "neon", "sodium", "magnesium", "aluminium", "silicon", "phosphorus", "sulfur", "chlorine", "argon"]


def _element(r: random.Random) -> Question:
    z = r.randint(1, len(ELEMENTS))
    wrong = r.sample([e for e in ELEMENTS if e != ELEMENTS[z - 1]], 3)
    return f"Which element has atomic number {z}?", ELEMENTS[z - 1].capitalize(), [w.capitalize() for w in wrong]


FACTS: list[Question] = [
    ("Which organelle produces most of a cell's ATP?", "Mitochondrion", ["Ribosome", "Nucleus", "Golgi apparatus"]),
    ("Which gas do plants take in for photosynthesis?", "Carbon dioxide", ["Oxygen", "Nitrogen", "Hydrogen"]),
    ("What is the SI unit of force?", "Newton", ["Joule", "Watt", "Pascal"]),
    ("What is the pH of pure water at 25 C?", "7", ["0", "1", "14"]),
    ("Which planet is closest to the Sun?", "Mercury", ["Venus", "Mars", "Earth"]),
    ("Which particle has a negative charge?", "Electron", ["Proton", "Neutron", "Photon"]),
    ("What carries genetic information in most living things?", "DNA", ["ATP", "Glucose", "Cellulose"]),
    ("What is the derivative of x^2?", "2x", ["x", "x^3/3", "2"]),
    ("Which blood cells carry oxygen?", "Red blood cells", ["White blood cells", "Platelets", "Plasma cells"]),
    ("What is the chemical symbol for sodium?", "Na", ["So", "S", "Sd"]),
]


def _fact(r: random.Random) -> Question:
    return r.choice(FACTS)


KINDS: list[Callable[[random.Random], Question]] = [_speed, _ohm, _density, _kinetic, _weight, _wave, _molar,
                                                   _element, _fact]


def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("stem_mcq", options, {"choices": 4})
    if opts["choices"] not in (3, 4):
        raise ValueError(f"stem_mcq: choices must be 3 or 4, got {opts['choices']}")
    rng = random.Random(f"stem_mcq-{seed}")
    rows = []
    while len(rows) < size:
        question, right, wrong = rng.choice(KINDS)(rng)
        wrong = [w for w in dict.fromkeys(wrong) if w != right]  # some numbers make two mistakes agree
        if len(wrong) < opts["choices"] - 1:
            continue
        options_ = [right] + wrong[: opts["choices"] - 1]
        rng.shuffle(options_)
        letter = LETTERS[options_.index(right)]
        lines = "\n".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options_))
        rows.append({"prompt": f"{question}\n{lines}\nAnswer with the letter of the correct option.",
                     "answer": letter, "answer_text": right})
    return rows


STEM_MCQ = TaskSpec(
    name="stem_mcq",
    description="STEM multiple choice (physics/chemistry calculations, science facts); the picked letter",
    generate=generate,
    rewards=[RewardSpec("choice", 1.0)],
    source="procedural",
    reference=lambda row: f"The answer is ({row['answer']}) {row['answer_text']}.",
)
