"""Every heuristic rule, by the key that configures it in ``prompts/filter_rules.yaml``."""

from __future__ import annotations

from thresher.curate.filter.rules.base import Finding, Rule, View, Views
from thresher.curate.filter.rules.content import (
    ControlChars, EmptyAnswer, Mojibake, Placeholder, Refusal, RepeatsQuestion, Truncated,
)
from thresher.curate.filter.rules.repetition import RepeatedLines, RepeatedNgrams
from thresher.curate.filter.rules.shape import (
    AlphaWords, Length, MeanWordLength, NonTextRatio, StopWords, SymbolRatio, UrlMarkupLines,
)

#: Every heuristic rule by its YAML key, in the order they are checked.
RULES: dict[str, type[Rule]] = {
    rule.name: rule
    for rule in (
        Length, EmptyAnswer, ControlChars, Mojibake, Placeholder, Refusal, RepeatsQuestion, Truncated,
        RepeatedLines, RepeatedNgrams, SymbolRatio, NonTextRatio, UrlMarkupLines,
        MeanWordLength, StopWords, AlphaWords,
    )
}

__all__ = ["RULES", "Finding", "Rule", "View", "Views"]
