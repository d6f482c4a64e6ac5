"""The thinking budget in rollouts (rl/rollout/worker.py): two-phase generation with STOP_THINKING inserted.

A scripted engine (a model that thinks forever and never writes `</think>`) drives the real
RolloutWorker with the real Qwen3 tokenizer, so the token-level bookkeeping is checked exactly; then
the transformers and vLLM backends run it on the tiny random Qwen3 model.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rl.models import qwen3_tokenizer_dir
from rl.rollout.worker import RolloutWorker
from rl.thinking.tags import STOP_THINKING, parse_thinking
from rl.thinking.budget import ThinkingBudget
from rl.types import RolloutRequest

THOUGHT = "<think>\nLet me add the numbers one by one, carefully, and check again"
ANSWER = "The answer is 4."


class ScriptedEngine:
    """Engine protocol stand-in. A prompt that ends with the stop-thinking tokens gets the answer and
    <|im_end|>; any other prompt continues the stream `thinking` repeated forever (a thought that is
    never closed, by default) from where the prompt left it. Logprob of the k-th token of a call is
    -(k + 1) / 100 (-1 more for answers), so the splices are visible."""

    dtype = torch.float32

    def __init__(self, tokenizer, thinking: str = THOUGHT, answer: str = ANSWER):
        self.stop = tokenizer.encode(STOP_THINKING, add_special_tokens=False)
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.thought = tokenizer.encode(thinking, add_special_tokens=False)
        self.answer = tokenizer.encode(answer, add_special_tokens=False) + [self.eos]
        self.calls: list[tuple[list[list[int]], list[int]]] = []
        self.originals: list[list[int]] = []  # the request prompts (first call)

    def generate(self, prompts, max_tokens):
        from rl.rollout.engines import EngineOutput

        self.calls.append(([list(p) for p in prompts], list(max_tokens)))
        outs = []
        for prompt, limit in zip(prompts, max_tokens):
            answering = prompt[-len(self.stop):] == self.stop
            if not self.calls[1:]:
                self.originals.append(list(prompt))
            done = max(len(o) for o in self.originals if prompt[:len(o)] == o)  # base prompt length
            ids = self.answer[:limit] if answering else (self.thought * 100)[len(prompt) - done:][:limit]
            if self.eos in ids:
                ids = ids[:ids.index(self.eos) + 1]
            offset = -1.0 if answering else 0.0
            outs.append(EngineOutput(ids, [offset - (k + 1) / 100 for k in range(len(ids))],
                                     "stop" if ids[-1:] == [self.eos] else "length"))
        return outs

    def load_weights(self, named_tensors):
        raise AssertionError("not used")


@pytest.fixture(scope="module")
def qwen_dir() -> str:
    return str(qwen3_tokenizer_dir())


def scripted_worker(qwen_dir: str, **script) -> tuple[RolloutWorker, ScriptedEngine]:
    from transformers import AutoTokenizer

    engine = ScriptedEngine(AutoTokenizer.from_pretrained(qwen_dir), **script)
    return RolloutWorker(qwen_dir, "scripted", temperature=1.0, top_p=1.0, seed=0, engine=engine), engine


def request(tokenizer, budget: int | None, thinking: bool = True, max_new: int = 64) -> RolloutRequest:
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], tokenize=False,
                                           add_generation_prompt=True, enable_thinking=thinking)
    return RolloutRequest(uid="1-0", task="arithmetic", prompt_ids=tokenizer.encode(prompt), max_new_tokens=max_new,
                          thinking=thinking, thinking_budget=budget)


# ------------------------------------------------------------------------------------ scripted engine
def test_budget_inserts_the_exact_stop_text_then_the_model_answers(qwen_dir):
    worker, engine = scripted_worker(qwen_dir)
    tok, budget = worker.tokenizer, 10
    req = request(tok, budget)
    [r] = worker.generate([req])

    stop = tok.encode(STOP_THINKING, add_special_tokens=False)
    n_stop = len(stop)
    assert r.budget_hit and r.finish_reason == "stop"
    assert r.response_ids[:budget] == (engine.thought * 2)[:budget]
    assert r.response_ids[budget:budget + n_stop] == stop
    assert tok.decode(r.response_ids[budget:budget + n_stop]) == STOP_THINKING
    assert r.response_ids[budget + n_stop:] == engine.answer
    # Loss mask: 0 exactly on the inserted tokens; behaviour logprobs spliced from the two phases.
    assert r.loss_mask == [1] * budget + [0] * n_stop + [1] * len(engine.answer)
    phase1 = [-(k + 1) / 100 for k in range(budget)]
    phase2 = [-1.0 - (k + 1) / 100 for k in range(len(engine.answer))]
    assert r.logprobs == pytest.approx(phase1 + [0.0] * n_stop + phase2)
    assert len(r.logprobs) == len(r.loss_mask) == len(r.response_ids)
    # Phase 2 continued from prompt + thought + stop text,
    assert engine.calls[0] == ([req.prompt_ids], [budget])
    # with the tokens that were left: the inserted text counts against max_new_tokens
    assert engine.calls[1] == ([req.prompt_ids + r.response_ids[:budget + n_stop]],
                               [req.max_new_tokens - budget - n_stop])
    # What rewards see: a budget-forced block and the answer after it; thinking tokens = the budget.
    assert STOP_THINKING in r.text
    parse = parse_thinking(r.text)
    assert (parse.status, parse.answer) == ("budget_forced", ANSWER)
    assert r.thinking_tokens == budget


def test_a_model_that_closes_its_thought_before_the_budget_is_not_cut(qwen_dir):
    worker, engine = scripted_worker(
        qwen_dir, thinking="<think>\nfour\n</think>\n\n" + ANSWER + " It is more than the budget.<|im_end|>")
    tok = worker.tokenizer
    [r] = worker.generate([request(tok, budget=8, max_new=40)])
    close = tok.convert_tokens_to_ids("</think>")
    assert not r.budget_hit
    assert STOP_THINKING not in r.text and r.loss_mask == [1] * len(r.response_ids)
    assert r.response_ids == engine.thought                             # phase 2 continued, nothing inserted
    assert engine.calls[1] == ([r.request.prompt_ids + r.response_ids[:8]], [32])
    assert r.thinking_tokens == r.response_ids.index(close) + 1
    assert r.finish_reason == "stop" and parse_thinking(r.text).status == "ok"


def test_eos_before_the_budget_ends_in_one_phase(qwen_dir):
    worker, engine = scripted_worker(qwen_dir, thinking="<think>\nshort\n</think>\n\n4<|im_end|>")
    [r] = worker.generate([request(worker.tokenizer, budget=50)])
    assert len(engine.calls) == 1 and not r.budget_hit and r.finish_reason == "stop"


def test_no_budget_non_thinking_mode_and_large_budgets_generate_in_one_phase(qwen_dir):
    worker, engine = scripted_worker(qwen_dir)
    tok = worker.tokenizer
    reqs = [request(tok, None), request(tok, 5, thinking=False), request(tok, 64, max_new=64),
            request(tok, 100, max_new=64)]
    out = worker.generate(reqs)
    assert len(engine.calls) == 1 and engine.calls[0][1] == [64, 64, 64, 64]
    assert not any(r.budget_hit for r in out)
    assert all(r.loss_mask == [1] * 64 and r.finish_reason == "length" for r in out)
    # an unclosed thought counts every token, even where the mode asked for none (the script ignores it)
    assert [r.thinking_tokens for r in out] == [64, 64, 64, 64]


def test_mixed_batch_only_budgeted_thinking_samples_take_phase_two(qwen_dir):
    worker, engine = scripted_worker(qwen_dir)
    tok = worker.tokenizer
    reqs = [request(tok, 8), request(tok, None, max_new=16), request(tok, 12), request(tok, 8, thinking=False)]
    out = worker.generate(reqs)
    assert engine.calls[0][1] == [8, 16, 12, 64]
    assert len(engine.calls[1][0]) == 2                        # only the two budget hits continue
    assert [r.budget_hit for r in out] == [True, False, True, False]
    n_stop = len(worker.budget.stop_ids)
    for r, budget in ((out[0], 8), (out[2], 12)):
        assert r.loss_mask.index(0) == budget and r.loss_mask.count(0) == n_stop
        assert r.thinking_tokens == budget


def test_budget_sampled_from_a_range_cuts_each_prompt_at_its_own_budget(qwen_dir):
    from transformers import AutoTokenizer

    from envs.tasks import load_task
    from rl.config import load_config
    from rl.data import TaskMix
    from rl.round import build_requests

    cfg = load_config(None, ["rollout.prompts_per_step=12", "rollout.group_size=2", "rollout.max_new_tokens=40",
                             "data.tasks=[{name: arithmetic, size: 64, eval_size: 8, thinking_ratio: 1.0, "
                             "thinking_budget: [4, 16]}]"])
    tok = AutoTokenizer.from_pretrained(qwen_dir)
    mix = TaskMix([load_task(t, 0) for t in cfg.data.tasks], 0)
    requests, rows, _ = build_requests(0, cfg, mix, tok)
    budgets = [r.thinking_budget for r in requests]
    assert all(4 <= b <= 16 for b in budgets) and len(set(budgets)) > 2
    for g in range(0, len(requests), 2):                       # one budget per prompt, shared by its group
        assert budgets[g] == budgets[g + 1] and requests[g].uid == requests[g + 1].uid
    assert all(row["thinking"] for row in rows)

    worker, _ = scripted_worker(qwen_dir)
    out = worker.generate(requests)
    for r in out:
        assert r.budget_hit and r.loss_mask.index(0) == r.request.thinking_budget
        assert r.thinking_tokens == r.request.thinking_budget


def test_thinking_tokens_with_a_multi_piece_close_tag():
    """Tokenizers without a single `</think>` token (SmolLM2) locate the tag by decoding prefixes."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    budget = ThinkingBudget(tok)
    budget.close_id = None  # force the decoded-text path on a tokenizer we have offline
    ids = tok.encode("<think>\nabc def\n</think>\n\nanswer here", add_special_tokens=False)
    close = tok.convert_tokens_to_ids("</think>")
    assert budget.thinking_tokens(ids) == ids.index(close) + 1
    plain = tok.encode("no block at all", add_special_tokens=False)
    assert budget.thinking_tokens(plain) == 0
    assert budget.thinking_tokens(plain, prompt_opened_think=True) == len(plain)


