"""LLMClient against a real HTTP server on 127.0.0.1 (tests/fake_openai.py).

Every behaviour is observed from both sides: what the client returns or
raises, and what the server actually received.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, Reply, Scripted, echo_responder
from pydantic import BaseModel

from thresher.curate.synth.client import ClientConfig, ClientError, LLMClient, ReplyCache
from thresher.curate.synth.retry import RateLimiter, retry_after
from thresher.curate.synth.wire import GenerationFailure, Request
from thresher.curate.errors import InputError
from thresher.curate.io.writers import AppendJsonl, read_jsonl_objects

KEY = "sk-test-SECRET-0123456789"


class Answer(BaseModel):
    answer: str


def config(url: str, **overrides) -> ClientConfig:
    settings = dict(base_url=url, api_key=KEY, model="fake-model", backoff=0.01, max_backoff=0.05, timeout=5.0)
    return ClientConfig(**{**settings, **overrides})


def complete(url: str, requests: list[Request], cache: ReplyCache | None = None, **overrides):
    """Run the requests concurrently; returns (client, results or exceptions)."""

    async def main():
        async with LLMClient(config(url, **overrides), cache) as client:
            results = await asyncio.gather(*(client.complete(r) for r in requests), return_exceptions=True)
            return client, results

    return asyncio.run(main())


def ask(text: str = "hi", schema=Answer, **params) -> Request:
    return Request.chat([("user", text)], schema=schema, **params)


def test_json_schema_accepted_is_used_and_validated():
    with FakeOpenAI() as server:
        client, [reply] = complete(server.url, [ask("q1")])
    assert reply.value == Answer(answer="answer to: q1")
    assert server.requests[0]["response_format"]["type"] == "json_schema"
    assert server.requests[0]["response_format"]["json_schema"]["schema"]["additionalProperties"] is False
    assert client.mode == "json_schema"


def test_json_schema_rejected_falls_back_once_for_the_whole_run():
    with FakeOpenAI(reject_json_schema=True) as server:
        client, replies = complete(server.url, [ask(f"q{i}") for i in range(12)], concurrency=6)
    assert all(r.value == Answer(answer=f"answer to: q{i}") for i, r in enumerate(replies))
    formats = [(b.get("response_format") or {}).get("type") for b in server.requests]
    assert formats.count("json_schema") == 1, "the rejection must be remembered, not repeated per request"
    assert formats.count("json_object") == 12
    assert client.mode == "json_object"
    # in JSON mode the schema travels in the prompt
    assert '"answer"' in server.requests[-1]["messages"][0]["content"]


def test_json_object_rejected_too_falls_back_to_prompt_only():
    def no_json_mode(body):
        if body.get("response_format"):
            return Reply(status=400, error="unsupported response_format")
        return echo_responder(body)

    with FakeOpenAI(no_json_mode) as server:
        client, [reply] = complete(server.url, [ask("q")])
    assert reply.value.answer == "answer to: q"
    assert client.mode == "prompt"
    assert [(b.get("response_format") or {}).get("type") for b in server.requests] == ["json_schema", "json_object", None]


def test_unrelated_400_is_a_failure_not_a_fallback():
    with FakeOpenAI(lambda body: Reply(status=400, error="maximum context length exceeded")) as server:
        client, [failure] = complete(server.url, [ask()])
    assert isinstance(failure, GenerationFailure) and failure.reason == "http_400"
    assert client.mode == "json_schema" and len(server.requests) == 1


def test_invalid_json_is_reasked_with_the_error():
    with FakeOpenAI(Scripted([Reply("{not json")], echo_responder)) as server:
        client, [reply] = complete(server.url, [ask("q")])
    assert reply.value.answer.startswith("answer to: That reply was rejected: reply is not valid JSON")
    second = server.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": "{not json"}
    assert client.stats.reasks == 1 and reply.attempts == 2


def test_schema_violation_is_reasked_then_fails_with_reason_and_raw():
    with FakeOpenAI(lambda body: Reply(json.dumps({"reply": "wrong field"}))) as server:
        client, [failure] = complete(server.url, [ask("q")], reasks=2)
    assert isinstance(failure, GenerationFailure)
    assert failure.reason == "schema" and "answer" in failure.message
    assert failure.raw == '{"reply": "wrong field"}'
    assert len(server.requests) == 3  # the question and two re-asks
    assert "does not match the schema" in server.requests[2]["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(content=None, refusal="I can't help with that."), "refusal"),
        (Reply('{"answer": "cut', finish_reason="length"), "length"),
        (Reply("   "), "blank"),
        (Reply("", finish_reason="content_filter"), "refusal"),
    ],
)
def test_refusal_length_and_blank_fail_with_their_own_reason(reply, reason):
    with FakeOpenAI(lambda body: reply) as server:
        _, [failure] = complete(server.url, [ask()])
    assert isinstance(failure, GenerationFailure) and failure.reason == reason
    assert len(server.requests) == 1, "these are not re-asked"


def test_429_retry_after_is_honoured():
    script = Scripted([Reply(status=429, headers={"retry-after": "0.6"}, error="slow down")], echo_responder)
    with FakeOpenAI(script) as server:
        start = time.perf_counter()
        client, [reply] = complete(server.url, [ask("q", schema=None)], backoff=0.0)
        elapsed = time.perf_counter() - start
    assert reply.value == "answer to: q"
    assert elapsed >= 0.55, "must wait as long as Retry-After says, not the (zero) backoff"
    assert client.stats.retries == 1 and len(server.requests) == 2


@pytest.mark.parametrize("status", [408, 409, 500, 503])
def test_transient_statuses_are_retried(status):
    with FakeOpenAI(Scripted([Reply(status=status), Reply(status=status)], echo_responder)) as server:
        client, [reply] = complete(server.url, [ask("q", schema=None)])
    assert reply.value == "answer to: q"
    assert client.stats.retries == 2 and len(server.requests) == 3


def test_retries_give_up_with_the_status_as_reason():
    with FakeOpenAI(lambda body: Reply(status=500, error="boom")) as server:
        client, [failure] = complete(server.url, [ask(schema=None)], max_retries=3)
    assert isinstance(failure, GenerationFailure) and failure.reason == "http_500"
    assert len(server.requests) == 4 and client.stats.retries == 3


def test_timeouts_are_retried():
    with FakeOpenAI(Scripted([Reply(delay=3.0)], echo_responder)) as server:
        start = time.perf_counter()
        client, [reply] = complete(server.url, [ask("q", schema=None)], timeout=0.4)
        elapsed = time.perf_counter() - start
    assert reply.value == "answer to: q"
    assert client.stats.retries == 1 and elapsed < 2.5


def test_timeouts_exhausted_fail_as_timeout():
    with FakeOpenAI(lambda body: Reply(delay=2.0)) as server:
        _, [failure] = complete(server.url, [ask(schema=None)], timeout=0.2, max_retries=1)
    assert isinstance(failure, GenerationFailure) and failure.reason == "timeout"
    assert len(server.requests) == 2


def test_bad_key_stops_the_run_without_showing_the_key():
    with FakeOpenAI(lambda body: Reply(status=401, error="Incorrect API key provided: {auth}")) as server:
        _, [error] = complete(server.url, [ask()])
    assert isinstance(error, ClientError)
    assert KEY not in repr(config(server.url))
    assert "401" in str(error) and KEY not in str(error) and "[redacted]" in str(error)
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"  # the key was really sent


def test_key_echoed_in_errors_and_replies_is_redacted():
    with FakeOpenAI(lambda body: Reply(status=500, error="upstream said {auth}")) as server:
        _, [failure] = complete(server.url, [ask()], max_retries=0)
    assert KEY not in failure.message and "[redacted]" in failure.message
    with FakeOpenAI(lambda body: Reply("not json, your key is {auth}")) as server:
        _, [failure] = complete(server.url, [ask()])
    assert failure.reason == "invalid_json"
    assert KEY not in failure.raw and KEY not in failure.message


def test_concurrency_is_bounded():
    with FakeOpenAI(latency=0.2) as server:
        complete(server.url, [ask(f"q{i}", schema=None) for i in range(16)], concurrency=4)
    assert server.max_in_flight == 4


def test_rpm_limit_spaces_requests():
    with FakeOpenAI() as server:
        start = time.perf_counter()
        complete(server.url, [ask(f"q{i}", schema=None) for i in range(9)], rpm=300)  # 5 per second, burst 5
        elapsed = time.perf_counter() - start
    assert len(server.requests) == 9
    assert elapsed >= 0.7  # 4 requests beyond the burst at 5/s


def test_tpm_limiter_charges_real_usage():
    async def main():
        limiter = RateLimiter(per_minute=600)  # 10 per second, bucket of 10
        await limiter.acquire(10)
        limiter.settle(5)  # the request really cost 15: 5 more than estimated
        start = time.perf_counter()
        await limiter.acquire(5)
        return time.perf_counter() - start

    assert asyncio.run(main()) >= 0.9  # had to refill from -5 to 5 at 10/s


def test_retry_after_forms():
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert retry_after({}) is None


def test_cache_replays_finished_requests_without_sending(tmp_path: Path):
    cache_path = tmp_path / "out.cache.jsonl"
    with FakeOpenAI() as server:
        complete(server.url, [ask("a"), ask("b")], ReplyCache(cache_path))
        client, replies = complete(server.url, [ask("a"), ask("b"), ask("c")], ReplyCache(cache_path))
    assert [r.value.answer for r in replies] == ["answer to: a", "answer to: b", "answer to: c"]
    assert [r.cached for r in replies] == [True, True, False]
    assert len(server.requests) == 3 and client.stats.cached == 2


def test_request_key_covers_model_and_parameters():
    request = ask("q", temperature=0.7)
    assert request.key("m1") == ask("q", temperature=0.7).key("m1")
    assert len({request.key("m1"), request.key("m2"), ask("q", temperature=0.8).key("m1"), ask("q", schema=None).key("m1")}) == 4


def test_append_jsonl_trims_a_line_cut_by_a_kill(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"a": 1}\n{"b": 2', encoding="utf-8")
    with AppendJsonl(path) as out:
        out.write({"c": 3})
    assert list(read_jsonl_objects(path)) == [{"a": 1}, {"c": 3}]


def test_read_jsonl_objects_skips_only_a_cut_off_last_line(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    path.write_bytes('{"a": 1}\n\n{"b": "\u5c0f'.encode()[:-1])  # a kill cut the last line mid-character
    assert list(read_jsonl_objects(path)) == [{"a": 1}]
    for text, line, reason in (
        ('{"a": 1}\n{"b": \n{"c": 3}\n', 2, "not a JSON line"),  # damage mid-file: resuming would lose work
        ('{"a": 1}\n{"b": \n', 2, "not a JSON line"),  # a complete last line was not cut by a kill
        ('[1, 2]\n{"a": 1}\n', 1, "expected a JSON object, got array"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=rf"out\.jsonl:{line}: {reason}"):
            list(read_jsonl_objects(path))
