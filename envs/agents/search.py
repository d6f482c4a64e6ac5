"""search: questions about a fictional archipelago answered with a BM25 search tool over a shipped corpus.

    task `agent_search` (env `search`): "Who founded Port Anselm? ..."
    <tool_call>{"name": "search", "arguments": {"query": "Port Anselm founded"}}</tool_call>
    -> tool message: the top passages, "[port-anselm] Port Anselm: Port Anselm is the capital ..."
    final answer "Answer: Ilse Varga" -> reward = token F1 against the reference (1.0 when exact)

The corpus (envs/data/veloria_corpus.jsonl, 32 short articles) and its questions
(envs/data/veloria_questions.jsonl, 46, each with accepted answers and the supporting article) were
written for this project about places that do not exist, so the model cannot answer from memory:
it has to retrieve. Retrieval is BM25 from `bm25s` (English stop words, no stemming); the index is
built once per process. The final answer is the text after the last "Answer:", else the last
\\boxed{}, else the whole answer part; it is compared after SQuAD's normalisation (lower case, no
punctuation or articles). Reward: the best token F1 over the accepted answers; success: an exact match.
"""
from __future__ import annotations

import functools
import json
import random
import re
import string
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from envs.agents.tools import ToolEnv, ToolError, tool_schema
from envs.base import StepResult, row_messages
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

DATA = Path(__file__).resolve().parent.parent / "data"
CORPUS = DATA / "veloria_corpus.jsonl"
QUESTIONS = DATA / "veloria_questions.jsonl"
SYSTEM_PROMPT = ("Answer questions about the Veloria Islands. Look facts up with the `search` tool; do not guess. "
                 "When you know the answer, reply without a tool call as `Answer: <short answer>`.")
SEARCH_TOOL = tool_schema("search", "Search the Veloria encyclopedia; returns the best matching passages.",
                          {"query": "string"})
TOP_K = 3

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ANSWER = re.compile(r"answer\s*:\s*(.+)", re.I | re.S)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Index:
    """BM25 over the corpus; retrieval holds a lock (the env steps of many episodes run in threads)."""

    def __init__(self, docs: list[dict[str, str]]):
        import bm25s

        self.docs, self._bm25s, self._lock = docs, bm25s, threading.Lock()
        self.retriever = bm25s.BM25()
        self.retriever.index(self._tokens([f"{d['title']}. {d['text']}" for d in docs]), show_progress=False)

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        return self._bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)

    def search(self, query: str, k: int = TOP_K) -> list[dict[str, str]]:
        tokens = self._tokens([query])
        if not tokens[0]:
            return []
        with self._lock:
            ids, scores = self.retriever.retrieve(tokens, k=min(k, len(self.docs)), show_progress=False)
        return [self.docs[int(i)] for i, s in zip(ids[0], scores[0]) if s > 0]


@functools.lru_cache(maxsize=None)
def corpus_index() -> Index:
    return Index(_read_jsonl(CORPUS))


class SearchEnv(ToolEnv):
    max_turns = 4

    def reset(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        self.answers = list(row["answers"])
        self.tools = [SEARCH_TOOL]
        return row_messages(row)

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {"search": self.search}

    def search(self, query: str) -> str:
        if not isinstance(query, str) or not query.strip():
            raise ToolError("search needs `query`, a non-empty string")
        hits = corpus_index().search(query)
        if not hits:
            return "No results. Try other words."
        return "\n".join(f"[{d['id']}] {d['title']}: {d['text']}" for d in hits)

    def finish(self, answer: str) -> StepResult:
        given = final_answer(answer)
        f1 = max(token_f1(given, gold) for gold in self.answers)
        exact = any(normalize(given) == normalize(gold) for gold in self.answers)
        return StepResult([], done=True, reward=1.0 if exact else f1, success=exact, info={"answer": given[:200]})


def final_answer(text: str) -> str:
    found = _ANSWER.findall(text)
    if found:
        return found[-1].strip().splitlines()[0] if found[-1].strip() else ""
    boxed = _BOXED.findall(text)
    return boxed[-1] if boxed else text.strip()


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    """The shipped questions, shuffled (at most `size`: there are 46, and repeats would leak into eval)."""
    if options:
        raise ValueError(f"agent_search takes no options (got {options})")
    rows = [{"prompt": q["question"], "answers": q["answers"], "doc_id": q["doc_id"]} for q in _read_jsonl(QUESTIONS)]
    random.Random(f"agent-search-{seed}").shuffle(rows)
    return rows[:size]


TASK = TaskSpec(
    name="agent_search",
    description="questions about a fictional archipelago; BM25 search tool over a shipped corpus; F1 vs reference",
    generate=generate,
    rewards=[RewardSpec("env", 1.0)],
    system_prompt=SYSTEM_PROMPT,
    source="envs/data/veloria_questions.jsonl",
    env="search",
)
