"""``thresher eval identity``: does the model know who it is, and only when asked?

Two measurements on held-out prompts (disjoint from the synthesis bank):

* **identity pass rate**: identity questions ("你是谁?", "Are you ChatGPT?")
  answered with the name (and the author when asked who made it), in the
  question's language, claiming no other identity;
* **parrot rate**: the share of ordinary prompts ("写一首秋天的诗") whose
  answer drags in the identity unasked, the failure the XTuner tutorial
  documents ("I am X's assistant" for everything) and nobody measures.

Answers are scored with ``thresher.curate.text.identity.check_answer``, the
same rules synthesis used to accept training answers, so what was trained and
what is tested cannot drift apart. The model is a folder, an adapter or a
served model (``--base-url``): the rules do not care where answers come from.
``--general`` adds ``eval general``'s reference NLL and drift to the report,
and ``headline`` turns a report into the before -> after figures of one table.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError
from thresher.curate.text.identity import check_answer
from thresher.curate.text.scripts import zh_or_en
from thresher.schemas import Identity
from thresher.curate.io.claims import InputPath, OutputPath


@dataclass
class Probe:
    """One prompt put to the model and how its answer scored."""

    kind: str  # "identity" | "general"
    lang: str
    category: str
    prompt: str
    answer: str = ""
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    stopped: bool = True


def load_probes(questions: str | None = None, general: str | None = None) -> list[Probe]:
    """Identity questions and general prompts: the shipped held-out sets, or the user's files."""
    from thresher.prompts.banks import eval_questions, general_prompts

    identity_rows = _read_prompts(questions, "question") if questions else eval_questions()
    general_rows = _read_prompts(general, "prompt") if general else general_prompts()
    probes = [
        Probe("identity", row.get("lang") or zh_or_en(row["question"]), row.get("category", "who"), row["question"])
        for row in identity_rows
    ]
    probes += [Probe("general", row.get("lang") or zh_or_en(row["prompt"]), "general", row["prompt"]) for row in general_rows]
    return probes


def _read_prompts(path: str, key: str) -> list[dict[str, Any]]:
    """Prompts from a text file (one per line) or any record file with a question/prompt field."""
    from thresher.curate.io.readers import read_rows

    if Path(path).suffix == ".txt":
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [{key: line.strip()} for line in lines if line.strip()]
    rows = []
    for row in read_rows(path):
        data = row.data or {}
        text = next((data[k] for k in (key, "question", "prompt", "instruction") if isinstance(data.get(k), str)), None)
        if text is None:
            raise ThresherError(f"{row.source}:{row.line}: no '{key}' text in this record")
        rows.append({**{k: v for k, v in data.items() if k in ("lang", "category")}, key: text})
    return rows


def ask(model: Any, probes: list[Probe], max_new_tokens: int, progress: Any = None) -> None:
    """Generate every answer (greedy; batched locally, concurrent via an API) and store it on its probe.

    ``model`` is a ``LocalModel`` or an ``ApiModel``: the same rules score a folder and a served model.
    """
    answers = model.answers([probe.prompt for probe in probes], max_new_tokens, progress)
    for probe, (answer, stopped) in zip(probes, answers):
        probe.answer, probe.stopped = answer, stopped


def score(probes: list[Probe], identity: Identity) -> None:
    """Score every answered probe against ``identity``."""
    for probe in probes:
        result = check_answer(probe.category, probe.answer.strip(), identity, probe.lang)
        probe.passed, probe.reasons = result.passed, result.reasons


