"""``thresher synth``: make training data with any OpenAI-compatible API (or none).

* ``identity``: self-cognition QA records from a name and an author; offline
  (templates) when no API is configured, in character through the API otherwise;
* ``answers``: answer a list of questions through the API;
* ``paraphrase``: k meaning-preserving rewrites of each instruction;
* ``preference``: sampled responses scored by a judge -> Scored + Preference records.

API runs append to the output as results arrive and resume after a crash or
Ctrl-C: rerun the same command and finished requests are skipped. Failed
requests go to ``--rejects`` with the reason and the raw reply. The API key is
read from ``--api-key`` or ``OPENAI_API_KEY`` and never printed or written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from thresher.curate.errors import InputError, ThresherError
from thresher.curate.stage import default_sidecar
from thresher.curate.io.claims import InputPath, OutputPath

KINDS = {
    "identity": "self-cognition (who am I) records in Chinese and English",
    "answers": "answer a list of questions through the API",
    "paraphrase": "k meaning-preserving rewrites of each instruction",
    "preference": "sample responses, have a judge score them: Scored + Preference records",
}


def configure(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="synth_command", metavar="KIND", required=True)
    identity = kinds.add_parser("identity", help=KINDS["identity"], description=KINDS["identity"] + ".")
    identity.add_argument("--name", help="the model's name (Chinese or only name)")
    identity.add_argument("--author", help="who made it")
    identity.add_argument("--name-en", help="English name, if different")
    identity.add_argument("--author-en", help="English author, if different")
    identity.add_argument("--description", help="one-sentence description")
    identity.add_argument("--capability", action="append", default=[], help="something it can do (repeatable)")
    identity.add_argument("--limitation", action="append", default=[], help="something it cannot do (repeatable)")
    identity.add_argument("--profile", type=InputPath, metavar="FILE", help="Identity profile (JSON or YAML) instead of the flags above")
    identity.add_argument("-n", "--count", type=int, default=600, help="records in all, split evenly over --lang (default 600)")
    identity.add_argument("--lang", default="zh,en", help="comma-separated languages (default zh,en)")
    identity.add_argument("--offline", action="store_true", help="fill templates, no API (default when no API is configured)")
    identity.add_argument("--paraphrases", type=int, default=2, metavar="K", help="LLM paraphrases per bank question (API mode; 0: none)")
    identity.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    identity.add_argument("--system", nargs="?", const="profile", metavar="TEXT",
                          help="give records a system prompt: TEXT, or the persona prompt when no TEXT (default: none)")
    _output_flags(identity)
    _client_flags(identity, temperature=0.7)

    answers = kinds.add_parser("answers", help=KINDS["answers"], description=KINDS["answers"] + ".")
    answers.add_argument("questions", type=InputPath, metavar="QUESTIONS", help="text file (one question per line) or any record file")
    persona = answers.add_mutually_exclusive_group()
    persona.add_argument("--system", metavar="TEXT", help="system prompt to answer under")
    persona.add_argument("--profile", type=InputPath, metavar="FILE", help="Identity profile: answer in character (persona prompt per language)")
    answers.add_argument("--keep-system", action="store_true", help="keep the system prompt in the output records")
    _output_flags(answers)
    _client_flags(answers, temperature=0.7)

    paraphrase = kinds.add_parser("paraphrase", help=KINDS["paraphrase"], description=KINDS["paraphrase"] + ".")
    paraphrase.add_argument("input", type=InputPath, metavar="IN", help="record file (or text file, one instruction per line)")
    paraphrase.add_argument("-k", type=int, default=3, help="rewrites per instruction (default 3)")
    _output_flags(paraphrase)
    _client_flags(paraphrase, temperature=0.9)

    preference = kinds.add_parser("preference", help=KINDS["preference"], description=KINDS["preference"] + ".")
    preference.add_argument("input", type=InputPath, metavar="IN", help="prompts: record file or text file")
    preference.add_argument("--samples", type=int, default=2, help="responses per prompt (default 2)")
    preference.add_argument("--judge-model", help="model that scores the responses (default: --model)")
    preference.add_argument("--pairs", type=OutputPath, metavar="FILE", help="derived Preference pairs (default OUT.pairs.jsonl)")
    preference.add_argument("--min-margin", type=float, default=0.0, help="minimum score gap for a pair (default 0)")
    _output_flags(preference)
    _client_flags(preference, temperature=1.0)


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="OUT", help="output JSONL (appended to, resumable)")
    parser.add_argument("--rejects", type=OutputPath, metavar="FILE", help="failed requests with reason and raw reply (default OUT.rejects.jsonl)")
    parser.add_argument("--retry-rejects", action="store_true", help="on rerun, retry requests that failed before")


def _client_flags(parser: argparse.ArgumentParser, temperature: float) -> None:
    api = parser.add_argument_group("API client")
    api.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (env OPENAI_BASE_URL)")
    api.add_argument("--model", help="model name the server knows")
    api.add_argument("--api-key", help="API key (env OPENAI_API_KEY; prefer the env var: flags show in ps)")
    api.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    api.add_argument("--rpm", type=float, help="requests per minute limit")
    api.add_argument("--tpm", type=float, help="tokens per minute limit")
    api.add_argument("--max-retries", type=int, default=5, help="retries on 408/409/429/5xx/timeouts (default 5)")
    api.add_argument("--backoff", type=float, default=1.0, help="first backoff in seconds, doubled per retry (default 1)")
    api.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    api.add_argument("--reasks", type=int, default=2, help="re-asks of a reply that fails validation (default 2)")
    api.add_argument("--temperature", type=float, default=temperature, help=f"sampling temperature (default {temperature:g})")
    api.add_argument("--max-tokens", type=int, help="reply token limit")


def client_config(args: argparse.Namespace, required: bool = True) -> Any:
    """The client settings from flags and environment; None when no API is configured and not ``required``."""
    from thresher.curate.synth.client import ClientConfig
    from thresher.curate.synth.wire import public_url

    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL")
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY")
    if not base_url and not api_key:
        if not required:
            return None
        raise ThresherError("no API configured: pass --base-url and/or --api-key (or set OPENAI_BASE_URL / OPENAI_API_KEY)")
    if not args.model:
        hint = "; or add --offline for template-based identity data" if args.synth_command == "identity" else ""
        raise ThresherError(f"--model is required when calling an API ({public_url(base_url) or 'OpenAI'}){hint}")
    if args.concurrency < 1:
        raise ThresherError("--concurrency must be at least 1")
    return ClientConfig(
        base_url=base_url, api_key=api_key, model=args.model, concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm,
        max_retries=args.max_retries, backoff=args.backoff, timeout=args.timeout, reasks=args.reasks,
    )


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    output = Path(args.output)
    if not output.name.endswith(".jsonl"):
        raise ThresherError(f"{output}: synth output must be .jsonl (it is appended to as results arrive)")
    rejects = Path(args.rejects) if args.rejects else default_sidecar(output, "rejects")
    return output, rejects, default_sidecar(output, "stats")


def load_identity(args: argparse.Namespace) -> Any:
    """The Identity from ``--profile`` or the flags, validated by the schema."""
    import json

    from pydantic import ValidationError

    from thresher.schemas import Identity

    if args.profile and args.profile.endswith((".yaml", ".yml")):
        from thresher.curate.io.yaml_file import load_yaml_file

        data = load_yaml_file(args.profile, "profile")
    elif args.profile:
        try:
            data = json.loads(Path(args.profile).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(args.profile, f"cannot read: {exc.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(args.profile, f"not valid JSON: {exc}") from None
    else:
        if not (getattr(args, "name", None) and getattr(args, "author", None)):
            raise ThresherError("give --name and --author (or --profile FILE)")
        data = {"name": args.name, "author": args.author, "name_en": args.name_en, "author_en": args.author_en,
                "description": args.description, "capabilities": args.capability, "limitations": args.limitation}
    try:
        return Identity.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        where = ".".join(map(str, problem["loc"])) or "(profile)"
        raise InputError(args.profile or "--name/--author", f"{where}: {problem['msg']}") from None


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    handler = {"identity": _identity, "answers": _answers, "paraphrase": _paraphrase, "preference": _preference}
    return handler[args.synth_command](args, console)


async def _with_client(config: Any, work: Any, cache_path: Path | None = None) -> Any:
    from thresher.curate.synth.client import LLMClient, ReplyCache

    async with LLMClient(config, ReplyCache(cache_path) if cache_path else None) as client:
        return client, await work(client)


def _identity(args: argparse.Namespace, console: Any) -> int:
    from thresher.prompts.banks import LANGS
    from thresher.curate.synth.identity import offline_records
    from thresher.curate.synth.identity_api import Shortfall, api_records
    from thresher.curate.synth.jobs import RunSummary, report
    from thresher.curate.io.writers import JsonlWriter, RecordWriter

    identity = load_identity(args)
    langs = [lang.strip() for lang in args.lang.split(",") if lang.strip()]
    unknown = [lang for lang in langs if lang not in LANGS]
    if unknown or not langs:
        raise ThresherError(f"--lang: no question bank for {', '.join(unknown) or 'nothing'}; have {', '.join(LANGS)}")
    if args.count < 1:
        raise ThresherError("-n must be at least 1")
    output, rejects, stats = _paths(args)
    if "en" in langs:
        _say_english_names(identity, console)
    config = None if args.offline else client_config(args, required=False)
    if config is None:
        summary = RunSummary("identity (offline)", jobs=args.count)
        records, rejected, shortfall = offline_records(identity, langs, args.count, args.seed, args.system)
        with RecordWriter(output) as out:
            for record in records:
                out.write(record)
        with JsonlWriter(rejects) as rej:
            for line in rejected:
                rej.write(line)
        summary.succeeded = summary.records = len(records)
        if shortfall:
            summary.failed["bank_exhausted"] = sum(shortfall.values())
        summary.extra["template_answers_rejected"] = len(rejected)
        report([summary], None, stats, console, output, rejects)
        if shortfall:
            short = ", ".join(f"{n} {lang}" for lang, n in shortfall.items())
            raise Shortfall(f"asked for {args.count}, wrote {len(records)}: {short} short, the offline bank has no "
                            "more distinct question-answer pairs (use an API for more)")
        return 0

    async def work(client: Any) -> Any:
        return await api_records(
            identity, langs, args.count, client=client, output=output, questions_path=default_sidecar(output, "questions"),
            rejects=rejects, paraphrases=args.paraphrases, seed=args.seed, system=args.system,
            temperature=args.temperature, max_tokens=args.max_tokens, retry_rejects=args.retry_rejects, console=console,
        )

    client, (summaries, shortfall) = asyncio.run(_with_client(config, work))
    report(summaries, client, stats, console, output, rejects)
    if shortfall is not None:
        raise shortfall
    return 0


def _say_english_names(identity: Any, console: Any) -> None:
    """Say up front what English answers must contain when the profile gives no English name or author."""
    from rich.markup import escape

    from thresher.curate.text.scripts import script_language

    for flag, value, english in (("--name", identity.name, identity.name_en), ("--author", identity.author, identity.author_en)):
        if english is None and script_language(value).lang != "en":
            console.print(escape(f"note: no {flag}-en, so English answers use {flag} as it is and must contain "
                                 f"{value!r}; pass {flag}-en to give the English form"), highlight=False)


def _answers(args: argparse.Namespace, console: Any) -> int:
    from thresher.curate.text.scripts import zh_or_en
    from thresher.curate.synth.wire import Request
    from thresher.curate.synth.identity import system_prompt, system_template
    from thresher.curate.synth.inputs import load_prompts, record_dict, turns_of
    from thresher.curate.synth.jobs import Job, report, run_jobs

    config = client_config(args)
    output, rejects, stats = _paths(args)
    items = load_prompts(args.questions)
    identity = load_identity(args) if args.profile else None

    def make_job(client: Any, item: Any) -> Job:
        own_system, turns = turns_of(item.messages)
        system, meta = own_system, {"temperature": args.temperature}
        if identity is not None:
            lang = zh_or_en(item.instruction)
            system, persona = system_prompt(identity, lang), system_template(lang)
            meta.update(template=persona.name, template_hash=persona.hash)
        elif args.system:
            system = args.system
        recorded_system = system if (args.keep_system or system == own_system) else None
        request = Request.chat(([("system", system)] if system else []) + turns,
                               temperature=args.temperature, max_tokens=args.max_tokens)

        async def run(client: Any) -> list[dict[str, Any]]:
            reply = await client.complete(request)
            return [{**record_dict(recorded_system, turns, reply.value), "meta": meta}]

        return Job(client.key(request), item.source, run)

    async def work(client: Any) -> Any:
        jobs = [make_job(client, item) for item in items]
        return [await run_jobs("answers", jobs, client, output, rejects, retry_rejects=args.retry_rejects, console=console)]

    client, summaries = asyncio.run(_with_client(config, work))
    report(summaries, client, stats, console, output, rejects)
    return 0


def _paraphrase(args: argparse.Namespace, console: Any) -> int:
    from thresher.curate.synth.inputs import load_prompts, record_dict, reference_answer, turns_of
    from thresher.curate.synth.jobs import report, run_jobs
    from thresher.curate.synth.paraphrase import paraphrase_job
    from thresher.curate.io.writers import read_jsonl_objects

    if args.k < 1:
        raise ThresherError("-k must be at least 1")
    config = client_config(args)
    output, rejects, stats = _paths(args)
    items = load_prompts(args.input)
    seen = [item.instruction for item in items]
    seen += [q for row in read_jsonl_objects(output) if isinstance(q := _instruction_of(row), str)]
    dropped = [0]

    def records_for(item: Any) -> Any:
        system, turns = turns_of(item.messages)
        answer = reference_answer(item.record)

        def to_records(rewrites: list[str]) -> list[dict[str, Any]]:
            return [
                {**record_dict(system, [*turns[:-1], ("user", text)], answer),
                 "meta": {"paraphrase_of": item.instruction if index else None, "source": f"{item.file}:{item.line}"}}
                for index, text in enumerate([item.instruction, *rewrites])
            ]

        return to_records

    async def work(client: Any) -> Any:
        jobs = [paraphrase_job(client, item.instruction, args.k, seen, item.source, records_for(item), dropped,
                               temperature=args.temperature, max_tokens=args.max_tokens) for item in items]
        summary = await run_jobs("paraphrase", jobs, client, output, rejects, retry_rejects=args.retry_rejects, console=console)
        summary.extra["duplicates_dropped"] = dropped[0]
        return [summary]

    client, summaries = asyncio.run(_with_client(config, work))
    report(summaries, client, stats, console, output, rejects)
    return 0


def _instruction_of(row: dict[str, Any]) -> str | None:
    """The instruction of an output record (QA question or last user message)."""
    if isinstance(row.get("question"), str):
        return row["question"]
    messages = row.get("messages") or row.get("prompt") or []
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else None


def _preference(args: argparse.Namespace, console: Any) -> int:
    from thresher.curate.synth.inputs import load_prompts
    from thresher.curate.synth.jobs import report, run_jobs
    from thresher.curate.synth.preference import preference_job, write_pairs

    if args.samples < 2:
        raise ThresherError("--samples must be at least 2")
    config = client_config(args)
    output, rejects, stats = _paths(args)
    pairs = Path(args.pairs) if args.pairs else default_sidecar(output, "pairs")
    items = load_prompts(args.input)

    async def work(client: Any) -> Any:
        jobs = [preference_job(client, item, args.samples, args.temperature, args.max_tokens, args.judge_model) for item in items]
        return [await run_jobs("preference", jobs, client, output, rejects, retry_rejects=args.retry_rejects, console=console)]

    client, summaries = asyncio.run(_with_client(config, work, cache_path=default_sidecar(output, "cache")))
    summaries[0].extra["preference_pairs"] = write_pairs(output, pairs, args.min_margin)
    report(summaries, client, stats, console, output, rejects)
    return 0
