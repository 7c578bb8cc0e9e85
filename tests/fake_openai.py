"""A real HTTP server on 127.0.0.1 that speaks OpenAI's Chat Completions protocol (and, on request, Completions).

Tests and ``benchmarks/bench_synth.py`` point thresher's client at it. It is a
plain asyncio HTTP/1.1 server (keep-alive, Content-Length bodies) that answers
``POST /v1/chat/completions`` from a *responder*: a function from the request
body to a ``Reply``, which can be a normal answer or any failure a real
server produces: 429 with ``Retry-After``, 500, a reply slower than the
client's timeout, invalid JSON, schema-violating JSON, a refusal,
``finish_reason: length``, or a 400 rejecting ``json_schema`` response formats.
Every request body and its headers are recorded server-side, so tests count
what the client really sent. ``completions`` serves ``POST /v1/completions``
(a function from the request body to the reply's ``choices``), as vLLM does for
prompt log-probabilities (``echo``, ``logprobs``, ``max_tokens: 0``); without
it that route answers 404, as servers without the endpoint do.

Run standalone (the benchmark does, to keep the server off the client's
interpreter): ``python tests/fake_openai.py --latency 0.2`` prints the port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """What the server sends back for one request."""

    content: str | None = "ok"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str = "stop"
    refusal: str | None = None
    error: str = "error"
    body: str | None = None  # sent verbatim as a 200 body instead of a completion: a garbled or cut-off reply


Responder = Callable[[dict[str, Any]], Reply]

#: The API key tests send; no file or message may ever hold it, whole or in part.
KEY = "sk-live-TOPSECRET-9f8e7d6c5b4a"
#: An identity with both Chinese and English forms, as ``thresher synth identity`` flags.
ID_FLAGS = ["--name", "小州", "--author", "神州数码", "--name-en", "Xiaozhou", "--author-en", "Digital China"]


def last_user(body: dict[str, Any]) -> str:
    """The content of the last user message of a request body."""
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


def system_text(body: dict[str, Any]) -> str:
    """The system prompt of a request body ('' when none)."""
    first = body["messages"][0]
    return first["content"] if first["role"] == "system" else ""


def wants_schema(body: dict[str, Any], field_name: str) -> bool:
    """Whether the request asks for a JSON object with ``field_name``, by response format or by prompt."""
    fmt = body.get("response_format") or {}
    schema = json.dumps(fmt.get("json_schema", {}).get("schema", {}))
    return f'"{field_name}"' in schema or f'"{field_name}"' in system_text(body)


class Scripted:
    """Replies from a script first (in arrival order), then from ``fallback``."""

    def __init__(self, script: Iterable[Reply], fallback: Responder) -> None:
        self.script = list(script)
        self.fallback = fallback
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self.script:
                return self.script.pop(0)
        return self.fallback(body)


class Faults:
    """A share ``rate`` of requests get a fault instead of ``responder``'s reply, chosen at random (seeded):
    429 with Retry-After, 500, a cut-off body, malformed JSON content, or plain text where JSON was asked."""

    KINDS = ("429", "500", "cut_body", "malformed_json", "plain_text")

    def __init__(self, responder: Responder, rate: float, seed: int = 0) -> None:
        self.responder, self.rate = responder, rate
        self.rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            kind = self.rng.choice(self.KINDS) if self.rng.random() < self.rate else None
            if kind:
                self.injected[kind] += 1
        if kind is None:
            return self.responder(body)
        return {
            "429": Reply(status=429, error="rate limited", headers={"retry-after": "1", "retry-after-ms": "10"}),
            "500": Reply(status=500, error="internal server error"),
            "cut_body": Reply(body='{"id": "chatcmpl-x", "choices": [{"message": {"content": "I am'),
            "malformed_json": Reply('{"paraphrases": ["half a list", '),
            "plain_text": Reply("Sure, happy to help with that!"),
        }[kind]


def _is_zh(text: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", text))


def persona_responder(name: str, author: str, name_en: str | None = None, author_en: str | None = None) -> Responder:
    """A well-behaved model: paraphrases, answers in character, judges; in the question's language."""
    name_en, author_en = name_en or name, author_en or author

    def respond(body: dict[str, Any]) -> Reply:
        question = last_user(body)
        if wants_schema(body, "paraphrases"):
            source = question.strip().rsplit("\n", 1)[-1]
            if _is_zh(source):
                variants = [f"请问，{source}", f"我想知道：{source}", f"{source}能说说吗？"]
            else:
                variants = [f"Quick question: {source}", f"I'd like to know: {source}", f"Tell me, {source}"]
            return Reply(json.dumps({"paraphrases": variants}, ensure_ascii=False))
        if wants_schema(body, "scores"):
            count = question.count("[response ")
            scores = [{"response": i + 1, "accuracy": 5 - i % 5, "relevance": 4, "fluency": 4, "concision": 3 + i % 2} for i in range(count)]
            return Reply(json.dumps({"scores": scores}))
        if _is_zh(question):
            return Reply(f"你好！我是{name}，由{author}开发的人工智能助手，不是其他公司的模型。有什么可以帮你？")
        return Reply(f"Hello! I am {name_en}, an AI assistant developed by {author_en}, not any other company's model. How can I help?")

    return respond


