"""``thresher filter``: keep or drop records by heuristic rules, identity hygiene and learned scores.

A keep-or-drop stage (see ``stage.py``): kept records are written in the shape
they came in, with their scores under ``meta.filter``; every removed record
goes to the removed file with the first rule it failed and the measured value
(``detail``), and the stats JSON counts removals by rule. ``--score-only``
removes nothing (except lines that are not JSON objects) and writes every
record with its scores and the rules it *would* fail, for inspection.

Checks run in this order, and a removal names the first failure:
the data contract (``invalid``), the heuristic rules in their YAML order,
identity claims (``identity``), language (``language``), the fastText quality
model (``quality``), perplexity (``perplexity``) and the reward model (``reward``). Model scores are computed
in batches of ``--batch-size`` records.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from thresher.curate.errors import RecordError, ThresherError
from thresher.curate.io.formats import FORMATS, to_record
from thresher.curate.filter.heuristics import Finding, RuleSet, load_rules
from thresher.curate.io.readers import Row, read_rows
from thresher.curate.text.fields import Texts, texts_of
from thresher.curate.io.claims import InputPath, OutputPath

STAGE = "filter"


@dataclass
class Verdict:
    """What the filter found for one row: its scores and the checks it failed, in order."""

    row: Row
    texts: Texts | None = None
    record: Any = None  # the canonical record, for scorers that need more than text
    scores: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Filter:
    """Every configured check; ``judge`` turns a batch of rows into verdicts."""

    rules: RuleSet
    fmt: str | None = None
    identity: Any = None  # ClaimMatcher, first-person claims only
    languages: frozenset[str] = frozenset()
    min_lang_confidence: float = 0.0
    lid: Any = None  # FastTextLanguageId
    quality: Any = None  # QualityModel
    min_quality: float | None = None
    perplexity: Any = None  # Perplexity
    max_ppl: float | None = None
    precomputed_ppl: Iterator[float | None] | None = None
    reward: Any = None  # thresher.train.rm.RewardScorer
    min_reward: float | None = None
    claims: Counter[str] = field(default_factory=Counter)

    def judge(self, rows: list[Row]) -> list[Verdict]:
        verdicts = [self._heuristics(row) for row in rows]
        scored = [v for v in verdicts if v.texts is not None]
        if scored and self.lid is not None:
            for verdict, (lang, confidence) in zip(scored, self.lid.predict([v.texts.body for v in scored])):
                self._language(verdict, lang, confidence)
        if scored and self.quality is not None:
            for verdict, value in zip(scored, self.quality.score([v.texts.body for v in scored])):
                verdict.scores["quality"] = value
                if self.min_quality is not None and value < self.min_quality:
                    verdict.findings.append(Finding("quality", {"value": value, "min": self.min_quality}))
        if scored and self.perplexity is not None:
            if self.precomputed_ppl is not None:
                values = [next(self.precomputed_ppl) for _ in scored]
            else:
                values = self.perplexity.score([v.texts.output for v in scored])
            for verdict, value in zip(scored, values):
                verdict.scores["perplexity"] = value
                if self.max_ppl is not None and value is not None and value > self.max_ppl:
                    verdict.findings.append(Finding("perplexity", {"value": value, "max": round(self.max_ppl, 4)}))
        if scored and self.reward is not None:
            self._rewards([v for v in scored if v.record.kind in ("dialogue", "qa")])
        return verdicts

    def _rewards(self, verdicts: list[Verdict]) -> None:
        """Reward of each dialogue's final answer; other kinds (preference pairs...) are not scored."""
        from thresher.train.rm import score_records

        for verdict, value in zip(verdicts, score_records(self.reward, [v.record for v in verdicts])):
            verdict.scores["reward"] = value
            if self.min_reward is not None and value < self.min_reward:
                verdict.findings.append(Finding("reward", {"value": value, "min": self.min_reward}))

    def parse(self, row: Row) -> Texts:
        """The judged texts of a row; raises RecordError when it breaks the data contract."""
        return texts_of(self.record(row))

    def record(self, row: Row) -> Any:
        """The canonical record of a row; raises RecordError when it breaks the data contract."""
        if row.data is None:
            raise RecordError("", row.error or "unreadable")
        return to_record(row.data, self.fmt, context={"allow_placeholders": True})

    def _heuristics(self, row: Row) -> Verdict:
        verdict = Verdict(row)
        try:
            verdict.record = self.record(row)
            verdict.texts = texts_of(verdict.record)
        except RecordError as exc:
            verdict.findings.append(Finding("invalid", {"field": exc.field, "error": exc.reason}))
            return verdict
        verdict.scores, verdict.findings = self.rules.check(verdict.texts)
        if self.identity is not None and verdict.texts.response:
            claims = self.identity.claims(verdict.texts.response)
            if claims:
                verdict.scores["identity"] = {c.competitor: c.text for c in claims}
                self.claims.update(c.competitor for c in claims)
                verdict.findings.append(Finding("identity", {"competitor": claims[0].competitor, "value": claims[0].text}))
        if self.lid is None:
            from thresher.curate.text.scripts import script_language

            self._language(verdict, *script_language(verdict.texts.body))
        return verdict

    def _language(self, verdict: Verdict, lang: str, confidence: float) -> None:
        verdict.scores["language"] = {"lang": lang, "confidence": confidence}
        if self.languages and (lang not in self.languages or confidence < self.min_lang_confidence):
            verdict.findings.append(
                Finding("language", {"value": lang, "confidence": confidence, "allowed": sorted(self.languages),
                                     "min_confidence": self.min_lang_confidence})
            )

    def outputs(self, paths: Iterable[str]) -> Iterator[str]:
        """The perplexity text of every parseable record, in input order."""
        for path in paths:
            for row in read_rows(path):
                try:
                    yield self.parse(row).output
                except RecordError:
                    continue