# ------------------------------------------------------------------------------- real engines, tiny model
def _check_budget_hit(worker: RolloutWorker, budget: int) -> list:
    tok = worker.tokenizer
    reqs = [request(tok, budget, max_new=budget + 30) for _ in range(4)]
    out = worker.generate(reqs)
    stop = worker.budget.stop_ids
    hits = [r for r in out if r.budget_hit]
    assert hits, "a random model should not close its thought within a few tokens"
    for r in hits:
        assert r.response_ids[budget:budget + len(stop)] == stop
        assert STOP_THINKING in r.text
        assert r.loss_mask[budget:budget + len(stop)] == [0] * len(stop)
        assert r.loss_mask.count(0) == len(stop) and r.thinking_tokens == budget
        assert len(r.response_ids) <= budget + 30
    return out


def test_hf_engine_budget_and_logprobs_match_a_forward_pass(tiny_model: Path):
    torch.manual_seed(0)
    worker = RolloutWorker(str(tiny_model), "hf", temperature=1.0, top_p=1.0, seed=0)
    out = _check_budget_hit(worker, budget=4)
    # The phase-2 logprobs are conditioned on the inserted stop text: a forward pass over
    # prompt + response must reproduce every trained token's behaviour logprob.
    model = worker.engine.model
    for r in out:
        ids = torch.tensor([r.request.prompt_ids + r.response_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].float()
        p = len(r.request.prompt_ids)
        lp = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0][p - 1:]
        mask = torch.tensor(r.loss_mask, dtype=torch.bool)
        assert torch.allclose(lp[mask], torch.tensor(r.logprobs)[mask], atol=1e-3)
        assert all(v == 0.0 for v, m in zip(r.logprobs, r.loss_mask) if not m)


@pytest.mark.slow
def test_vllm_engine_budget(tiny_model: Path):
    pytest.importorskip("vllm")
    worker = RolloutWorker(str(tiny_model), "vllm", temperature=1.0, top_p=1.0, seed=0,
                           engine_kwargs={"kv_cache_gb": 0.25})
    _check_budget_hit(worker, budget=6)

