"""Heuristic quality rules for Chinese and English records, configured in YAML.

The shipped defaults live in ``prompts/filter_rules.yaml`` (one documented
entry per rule); a user's ``--rules FILE.yaml`` is merged over them key by key,
so ``symbol_ratio: {max: 0.5}`` changes one threshold and ``refusal:
{enabled: false}`` turns one rule off. Every rule is a Pydantic model, so a
misspelt key or a wrong type is a clear error naming the file and the key.

A rule measures each of its ``fields`` and fails when a measure is out of
bounds; the measure goes into the record's scores either way, and a failure
carries the measured value and the threshold it broke, so every removal can be
explained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from thresher.curate.io.yaml_file import load_yaml_file
from thresher.curate.errors import InputError
from thresher.curate.filter.rules import RULES, Finding, Rule, Views
from thresher.curate.text.fields import Texts

DEFAULTS_RESOURCE = "filter_rules.yaml"


class RuleSet:
    """The enabled rules; ``check`` measures a record's texts against all of them."""

    def __init__(self, rules: list[Rule], config: dict[str, Any]) -> None:
        self.rules = [rule for rule in rules if rule.enabled]
        self.config = config

    def check(self, texts: Texts) -> tuple[dict[str, Any], list[Finding]]:
        """(scores by rule and field, failed rules in check order)."""
        scores: dict[str, Any] = {}
        findings: list[Finding] = []
        views = Views(texts)
        for rule in self.rules:
            if not rule.applies(texts):
                continue
            failed_here = False
            for field, value, failure in rule.evaluate(texts, views):
                scores.setdefault(rule.name, {})[field] = value
                if failure is not None and not failed_here:
                    findings.append(Finding(rule.name, {"field": field, **failure}))
                    failed_here = True
        return scores, findings


def default_config() -> dict[str, Any]:
    """The shipped defaults, as parsed from ``prompts/filter_rules.yaml``."""
    from thresher.prompts import read_text

    return yaml.safe_load(read_text(DEFAULTS_RESOURCE))


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base`` key by key; lists and scalars replace, mappings merge."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_rules(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RuleSet:
    """The default rules, with the YAML file at ``path`` and then ``overrides`` merged over them."""
    config = default_config()
    source = DEFAULTS_RESOURCE
    if path is not None:
        source = str(path)
        user = load_yaml_file(path, "rules file") or {}
        if not isinstance(user, dict):
            raise InputError(source, "a rules file must be a mapping of rule name to settings")
        unknown = sorted(set(user) - set(RULES))
        if unknown:
            raise InputError(source, f"unknown rule {unknown[0]!r}; known rules: {', '.join(RULES)}")
        config = merge(config, user)
    if overrides:
        config = merge(config, overrides)
    rules = []
    for name, model in RULES.items():
        try:
            rules.append(model.model_validate(config[name]))
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in (name, *error["loc"]))
            raise InputError(source, f"{where}: {error['msg']}") from None
    return RuleSet(rules, config)
