"""An async client for any server that speaks OpenAI's Chat Completions protocol.

Built on the official ``openai`` SDK (``AsyncOpenAI``: base URL, auth,
timeouts, connection pooling, typed HTTP errors) with the SDK's own retries
switched off (``max_retries=0``): synthesis runs thousands of requests against
rate-limited servers, so retrying, backing off, honouring ``Retry-After``,
rate limiting and caching are decided here, in one place, and counted.

What ``LLMClient.complete`` guarantees for one ``Request``:

* structured output: the Pydantic schema goes out as a ``json_schema``
  response format; a server that rejects that gets ``json_object`` mode with
  the schema in the prompt, and one that rejects that too gets the schema in
  the prompt alone. The first structured request probes the server alone and
  a rejection downgrades the whole run (remembered), so a server without
  structured output costs one failed request per mode, not one per request.
* validation: every reply is parsed and validated; an invalid one is re-asked
  with the error (``reasks`` times) before it counts as a failure.
* failures carry a machine-readable reason: ``length``, ``refusal``,
  ``blank``, ``invalid_json``, ``schema``, ``http_<status>``, ``timeout``,
  ``connection``.
* a finished request is never sent twice: every request has a content hash
  of (model, messages, parameters, schema); ``synth_jobs.run_jobs`` skips jobs
  whose hash is already in the output, and jobs of several requests also get
  an append-only ``ReplyCache`` of validated replies that a rerun reads first.
* the API key never leaves: every error text and raw reply passes through
  ``Redactor`` before anyone can print or store it.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from thresher.curate.errors import ThresherError
from thresher.curate.io.writers import AppendJsonl, read_jsonl_objects

#: Statuses worth retrying: timeout, conflict, rate limit, server errors.
RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
#: Statuses that will fail every request of the run the same way: stop at once.
FATAL_STATUSES = frozenset({401, 403, 404})
#: The longest Retry-After honoured, in seconds.
MAX_RETRY_AFTER = 300.0
#: Structured-output modes, best first; a rejection moves one step down.
MODES = ("json_schema", "json_object", "prompt")
#: Words in a 400/422 error body that say the response format was the problem.
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|structured|schema|format", re.I)


class GenerationFailure(Exception):
    """One request failed for good; ``reason`` is machine-readable, ``raw`` the last reply."""

    def __init__(self, reason: str, message: str, raw: str | None = None, **detail: Any) -> None:
        super().__init__(message)
        self.reason, self.message, self.raw, self.detail = reason, message, raw, detail


class ClientError(ThresherError):
    """The server refuses every request (bad key, unknown model, wrong URL): the run stops."""


class Redactor:
    """Removes the API key from any text before it is shown or stored."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret or ""

    def __call__(self, text: str | None) -> str | None:
        if text is None or not self.secret:
            return text
        return text.replace(self.secret, "[redacted]")


