"""A model under evaluation behind an OpenAI-compatible server (vLLM, Ollama, a deployed model).

It answers the same two questions as ``thresher.train.scoring.LocalModel``:

* ``answers``: Chat Completions at temperature 0, ``--concurrency`` requests in
  flight, through thresher's client (retries, rate limits, the key redacted);
* ``nll``: the log-probabilities of *given* text. Chat Completions cannot
  return those, so, as lm-evaluation-harness does for ``local-completions``,
  the dialogue is rendered here with the model's chat template (``--tokenizer``,
  a local folder) and sent to the Completions endpoint with ``echo: true,
  logprobs: 1, max_tokens: 0``: the server returns every prompt token with its
  log-probability and character offset, and the tokens inside the assistant's
  turn (located exactly as SFT labels it) are summed. vLLM supports this; a
  server that does not is told apart with one clear error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from typing import Any

from thresher.curate.errors import ThresherError
from thresher.train.scoring import Progress

NO_ECHO = ("{url} does not return prompt log-probabilities (Completions with echo, logprobs and max_tokens 0, "
           "as vLLM serves them): eval general needs them for the NLL; {detail}")


def api_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that point an eval at a served model instead of a folder."""
    api = parser.add_argument_group("served model (any OpenAI-compatible API; --model is then the served name)")
    api.add_argument("--base-url", metavar="URL", help="evaluate the model served here, e.g. http://localhost:8000/v1")
    api.add_argument("--api-key", help="API key (env OPENAI_API_KEY; prefer the env var: flags show in ps)")
    api.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    api.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    api.add_argument("--max-retries", type=int, default=5, help="retries on 408/409/429/5xx/timeouts (default 5)")


def api_config(args: argparse.Namespace, model: str) -> Any:
    """The client settings for served model ``model`` (the key from --api-key or OPENAI_API_KEY)."""
    from thresher.curate.synth.client import ClientConfig

    if args.concurrency < 1:
        raise ThresherError("--concurrency must be at least 1")
    return ClientConfig(base_url=args.base_url, api_key=args.api_key or os.environ.get("OPENAI_API_KEY"), model=model,
                        concurrency=args.concurrency, timeout=args.timeout, max_retries=args.max_retries)


class ApiModel:
    """A served model; ``tokenizer`` (a local folder with its chat template) is needed only for ``nll``."""

    def __init__(self, config: Any, tokenizer: str | None = None) -> None:
        self.config = config
        self.tokenizer_path = tokenizer
        self._tokenizer: Any = None

    @property
    def label(self) -> str:
        from thresher.curate.synth.wire import public_url

        return f"{self.config.model} @ {public_url(self.config.base_url)}"

    def fingerprint(self) -> str:
        from thresher.train.scoring import folder_fingerprint

        return folder_fingerprint(f"api:{self.label}")

    def release(self) -> None:
        self._tokenizer = None

    def answers(self, prompts: Sequence[str], max_new_tokens: int, progress: Progress = None) -> list[tuple[str, bool]]:
        """(answer, stopped) per prompt; stopped is ``finish_reason == "stop"``."""

        async def one(client: Any, prompt: str) -> tuple[str, bool]:
            reply = await client.chat([{"role": "user", "content": prompt}], temperature=0, max_tokens=max_new_tokens)
            choice = (reply.get("choices") or [{}])[0]
            content = (choice.get("message") or {}).get("content")
            if progress is not None:
                progress(1)
            return client.redact(content) if isinstance(content, str) else "", choice.get("finish_reason") == "stop"

        return self._run(lambda client: asyncio.gather(*(one(client, prompt) for prompt in prompts)))

    def nll(self, pairs: Sequence[tuple[str, str]], progress: Progress = None) -> list[tuple[float, int]]:
        """(summed NLL of the answer's tokens, their count) per (prompt, answer), an empty answer too."""
        from thresher.train.data import assistant_spans

        tokenizer = self.tokenizer()

        async def one(client: Any, prompt: str, answer: str) -> tuple[float, int]:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
            text, [(start, end)] = assistant_spans(tokenizer, messages)
            reply = await self._echo(client, text)
            total, count = 0.0, 0
            for token_start, token_end, logprob in token_spans(reply, len(text)):
                if token_end > start and token_start < end:
                    if logprob is None:
                        raise ThresherError(NO_ECHO.format(url=self.label, detail="a reply token has no log-probability"))
                    total, count = total - logprob, count + 1
            if progress is not None:
                progress(1)
            return total, count

        return self._run(lambda client: asyncio.gather(*(one(client, p, a) for p, a in pairs)))

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            if not self.tokenizer_path:
                raise ThresherError("the NLL of a served model needs its chat template: pass --tokenizer FOLDER "
                                    "(a local copy of the served model's tokenizer)")
            from transformers import AutoTokenizer

            from thresher.train.template import apply_template

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
            except (OSError, ValueError) as exc:
                raise ThresherError(f"--tokenizer {self.tokenizer_path}: cannot load it: {exc}") from None
            apply_template(self._tokenizer)
        return self._tokenizer

    async def _echo(self, client: Any, text: str) -> dict[str, Any]:
        """The Completions reply that scores ``text`` token by token; one clear error when unsupported."""
        from openai import BadRequestError, UnprocessableEntityError

        from thresher.curate.synth.client import ClientError
        from thresher.curate.synth.wire import GenerationFailure

        payload = {"model": self.config.model, "prompt": text, "echo": True, "logprobs": 1, "max_tokens": 0, "temperature": 0}
        try:
            reply = await client.post("/completions", payload, estimate=len(text) / 3)
        except (BadRequestError, UnprocessableEntityError, ClientError, GenerationFailure) as exc:
            raise ThresherError(NO_ECHO.format(url=self.label, detail=f"it answered: {str(exc)[:200]}")) from None
        choice = (reply.get("choices") or [{}])[0]
        if not isinstance(choice.get("logprobs"), dict) or not choice["logprobs"].get("text_offset"):
            raise ThresherError(NO_ECHO.format(url=self.label, detail="its reply has no logprobs.text_offset"))
        return choice

    def _run(self, work: Any) -> Any:
        """Run ``work(client)`` with a fresh client on a fresh event loop."""
        from thresher.curate.synth.client import LLMClient

        async def main() -> Any:
            async with LLMClient(self.config) as client:
                return await work(client)

        return asyncio.run(main())


def token_spans(choice: dict[str, Any], text_length: int) -> list[tuple[int, int, float | None]]:
    """(start, end, logprob) of each echoed token; a token ends where the next begins."""
    logprobs = choice["logprobs"]
    offsets = list(logprobs["text_offset"])
    values = list(logprobs.get("token_logprobs") or [])
    if len(values) != len(offsets):
        raise ThresherError("the server's logprobs list tokens and offsets of different lengths")
    ends = offsets[1:] + [text_length]
    return list(zip(offsets, ends, values))