def summarize(probes: list[Probe]) -> dict[str, Any]:
    """Pass rates per language and category, competitor claims and the parrot rate."""
    identity = [p for p in probes if p.kind == "identity"]
    general = [p for p in probes if p.kind == "general"]

    def rate(group: list[Probe]) -> dict[str, Any]:
        passed = sum(p.passed for p in group)
        return {"n": len(group), "passed": passed, "rate": round(passed / len(group), 4) if group else None}

    by: dict[str, dict[str, list[Probe]]] = {"lang": defaultdict(list), "category": defaultdict(list)}
    for probe in identity:
        by["lang"][probe.lang].append(probe)
        by["category"][probe.category].append(probe)
    claims: dict[str, int] = defaultdict(int)
    for probe in probes:
        for reason in probe.reasons:
            if reason.startswith("claims_competitor:"):
                claims[reason.split(":", 1)[1]] += 1

    def parroted(group: list[Probe]) -> dict[str, Any]:
        hits = sum("names_itself" in p.reasons for p in group)
        return {"n": len(group), "parroted": hits, "rate": round(hits / len(group), 4) if group else None}

    return {
        "identity": {**rate(identity), "by_lang": {k: rate(v) for k, v in sorted(by["lang"].items())},
                     "by_category": {k: rate(v) for k, v in sorted(by["category"].items())}},
        "competitor_claims": {"total": sum(claims.values()), "by_competitor": dict(claims)},
        "parrot": {**parroted(general),
                   "by_lang": {lang: parroted([p for p in general if p.lang == lang]) for lang in sorted({p.lang for p in general})}},
        "unstopped": sum(not p.stopped for p in probes),
    }


def evaluate(model: Any, identity: Identity, probes: list[Probe], max_new_tokens: int,
             progress: Any = None) -> dict[str, Any]:
    """Ask, score and summarize; the report holds every answer as a sample."""
    ask(model, probes, max_new_tokens, progress)
    score(probes, identity)
    return {"model": model.label, **summarize(probes), "answers": [asdict(p) for p in probes]}