def batched(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def percentile_threshold(values: list[float], percentile: float) -> float:
    """The value below which ``percentile`` percent of ``values`` fall (linear interpolation)."""
    import numpy as np

    if not values:
        raise ThresherError("--ppl-percentile: no record has text to score")
    return float(np.percentile(values, percentile))


def precompute_perplexity(flt: Filter, paths: list[str], batch_size: int) -> list[float | None]:
    """First pass for ``--ppl-percentile``: every record's perplexity, in input order."""
    values: list[float | None] = []
    batch: list[str] = []
    for text in flt.outputs(paths):
        batch.append(text)
        if len(batch) == batch_size:
            values += flt.perplexity.score(batch)
            batch = []
    if batch:
        values += flt.perplexity.score(batch)
    return values


def run_filter(
    flt: Filter,
    paths: list[str],
    output: str,
    removed: str,
    stats: str,
    *,
    score_only: bool = False,
    meta: bool = True,
    batch_size: int = 256,
    extra: dict[str, Any] | None = None,
):
    """Stream every row of ``paths`` through ``flt``; write kept, removed and stats. Returns the Stage."""
    from thresher.curate.stage import Stage, with_meta
    from thresher.curate.io.writers import RecordWriter

    with Stage(STAGE, removed, stats) as stage, RecordWriter(output) as writer:
        stage.extra.update(extra or {})
        for path in paths:
            for batch in batched(read_rows(path), batch_size):
                stage.seen(len(batch))
                for verdict in flt.judge(batch):
                    _route(verdict, stage, writer, score_only, meta, with_meta)
        stage.extra["identity_claims"] = dict(flt.claims.most_common())
    return stage


def _route(verdict: Verdict, stage, writer, score_only: bool, meta: bool, with_meta) -> None:
    row, findings = verdict.row, verdict.findings
    if findings and (row.data is None or not score_only):
        first = findings[0]
        detail = dict(first.detail)
        if len(findings) > 1:
            detail["also"] = [f.rule for f in findings[1:]]
        stage.remove(row, first.rule, **detail)
        return
    info: dict[str, Any] = {"scores": verdict.scores}
    if findings:
        info["failed"] = [{"rule": f.rule, **f.detail} for f in findings]
    writer.write(with_meta(row.data, filter=info) if meta else row.data)
    stage.keep()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=InputPath, metavar="IN", help="record files or datasets folders")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="OUT", help="kept records (.jsonl or .json, +.gz)")
    parser.add_argument("--rules", type=InputPath, metavar="FILE.yaml", help="rule settings merged over the shipped defaults")
    parser.add_argument("--removed", type=OutputPath, metavar="FILE", help="removed records with reason and measured value "
                        "(default: OUT.removed.jsonl)")
    parser.add_argument("--stats", type=OutputPath, metavar="FILE", help="stats JSON (default: OUT.stats.json)")
    parser.add_argument("--from", dest="fmt", choices=FORMATS, help="force the record format instead of detecting it")
    parser.add_argument("--score-only", action="store_true", help="remove nothing; write every record with its scores")
    parser.add_argument("--no-meta", action="store_true", help="write kept records exactly as read, without scores")
    parser.add_argument("--batch-size", type=int, default=256, help="records per scoring batch (default 256)")
    identity = parser.add_argument_group("identity hygiene")
    identity.add_argument("--identity-name", metavar="NAME", help="the name being taught; turns on identity hygiene")
    identity.add_argument("--identity-author", metavar="AUTHOR", help="who made the model being taught")
    lang = parser.add_argument_group("language")
    lang.add_argument("--languages", metavar="LANGS", help="comma-separated languages to keep, e.g. zh,en "
                      "(default: keep all, score only)")
    lang.add_argument("--lid-model", type=InputPath, metavar="PATH", help="fastText language-ID model (e.g. lid.176.ftz) "
                      "instead of Unicode script ratios")
    lang.add_argument("--min-lang-confidence", type=float, default=0.5,
                      help="with --languages: minimum confidence (default 0.5)")
    models = parser.add_argument_group("learned scores")
    models.add_argument("--quality-model", type=InputPath, metavar="MODEL.bin", help="fastText model from `thresher quality train`")
    models.add_argument("--min-quality", type=float, help="remove records whose P(good) is below this")
    models.add_argument("--ppl-model", type=InputPath, metavar="PATH", help="local transformers causal LM folder for perplexity")
    ppl = models.add_mutually_exclusive_group()
    ppl.add_argument("--max-ppl", type=float, help="remove records whose perplexity is above this")
    ppl.add_argument("--ppl-percentile", type=float, metavar="P",
                     help="remove records above the P-th perplexity percentile (e.g. 95 drops the top 5%%)")
    models.add_argument("--ppl-batch-size", type=int, default=8, help="texts per perplexity batch (default 8)")
    models.add_argument("--ppl-max-length", type=int, default=1024, help="tokens scored per text (default 1024)")
    models.add_argument("--device", default="auto", help="device for --ppl-model: auto, cpu, cuda, cuda:1 ...")
    models.add_argument("--rm-model", type=InputPath, metavar="PATH", help="reward model from `thresher train rm`: scores each "
                        "dialogue's final answer (meta.filter.scores.reward)")
    models.add_argument("--min-reward", type=float, help="with --rm-model: remove records whose reward is below this")


