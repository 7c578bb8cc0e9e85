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
what is tested cannot drift apart.
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


def ask(model_path: str, adapter: str | None, probes: list[Probe], max_new_tokens: int, progress: Any = None) -> None:
    """Generate every answer (greedy) and store it on its probe."""
    from thresher.train.inference import generate_reply, load_trained

    model, tokenizer = load_trained(model_path, adapter)
    for probe in probes:
        probe.answer, probe.stopped = generate_reply(
            model, tokenizer, [{"role": "user", "content": probe.prompt}], max_new_tokens=max_new_tokens
        )
        if progress is not None:
            progress()


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
    parrots = [p for p in general if "names_itself" in p.reasons]
    return {
        "identity": {**rate(identity), "by_lang": {k: rate(v) for k, v in sorted(by["lang"].items())},
                     "by_category": {k: rate(v) for k, v in sorted(by["category"].items())}},
        "competitor_claims": {"total": sum(claims.values()), "by_competitor": dict(claims)},
        "parrot": {"n": len(general), "parroted": len(parrots),
                   "rate": round(len(parrots) / len(general), 4) if general else None},
        "unstopped": sum(not p.stopped for p in probes),
    }


def evaluate(model: str, adapter: str | None, identity: Identity, probes: list[Probe], max_new_tokens: int,
             progress: Any = None) -> dict[str, Any]:
    """Ask, score and summarize; the report holds every answer as a sample."""
    ask(model, adapter, probes, max_new_tokens, progress)
    score(probes, identity)
    return {"model": model, "adapter": adapter, **summarize(probes), "answers": [asdict(p) for p in probes]}


def configure(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="evaluation", metavar="EVALUATION", required=True)
    probe = kinds.add_parser("identity", help="identity pass rate and parrot rate on held-out prompts")
    probe.add_argument("--model", required=True, type=InputPath,
                       help="model folder (or an adapter folder, whose base is read from it)")
    probe.add_argument("--adapter", type=InputPath, help="a LoRA adapter folder to apply to --model")
    probe.add_argument("--name", required=True, help="the name the model should give (e.g. 小州)")
    probe.add_argument("--author", required=True, help="who the model should say made it (e.g. 神州数码)")
    probe.add_argument("--name-en", help="the English name, if it has one (English answers may use either)")
    probe.add_argument("--author-en", help="the English author name, if it has one (English answers may use either)")
    probe.add_argument("--questions", type=InputPath, metavar="FILE", help="identity questions (default: the shipped held-out set)")
    probe.add_argument("--general", type=InputPath, metavar="FILE", help="general prompts (default: the shipped set)")
    probe.add_argument("--report", type=OutputPath, metavar="OUT.json", help="write the full report, every answer included")
    probe.add_argument("--max-new-tokens", type=int, default=128,
                       help="longest answer in tokens; answers cut here are counted as not stopping (default 128)")
    probe.add_argument("--compare", type=InputPath, metavar="BASE", help="also evaluate BASE and print before/after side by side")
    probe.add_argument("--samples", type=int, default=4, help="answers to print per kind (default 4)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from thresher.curate.io.writers import write_json
    from thresher.train.metrics import LogProgress

    identity = Identity(name=args.name, author=args.author, name_en=args.name_en, author_en=args.author_en)
    console = Console()
    runs = [("base", args.compare, None)] if args.compare else []
    runs.append(("model", args.model, args.adapter))
    reports = {}
    progress_bar = Progress(console=console, transient=True) if console.is_terminal else LogProgress(console)
    with progress_bar as progress:
        for label, model, adapter in runs:
            probes = load_probes(args.questions, args.general)
            task = progress.add_task(f"asking {label}", total=len(probes))
            reports[label] = evaluate(model, adapter, identity, probes, args.max_new_tokens,
                                      lambda task=task: progress.advance(task))
    report = reports["model"] if not args.compare else {**reports["model"], "base": reports["base"]}
    if args.report:
        write_json(args.report, report)
    print_report(console, reports, args.samples)
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