def public_url(url: str | None) -> str | None:
    """``url`` without user info or query string, the parts that can hold credentials."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Request:
    """One chat completion to make: the messages, the expected schema and the sampling parameters."""

    messages: tuple[tuple[str, str], ...]
    schema: type[BaseModel] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    model: str | None = None  # overrides the client's model (a judge model, say)

    @classmethod
    def chat(cls, messages: Sequence[tuple[str, str]], **params: Any) -> Request:
        """A request from (role, content) pairs."""
        return cls(tuple((role, content) for role, content in messages), **params)

    def key(self, model: str) -> str:
        """The content hash that identifies this request for the cache and for resuming."""
        payload = {
            "model": self.model or model,
            "messages": self.messages,
            "schema": self.schema.model_json_schema() if self.schema else None,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass
class Usage:
    """Token counts as the server reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def of(cls, usage: Any) -> Usage:
        """From the ``usage`` object of a reply (servers may omit it or its fields)."""
        if not isinstance(usage, dict):
            return cls()
        return cls(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class Reply:
    """A validated reply: ``value`` is the schema instance (or the text), ``cached`` if replayed."""

    text: str
    value: Any
    cached: bool = False
    attempts: int = 0


@dataclass
class ClientConfig:
    """Connection and politeness settings; every field maps to a CLI flag."""

    base_url: str | None
    api_key: str | None = field(repr=False)  # never in a repr, a log line or a traceback
    model: str
    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 120.0
    reasks: int = 2


class RateLimiter:
    """A token bucket refilled at ``per_minute / 60`` per second, holding one second's worth.

    A minute-sized bucket would let a whole minute's budget go out in one burst
    and trip the server's own finer-grained limiter; one second of burst keeps
    the flow smooth. Waiters queue in order behind the lock.
    """

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` may be spent; a request larger than the bucket waits for a full one."""
        async with self._lock:
            need = min(amount, self.capacity)
            self._refill()
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def settle(self, correction: float) -> None:
        """Charge (or refund) the difference between the estimate and the real amount."""
        self.level = min(self.capacity, self.level - correction)


class ReplyCache:
    """Validated replies by request key, in an append-only JSONL file read back on rerun."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.replies: dict[str, str] = {
            entry["key"]: entry["text"]
            for entry in read_jsonl_objects(self.path)
            if isinstance(entry.get("key"), str) and isinstance(entry.get("text"), str)
        }
        self._log = AppendJsonl(self.path).__enter__()

    def get(self, key: str) -> str | None:
        return self.replies.get(key)

    def add(self, key: str, text: str, usage: dict[str, int]) -> None:
        self.replies[key] = text
        self._log.write({"key": key, "text": text, "usage": usage})

    def close(self) -> None:
        self._log.__exit__(None, None, None)


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` seconds or date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def schema_instructions(schema: type[BaseModel]) -> str:
    """The prompt text that carries the schema when the server cannot enforce it."""
    return (
        "Reply with one JSON object only, no prose and no code fences. "
        "It must conform to this JSON Schema:\n" + json.dumps(schema.model_json_schema(), ensure_ascii=False)
    )


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_reply(text: str, schema: type[BaseModel] | None) -> Any:
    """The validated value of ``text``; raises ``GenerationFailure`` (invalid_json / schema)."""
    if schema is None:
        return text.strip()
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:  # servers in prompt mode like to wrap JSON in a code fence
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise GenerationFailure("invalid_json", f"reply is not valid JSON: {exc}", text) from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise GenerationFailure("schema", f"reply does not match the schema: {problems}", text) from None


@dataclass
class ClientStats:
    """What the run cost and how it went, for the summary and the stats file."""

    usage: Usage = field(default_factory=Usage)
    requests: int = 0
    retries: int = 0
    reasks: int = 0
    cached: int = 0
    mode_changes: list[str] = field(default_factory=list)


class LLMClient:
    """Validated chat completions from an OpenAI-compatible server; use ``async with``."""

    def __init__(self, config: ClientConfig, cache: ReplyCache | None = None) -> None:
        from openai import DEFAULT_CONNECTION_LIMITS, AsyncOpenAI, DefaultAsyncHttpxClient

        self.config = config
        self.cache = cache
        self.redact = Redactor(config.api_key)
        self.mode = MODES[0]
        self._mode_confirmed = False
        self._probe = asyncio.Lock()
        self.stats = ClientStats()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._rpm = RateLimiter(config.rpm) if config.rpm else None
        self._tpm = RateLimiter(config.tpm) if config.tpm else None
        # One keep-alive connection per slot: the SDK's default pool keeps only 100 alive.
        limits = type(DEFAULT_CONNECTION_LIMITS)(
            max_connections=config.concurrency, max_keepalive_connections=config.concurrency
        )
        self._openai = AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "not-needed",  # local servers (vLLM, Ollama) take any key
            max_retries=0,
            timeout=config.timeout,
            http_client=DefaultAsyncHttpxClient(limits=limits, timeout=config.timeout),
        )

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._openai.close()
        if self.cache is not None:
            self.cache.close()

    def provenance(self) -> dict[str, Any]:
        """Where the replies came from, for each record's ``meta`` (no credentials)."""
        return {"backend": "openai-compatible", "endpoint": public_url(self.config.base_url), "model": self.config.model}

    def key(self, request: Request) -> str:
        return request.key(self.config.model)

    async def complete(self, request: Request) -> Reply:
        """The validated reply to ``request``, from the cache or the server."""
        key = self.key(request)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                try:
                    value = parse_reply(cached, request.schema)
                except GenerationFailure:
                    pass  # a cache line from an older schema: ask again
                else:
                    self.stats.cached += 1
                    return Reply(cached, value, cached=True)
        messages = [{"role": role, "content": content} for role, content in request.messages]
        failure: GenerationFailure | None = None
        for attempt in range(self.config.reasks + 1):
            text, usage = await self._reply_text(messages, request)
            try:
                value = parse_reply(text, request.schema)
            except GenerationFailure as exc:
                failure = exc
                if attempt < self.config.reasks:
                    self.stats.reasks += 1
                messages = [
                    *messages,
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": f"That reply was rejected: {exc.message}. "
                     "Answer again, following the required format exactly."},
                ]
                continue
            if self.cache is not None:
                self.cache.add(key, text, usage)
            return Reply(text, value, attempts=attempt + 1)
        assert failure is not None
        raise GenerationFailure(
            failure.reason,
            self.redact(f"{failure.message} (after {self.config.reasks} re-asks)"),
            self.redact(failure.raw),
        )

    async def _reply_text(self, messages: list[dict[str, str]], request: Request) -> tuple[str, dict[str, int]]:
        """One reply's text; length cut-offs, refusals and blanks are failures."""
        completion = await self._create(messages, request)
        choices = completion.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        # A server that echoes the key must not get it into the cache, the output or the rejects.
        text = self.redact(message.get("content")) if isinstance(message.get("content"), str) else ""
        refusal = message.get("refusal")
        finish = choice.get("finish_reason")
        if refusal or finish == "content_filter":
            raise GenerationFailure("refusal", "the model refused", self.redact(refusal or text))
        if finish == "length":
            raise GenerationFailure("length", "the reply was cut off at the token limit", self.redact(text))
        if not text.strip():
            raise GenerationFailure("blank", "the reply is blank", text)
        return text, Usage.of(completion.get("usage")).as_dict()

    async def _create(self, messages: list[dict[str, str]], request: Request) -> dict[str, Any]:
        """Send; until one structured reply has come back, structured requests go one at a time.

        That first request probes the server's structured-output support, so a
        server without it costs one rejected request per mode, not one per
        request in flight.
        """
        if request.schema is None or self._mode_confirmed:
            return await self._create_in_mode(messages, request)
        async with self._probe:
            completion = await self._create_in_mode(messages, request)
            self._mode_confirmed = True
            return completion

    async def _create_in_mode(self, messages: list[dict[str, str]], request: Request) -> dict[str, Any]:
        """Send with the current structured-output mode, stepping down when the server rejects it."""
        from openai import BadRequestError, UnprocessableEntityError

        while True:
            mode = self.mode
            try:
                return await self._send(self._shape(messages, request, mode), request, mode)
            except (BadRequestError, UnprocessableEntityError) as exc:
                detail = self.redact(_error_text(exc)) or ""
                if request.schema is not None and mode != MODES[-1] and _FORMAT_WORDS.search(detail):
                    self._downgrade(mode, detail)
                    continue
                raise GenerationFailure(f"http_{exc.status_code}", detail) from None

    def _downgrade(self, failed_mode: str, detail: str) -> None:
        """Step one mode down, once per mode however many requests saw the rejection."""
        if self.mode == failed_mode:
            self.mode = MODES[MODES.index(failed_mode) + 1]
            self.stats.mode_changes.append(f"{failed_mode} -> {self.mode}: {detail[:200]}")

    def _shape(self, messages: list[dict[str, str]], request: Request, mode: str) -> dict[str, Any]:
        """The request body for ``mode``: response format, or the schema in the system prompt."""
        body: dict[str, Any] = {"messages": messages}
        if request.schema is None:
            return body
        if mode == "json_schema":
            from openai.lib._pydantic import to_strict_json_schema  # the SDK's own strict-schema builder

            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema.__name__, "schema": to_strict_json_schema(request.schema), "strict": True},
            }
            return body
        if mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        instructions = schema_instructions(request.schema)
        if messages and messages[0]["role"] == "system":
            first = {"role": "system", "content": messages[0]["content"] + "\n\n" + instructions}
            body["messages"] = [first, *messages[1:]]
        else:
            body["messages"] = [{"role": "system", "content": instructions}, *messages]
        return body

    async def _send(self, body: dict[str, Any], request: Request, mode: str) -> dict[str, Any]:
        """POST with rate limits, bounded concurrency and retries with backoff on transient errors."""
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        params = {
            name: value
            for name, value in (("temperature", request.temperature), ("max_tokens", request.max_tokens), ("seed", request.seed))
            if value is not None
        }
        estimate = sum(len(m["content"]) for m in body["messages"]) / 3 + (request.max_tokens or 512)
        for attempt in range(self.config.max_retries + 1):
            if self._rpm:
                await self._rpm.acquire(1)
            if self._tpm:
                await self._tpm.acquire(estimate)
            wait: float | None = None
            async with self._slots:
                self.stats.requests += 1
                try:
                    # The SDK's generic ``post`` (its documented route for any endpoint) keeps its
                    # auth, timeouts and typed errors but skips re-walking the params through the
                    # TypedDict annotations and parsing into models: at concurrency 64 those cost
                    # more CPU than the HTTP exchange (benchmarks/bench_synth.py). Servers also vary
                    # in what they fill in, so the reply is read leniently as plain JSON.
                    payload = {"model": request.model or self.config.model, **body, **params}
                    content = await self._openai.post("/chat/completions", body=payload, cast_to=bytes)
                    completion = _json_object(content)
                except APITimeoutError:
                    reason, detail = "timeout", f"no reply within {self.config.timeout:g} s"
                except APIConnectionError as exc:
                    reason, detail = "connection", f"cannot reach the server: {exc}"
                except APIStatusError as exc:
                    status = exc.status_code
                    detail = self.redact(_error_text(exc)) or ""
                    if status in FATAL_STATUSES:
                        raise ClientError(
                            f"{public_url(self.config.base_url) or 'the API'} answered {status} for model "
                            f"{self.config.model!r}: {detail}"
                        ) from None
                    if status in (400, 422):
                        raise  # the structured-output fallback above decides what a rejection means
                    if status not in RETRY_STATUSES:
                        raise GenerationFailure(f"http_{status}", detail) from None
                    reason, wait = f"http_{status}", retry_after(exc.response.headers)
                else:
                    if completion is None:
                        raise GenerationFailure("invalid_response", "the server's reply is not a JSON object")
                    usage = Usage.of(completion.get("usage"))
                    if self._tpm:
                        self._tpm.settle(usage.total - estimate)
                    self.stats.usage.add(usage)
                    return completion
            if attempt == self.config.max_retries:
                raise GenerationFailure(reason, self.redact(f"{detail} (gave up after {attempt + 1} tries)") or "")
            self.stats.retries += 1
            # The server's Retry-After wins over our backoff (capped: a broken header must not stall the run).
            await asyncio.sleep(min(MAX_RETRY_AFTER, wait) if wait is not None else self._backoff(attempt))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random, so clients spread out."""
        delay = min(self.config.max_backoff, self.config.backoff * 2**attempt)
        return delay / 2 + random.uniform(0, delay / 2)


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _error_text(exc: Any) -> str:
    """The server's error message (the SDK keeps the ``error`` object of the body as ``.body``)."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return f"{exc.status_code} {message}" if message else str(exc)
