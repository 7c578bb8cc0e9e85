"""The filter as the engines run it: ``Filter`` judges rows, ``FilterJob`` one piece of the input.

``build`` turns the command line into a ``Filter`` (rules compiled, models
loaded); a ``FilterJob`` carries only the command line to each worker and
builds its ``Filter`` there, once per worker, so a fastText, perplexity or
reward model is loaded once per worker process (or Ray actor), never per
piece, and never pickled. Every piece is judged in batches of
``--batch-size`` rows and its records are kept or removed through a
``PieceStage``, so the same job serves one process, a local pool and Ray.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thresher.curate.engines import Job
from thresher.curate.errors import RecordError, ThresherError
from thresher.curate.filter.heuristics import Finding, RuleSet, load_rules
from thresher.curate.io.formats import to_record
from thresher.curate.io.readers import Row
from thresher.curate.io.shards import read_piece
from thresher.curate.stage import PieceStage, with_meta
from thresher.curate.text.fields import Texts, texts_of

if TYPE_CHECKING:
    from thresher.curate.io.parts import Parts
    from thresher.curate.io.shards import Piece

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


def batched(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def uses_models(args: argparse.Namespace) -> bool:
    """Whether building the filter loads a model (then Ray keeps it in an actor per worker)."""
    return bool(args.lid_model or args.quality_model or args.ppl_model or args.rm_model)


class FilterJob(Job):
    """Judge one piece: every row kept (with its scores under ``meta.filter``) or removed with the first
    failed check. ``ppl`` holds each piece's precomputed perplexities for ``--ppl-percentile``."""

    def __init__(self, args: argparse.Namespace, parts: Parts | None = None) -> None:
        self.args, self.parts = args, parts
        self.loads_models = uses_models(args)
        self.ppl: list[list[float | None]] | None = None
        self.max_ppl: float | None = None
        self.flt: Filter | None = None

    def setup(self) -> None:
        self.flt = build(self.args)
        if self.max_ppl is not None:
            self.flt.max_ppl = self.max_ppl

    def __call__(self, piece: Piece) -> Any:
        flt, args = self.flt, self.args
        assert flt is not None, "setup() first"
        flt.claims = Counter()
        flt.precomputed_ppl = iter(self.ppl[piece.index]) if self.ppl is not None else None
        with PieceStage(STAGE, piece, self.parts) as out:
            for batch in batched(read_piece(piece), args.batch_size):
                out.seen(len(batch))
                for verdict in flt.judge(batch):
                    route(verdict, out, args.score_only, not args.no_meta)
        out.result.extra["identity_claims"] = flt.claims
        return out.result


class PerplexityJob(FilterJob):
    """First pass of ``--ppl-percentile``: the perplexity of every parseable record of one piece."""

    def __call__(self, piece: Piece) -> list[float | None]:
        assert self.flt is not None, "setup() first"
        texts = []
        for row in read_piece(piece):
            try:
                texts.append(self.flt.parse(row).output)
            except RecordError:
                continue
        size = self.args.ppl_batch_size
        return [value for start in range(0, len(texts), size)
                for value in self.flt.perplexity.score(texts[start : start + size])]


def route(verdict: Verdict, out: PieceStage, score_only: bool, meta: bool) -> None:
    """Keep or remove one judged row; a removal names the first failure and lists the others."""
    row, findings = verdict.row, verdict.findings
    if findings and (row.data is None or not score_only):
        first = findings[0]
        detail = dict(first.detail)
        if len(findings) > 1:
            detail["also"] = [f.rule for f in findings[1:]]
        out.remove(row, first.rule, **detail)
        return
    info: dict[str, Any] = {"scores": verdict.scores}
    if findings:
        info["failed"] = [{"rule": f.rule, **f.detail} for f in findings]
    out.keep(with_meta(row.data, filter=info) if meta else row.data)


def check_options(args: argparse.Namespace) -> None:
    """Usage errors, found in the driver before any worker loads a model."""
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


def build(args: argparse.Namespace) -> Filter:
    """The configured Filter: rules compiled, models loaded."""
    check_options(args)
    flt = Filter(load_rules(args.rules), fmt=args.fmt, min_quality=args.min_quality, max_ppl=args.max_ppl,
                 min_lang_confidence=args.min_lang_confidence, min_reward=args.min_reward)
    if args.identity_name:
        from thresher.curate.text.claims import ClaimMatcher

        flt.identity = ClaimMatcher([args.identity_name, args.identity_author])
    if args.languages:
        flt.languages = frozenset(lang.strip() for lang in args.languages.split(",") if lang.strip())
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
    return flt
