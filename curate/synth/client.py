"""An async client for any server that speaks OpenAI's Chat Completions protocol.

Built on the official ``openai`` SDK (``AsyncOpenAI``: base URL, auth,
timeouts, connection pooling, typed HTTP errors) with the SDK's own retries
switched off (``max_retries=0``): synthesis runs thousands of requests against
rate-limited servers, so retrying, backing off, honouring ``Retry-After``,
rate limiting and caching are decided here, in one place, and counted
(the policy itself is in ``retry.py``; requests and replies in ``wire.py``).

What ``LLMClient.complete`` guarantees for one ``Request``:

* structured output: the Pydantic schema goes out as a ``json_schema``
  response format; a server that rejects that gets ``json_object`` mode with
  the schema in the prompt, and one that rejects that too gets the schema in
  the prompt alone. The first structured request probes the server alone and
  a rejection downgrades the whole run (remembered), so a server without
  structured output costs one failed request per mode, not one per request.
* validation: every reply is parsed and validated, and passes the caller's
  ``check`` (the identity rules, say); an invalid one is re-asked with the
  error (``reasks`` times) before it counts as a failure.
* failures carry a machine-readable reason: ``length``, ``refusal``,
  ``blank``, ``invalid_json``, ``schema``, ``http_<status>``, ``timeout``,
  ``connection``.
* a finished request is never sent twice: every request has a content hash
  of (model, messages, parameters, schema); ``jobs.run_jobs`` skips jobs
  whose hash is already in the output, and jobs of several requests also get
  an append-only ``ReplyCache`` of validated replies that a rerun reads first.
* the API key never leaves: every error text and raw reply passes through
  ``Redactor`` before anyone can print or store it.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError
from thresher.curate.io.writers import AppendJsonl, read_jsonl_objects
from thresher.curate.synth.retry import (
    FATAL_STATUSES, MAX_RETRY_AFTER, RETRY_STATUSES, RateLimiter, backoff, retry_after,
)
from thresher.curate.synth.wire import (
    Check, GenerationFailure, Redactor, Reply, Request, Usage, parse_reply, public_url, schema_instructions,
)

#: Structured-output modes, best first; a rejection moves one step down.
MODES = ("json_schema", "json_object", "prompt")
#: Words in a 400/422 error body that say the response format was the problem.
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|structured|schema|format", re.I)


class ClientError(ThresherError):
    """The server refuses every request (bad key, unknown model, wrong URL): the run stops."""


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

    async def complete(self, request: Request, check: Check | None = None) -> Reply:
        """The validated reply to ``request``, from the cache or the server.

        ``check`` is the caller's own test of a parsed reply (the identity rules,
        a paraphrase's language): it raises ``GenerationFailure`` with a message
        the model can act on, and a reply that fails it is re-asked with that
        message exactly as a reply that breaks the schema is. Only a reply that
        passes both is cached.
        """
        key = self.key(request)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                try:
                    value = parse_reply(cached, request.schema)
                    if check is not None:
                        check(value)
                except GenerationFailure:
                    pass  # a cache line from an older schema or check: ask again
                else:
                    self.stats.cached += 1
                    return Reply(cached, value, cached=True)
        messages = [{"role": role, "content": content} for role, content in request.messages]
        failure: GenerationFailure | None = None
        for attempt in range(self.config.reasks + 1):
            text, usage = await self._reply_text(messages, request)
            try:
                value = parse_reply(text, request.schema)
                if check is not None:
                    check(value)
            except GenerationFailure as exc:
                failure = exc
                if attempt < self.config.reasks:
                    self.stats.reasks += 1
                reask = exc.reask or (f"That reply was rejected: {exc.message}. "
                                      "Answer again, following the required format exactly.")
                messages = [*messages, {"role": "assistant", "content": text}, {"role": "user", "content": reask}]
                continue
            if self.cache is not None:
                self.cache.add(key, text, usage)
            return Reply(text, value, attempts=attempt + 1)
        assert failure is not None
        raise GenerationFailure(
            failure.reason,
            self.redact(f"{failure.message} (after {self.config.reasks} re-asks)"),
            self.redact(failure.raw),
            **failure.detail,
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
        """One chat completion for ``request`` shaped as ``body``."""
        params = {
            name: value
            for name, value in (("temperature", request.temperature), ("max_tokens", request.max_tokens), ("seed", request.seed))
            if value is not None
        }
        shape = {key: value for key, value in body.items() if key != "messages"}
        return await self.chat(body["messages"], model=request.model, **shape, **params)

    async def chat(self, messages: list[dict[str, str]], model: str | None = None, **params: Any) -> dict[str, Any]:
        """The raw reply (a dict) to one Chat Completions request: no validation, any finish reason.

        Evaluation uses this: an answer cut at the token limit is still an answer to score.
        """
        payload = {**params, "model": model or self.config.model, "messages": messages}
        estimate = sum(len(m["content"]) for m in messages) / 3 + (params.get("max_tokens") or 512)
        return await self.post("/chat/completions", payload, estimate)

    async def post(self, path: str, payload: dict[str, Any], estimate: float = 0.0) -> dict[str, Any]:
        """POST ``payload`` to ``path`` (e.g. ``/completions``) with rate limits, bounded concurrency and
        retries with backoff on transient errors; the reply as a dict. ``estimate``: tokens, for ``--tpm``."""
        from openai import APIConnectionError, APIStatusError, APITimeoutError

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
                    content = await self._openai.post(path, body=payload, cast_to=bytes)
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
                    if completion is not None:
                        usage = Usage.of(completion.get("usage"))
                        if self._tpm:
                            self._tpm.settle(usage.total - estimate)
                        self.stats.usage.add(usage)
                        return completion
                    # A cut-off or garbled body (a proxy, an overloaded server) is as transient as a 502.
                    reason, detail = "invalid_response", "the server's reply is not a JSON object"
            if attempt == self.config.max_retries:
                raise GenerationFailure(reason, self.redact(f"{detail} (gave up after {attempt + 1} tries)") or "")
            self.stats.retries += 1
            # The server's Retry-After wins over our backoff (capped: a broken header must not stall the run).
            await asyncio.sleep(min(MAX_RETRY_AFTER, wait) if wait is not None else backoff(attempt, self.config.backoff, self.config.max_backoff))
        raise AssertionError("unreachable")

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