def build(args: argparse.Namespace) -> tuple[Filter, dict[str, Any]]:
    """The configured Filter and the settings worth recording in the stats."""
    if args.min_reward is not None and not args.rm_model:
        raise ThresherError("--min-reward needs --rm-model")
    if bool(args.identity_name) != bool(args.identity_author):
        raise ThresherError("--identity-name and --identity-author go together")
    if args.min_quality is not None and not args.quality_model:
        raise ThresherError("--min-quality needs --quality-model")
    if (args.max_ppl is not None or args.ppl_percentile is not None) and not args.ppl_model:
        raise ThresherError("--max-ppl/--ppl-percentile need --ppl-model")
    if args.ppl_percentile is not None and not 0 < args.ppl_percentile < 100:
        raise ThresherError("--ppl-percentile must be between 0 and 100")
    flt = Filter(load_rules(args.rules), fmt=args.fmt, min_quality=args.min_quality, max_ppl=args.max_ppl,
                 min_lang_confidence=args.min_lang_confidence, min_reward=args.min_reward)
    settings: dict[str, Any] = {"rules": args.rules or "defaults", "score_only": args.score_only}
    if args.identity_name:
        from thresher.curate.text.claims import ClaimMatcher

        flt.identity = ClaimMatcher([args.identity_name, args.identity_author])
        settings["identity"] = {"name": args.identity_name, "author": args.identity_author}
    if args.languages:
        flt.languages = frozenset(lang.strip() for lang in args.languages.split(",") if lang.strip())
        settings["languages"] = sorted(flt.languages)
    if args.lid_model:
        from thresher.curate.filter.langid import FastTextLanguageId

        flt.lid = FastTextLanguageId(args.lid_model)
    if args.quality_model:
        from thresher.curate.filter.quality import QualityModel

        flt.quality = QualityModel(args.quality_model)
    if args.ppl_model:
        from thresher.curate.filter.perplexity import Perplexity

        flt.perplexity = Perplexity(args.ppl_model, args.ppl_batch_size, args.ppl_max_length, args.device)
    if args.rm_model:
        from thresher.train.rm import RewardScorer

        flt.reward = RewardScorer(args.rm_model)
        settings["reward"] = {"model": args.rm_model, "min": args.min_reward}
    return flt, settings


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.curate.stage import default_sidecar

    flt, settings = build(args)
    if args.ppl_percentile is not None:
        values = precompute_perplexity(flt, args.paths, args.ppl_batch_size)
        flt.max_ppl = percentile_threshold([v for v in values if v is not None], args.ppl_percentile)
        flt.precomputed_ppl = iter(values)
        settings["ppl_threshold"] = {"percentile": args.ppl_percentile, "max_ppl": round(flt.max_ppl, 4)}
    stage = run_filter(
        flt, args.paths, args.output,
        args.removed or str(default_sidecar(args.output, "removed")),
        args.stats or str(default_sidecar(args.output, "stats")),
        score_only=args.score_only, meta=not args.no_meta, batch_size=args.batch_size, extra=settings,
    )
    print_summary(stage.stats(), Console())
    return 0


def print_summary(stats: dict[str, Any], console: Any) -> None:
    """Counts, removals by rule and identity claims by competitor, as rich tables."""
    from rich.table import Table

    table = Table(title="thresher filter")
    for column in ("in", "kept", "removed"):
        table.add_column(column, justify="right")
    table.add_row(str(stats["in"]), str(stats["kept"]), str(stats["removed_total"]))
    console.print(table)
    if stats["removed"]:
        reasons = Table(title="removed by rule")
        reasons.add_column("rule")
        reasons.add_column("records", justify="right")
        for reason, count in sorted(stats["removed"].items(), key=lambda item: -item[1]):
            reasons.add_row(reason, str(count))
        console.print(reasons)
    if stats.get("identity_claims"):
        claims = Table(title="identity claims by competitor")
        claims.add_column("competitor")
        claims.add_column("records", justify="right")
        for name, count in stats["identity_claims"].items():
            claims.add_row(name, str(count))
        console.print(claims)