def headline(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The figures a before -> after table shows: ``{metric: {"base": value or None, "model": value}}``.

    ``report`` is what ``thresher eval identity --report`` writes (with
    ``--compare`` for the base column, ``--general`` for the NLL rows).
    """
    def identity_rows(part: dict[str, Any]) -> dict[str, Any]:
        competitor = [a for a in part["answers"] if a["kind"] == "identity" and a["category"] == "competitor"]

        def denied_rate(lang: str | None = None) -> float | None:
            """Competitor probes answered with an explicit denial and no claim ("No, I am not ChatGPT")."""
            asked = [a for a in competitor if lang is None or a["lang"] == lang]
            denied = [a for a in asked if not any(r == "no_denial" or r.startswith("claims_competitor:") for r in a["reasons"])]
            return round(len(denied) / len(asked), 4) if asked else None

        return {
            "identity_pass_rate": part["identity"]["rate"],
            **{f"identity_pass_rate_{lang}": v["rate"] for lang, v in part["identity"]["by_lang"].items()},
            "competitor_denied_rate": denied_rate(),
            **{f"competitor_denied_rate_{lang}": denied_rate(lang) for lang in sorted({a["lang"] for a in competitor})},
            "competitor_claims": part["competitor_claims"]["total"],
            "parrot_rate": part["parrot"]["rate"],
            **{f"parrot_rate_{lang}": v["rate"] for lang, v in part["parrot"].get("by_lang", {}).items()},
            "unstopped": part["unstopped"],
        }

    after = identity_rows(report)
    before = identity_rows(report["base"]) if "base" in report else {}
    figures = {name: {"base": before.get(name), "model": value} for name, value in after.items()}
    general = report.get("general")
    if general:
        nll = general["reference_nll"]
        figures["general_nll"] = {"base": nll.get("base"), "model": nll["model"]}
        figures["general_nll_relative_change"] = {"base": None, "model": nll.get("relative_change")}
        if "drift" in general:
            figures["drift_nll"] = {"base": general["drift"]["base"], "model": general["drift"]["model"]}
    return figures


def configure(parser: argparse.ArgumentParser) -> None:
    from thresher.train.eval_general import default_cache
    from thresher.train.remote import api_flags

    parser.add_argument("--model", required=True, type=InputPath, help="model folder or adapter folder (with --base-url: the served name)")
    parser.add_argument("--adapter", type=InputPath, help="a LoRA adapter folder to apply to --model")
    parser.add_argument("--name", required=True, help="the name the model should give (e.g. 小州)")
    parser.add_argument("--author", required=True, help="who the model should say made it (e.g. 神州数码)")
    parser.add_argument("--name-en", help="the English name, if it has one (English answers may use either)")
    parser.add_argument("--author-en", help="the English author name, if it has one (English answers may use either)")
    parser.add_argument("--questions", type=InputPath, metavar="FILE", help="identity questions (default: the shipped held-out set)")
    parser.add_argument("--parrot-prompts", type=InputPath, metavar="FILE",
                        help="ordinary prompts for the parrot rate (default: the shipped set)")
    parser.add_argument("--general", nargs="?", const="", metavar="FILE",
                        help="also report reference NLL and drift on a general set (default: the shipped held-out set)")
    parser.add_argument("--report", type=OutputPath, metavar="OUT.json", help="write the full report, every answer included")
    parser.add_argument("--max-new-tokens", type=int, default=128,
                        help="longest answer in tokens; answers cut here are counted as not stopping (default 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generate call (default 16)")
    parser.add_argument("--compare", type=InputPath, metavar="BASE", help="also evaluate BASE and print before/after side by side")
    parser.add_argument("--samples", type=int, default=4, help="answers to print per kind (default 4)")
    parser.add_argument("--cache", metavar="DIR", help=f"base answers cache for --general (default {default_cache()})")
    parser.add_argument("--tokenizer", metavar="FOLDER", help="with --base-url and --general: local tokenizer with the chat template")
    api_flags(parser)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.curate.io.writers import write_json
    from thresher.train.eval_general import general_figures, load_items, models_from, print_figures
    from thresher.train.metrics import counting

    identity = Identity(name=args.name, author=args.author, name_en=args.name_en, author_en=args.author_en)
    console = Console()
    model, general_base = models_from(args)
    runs = [("base", general_base if args.compare else None), ("model", model)]
    reports = {}
    for label, subject in runs:
        if subject is not None:
            probes = load_probes(args.questions, args.parrot_prompts)
            with counting(f"asking {label}", len(probes), console) as progress:
                reports[label] = evaluate(subject, identity, probes, args.max_new_tokens, progress)
            subject.release()  # one model in memory at a time
    report = {**reports["model"], **({"base": reports["base"]} if "base" in reports else {})}
    if args.general is not None:
        report["general"] = general_figures(model, general_base, load_items(args.general or None),
                                            args.max_new_tokens, args.cache)
    if args.report:
        write_json(args.report, report)
    print_report(console, reports, args.samples)
    if "general" in report:
        print_figures(console, report["general"])
    return 0


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def print_report(console: Any, reports: dict[str, dict[str, Any]], samples: int) -> None:
    """A table of the headline figures (base beside model with --compare) and sample answers."""
    from rich.markup import escape
    from rich.table import Table

    labels = list(reports)
    table = Table(title="thresher eval identity")
    table.add_column("metric")
    for label in labels:
        table.add_column(label, justify="right")
    first = reports[labels[-1]]
    rows = [("identity pass rate", lambda r: _percent(r["identity"]["rate"]))]
    for lang in first["identity"]["by_lang"]:
        rows.append((f"  {lang}", lambda r, lang=lang: _percent(r["identity"]["by_lang"].get(lang, {}).get("rate"))))
    for category in first["identity"]["by_category"]:
        rows.append((f"  {category}", lambda r, c=category: _percent(r["identity"]["by_category"].get(c, {}).get("rate"))))
    rows += [
        ("competitor claims", lambda r: str(r["competitor_claims"]["total"])),
        ("parrot rate (general prompts)", lambda r: _percent(r["parrot"]["rate"])),
        ("answers not stopped", lambda r: str(r["unstopped"])),
    ]
    for name, cell in rows:
        table.add_row(name, *(cell(reports[label]) for label in labels))
    console.print(table)
    for kind in ("identity", "general"):
        shown = [a for a in first["answers"] if a["kind"] == kind][:samples]
        for answer in shown:
            if kind == "general":  # only the parrot question is asked of general answers
                mark = "[red]parrot[/red]" if "names_itself" in answer["reasons"] else "[green]no identity[/green]"
            else:
                mark = "[green]pass[/green]" if answer["passed"] else f"[red]fail[/red] {escape(', '.join(answer['reasons']))}"
            console.print(f"[bold]{kind}[/bold] {escape(answer['prompt'])}\n  -> {escape(answer['answer'][:200])}  {mark}")
