"""Which writing system a text is in: Han (Chinese), Latin (English) or other.

Counted by Unicode script of the letters, not by a language model: cheap,
deterministic, and what "language mix" needs for choosing a zh/en template
or summarising a zh/en training set. Latin script is reported as English
because that is what it is in the data thresher targets.
"""

from __future__ import annotations

import unicodedata

LANGUAGES = ("zh", "en", "other")


def _is_han(char: str) -> bool:
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF  # CJK Unified Ideographs
        or 0x3400 <= code <= 0x4DBF  # Extension A
        or 0x20000 <= code <= 0x2EBEF  # Extensions B-F
        or 0xF900 <= code <= 0xFAFF  # Compatibility Ideographs
    )


def language(text: str) -> str:
    """``zh`` when Han characters outnumber Latin letters and other letters, ``en`` when Latin
    letters lead, ``other`` otherwise (no letters at all, or another script leads)."""
    han = latin = other = 0
    for char in text:
        if _is_han(char):
            han += 1
        elif char.isascii():
            latin += char.isalpha()
        elif char.isalpha():
            if unicodedata.name(char, "").startswith("LATIN"):
                latin += 1
            else:
                other += 1
    if han and han >= latin and han >= other:
        return "zh"
    if latin and latin > other:
        return "en"
    return "other"
