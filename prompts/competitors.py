"""The list of other assistants (names and makers) as shipped data.

Identity hygiene (``thresher filter``), identity synthesis and the identity
probe all need to know which names a model must not call itself; keeping the
list in ``competitors.yaml`` gives them one source to read and users one file
to extend.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from thresher.prompts import read_text

RESOURCE = "competitors.yaml"


@dataclass(frozen=True, slots=True)
class Competitor:
    """Another assistant: ``key`` for reports, its ``names`` and its ``makers``."""

    key: str
    names: tuple[str, ...]
    makers: tuple[str, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """Every spelling, names and makers together."""
        return self.names + self.makers


def load_competitors(text: str | None = None) -> list[Competitor]:
    """The shipped competitor list, or the one in ``text`` (YAML of the same shape)."""
    data = yaml.safe_load(read_text(RESOURCE) if text is None else text)
    return [
        Competitor(entry["key"], tuple(entry.get("names") or ()), tuple(entry.get("makers") or ()))
        for entry in data["competitors"]
    ]