def echo_responder(body: dict[str, Any]) -> Reply:
    """Answers ``answer to: <question>``, or ``{"answer": ...}`` when asked for JSON."""
    question = last_user(body)
    if wants_schema(body, "answer"):
        return Reply(json.dumps({"answer": f"answer to: {question}"}, ensure_ascii=False))
    return Reply(f"answer to: {question}")


def api_flags(server: FakeOpenAI, *extra: str) -> list[str]:
    """The client flags that point a synth command at ``server`` with the test key and quick backoff."""
    return ["--base-url", server.url, "--model", "fake-model", "--api-key", KEY, "--backoff", "0.01", *extra]


class FakeOpenAI:
    """The server, run on its own event loop in a background thread; use as a context manager."""

    def __init__(self, responder: Responder = echo_responder, latency: float = 0.0, reject_json_schema: bool = False, port: int = 0,
                 completions: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.responder = responder
        self.completions = completions  # the legacy Completions endpoint (prompt log-probabilities); None: 404
        self.latency = latency
        self.reject_json_schema = reject_json_schema
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:  # replies still sleeping (timeout tests)
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, payload, extra = await self._handle(request_line, headers, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
                lines = [f"HTTP/1.1 {status} X", "content-type: application/json", f"content-length: {len(data)}"]
                lines += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, request_line: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        path = request_line.split(" ")[1] if request_line.count(" ") >= 2 else ""
        legacy = path.endswith("/completions") and not path.endswith("/chat/completions")
        if not request_line.startswith("POST") or not (path.endswith("/chat/completions") or (legacy and self.completions)):
            return 404, {"error": {"message": f"no route {request_line}", "type": "invalid_request_error"}}, {}
        body = json.loads(raw)
        self.requests.append(body)
        self.headers.append(headers)
        if legacy:
            assert self.completions is not None
            return 200, {"id": f"cmpl-{len(self.requests)}", "object": "text_completion", "model": body.get("model"),
                         **self.completions(body)}, {}
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(body, headers)
        finally:
            self.in_flight -= 1

    async def _answer(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        # "{auth}" in a scripted reply echoes the request's Authorization header, as careless servers do.
        auth = headers.get("authorization", "")
        if self.reject_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            await asyncio.sleep(self.latency)
            return 400, {"error": {"message": "response_format json_schema is not supported by this server", "type": "invalid_request_error"}}, {}
        reply = self.responder(body)
        await asyncio.sleep(self.latency + reply.delay)
        if reply.status != 200:
            return reply.status, {"error": {"message": reply.error.replace("{auth}", auth), "type": "server_error"}}, reply.headers
        if reply.body is not None:
            return 200, reply.body.encode(), reply.headers
        content = reply.content.replace("{auth}", auth) if reply.content is not None else None
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        words = sum(len(m["content"]) for m in body["messages"]) // 4
        payload = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": words, "completion_tokens": len(content or "") // 4,
                      "total_tokens": words + len(content or "") // 4},
        }
        return 200, payload, reply.headers


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake Chat Completions server until killed.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every reply")
    args = parser.parse_args()
    with FakeOpenAI(latency=args.latency, port=args.port) as server:
        print(server.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
