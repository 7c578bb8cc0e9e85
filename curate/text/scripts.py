"""Which language a text is in, read from the Unicode scripts of its letters.

One detector for every caller (stats, record formats, the language filter,
the identity check, synthesis and evaluation), so "is this Chinese?" gets
the same answer everywhere. It needs no model and is exact for the question
a Chinese/English pipeline mostly asks: Han characters are Chinese unless
kana show the text is Japanese, Hangul is Korean, Latin script is reported
as ``en`` (telling English from French needs a trained model: see
``thresher.curate.filter.langid.FastTextLanguageId``).

Letters are counted in *units*: one CJK character, or one word of any other
script, so "使用 Python 的 pandas 库" is Chinese: a Han character carries
about as much as a word. Counting characters instead would let two English
words outweigh a Chinese sentence.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import regex

from thresher.curate.text.measures import CJK_RANGES

#: The language code of text with no letters, or whose leading script holds too small a share.
UNDECIDED = "und"

# Units, as the heuristics count them: one CJK character, or one word of another script.
# The checks every text gets use ``re`` (faster); the rarer scripts use ``regex``.
_UNIT = re.compile(f"[{CJK_RANGES}]|[^\\W\\d_{CJK_RANGES}]+")
_HAN = re.compile("[\u2e80-\u2fdf\u3005\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LATIN = re.compile("[A-Za-z\u00c0-\u024f\u1e00-\u1eff]+")
_KANA = regex.compile(r"[\p{Hiragana}\p{Katakana}]")
#: Other scripts and the language reported for each.
_OTHER = {
    "ko": regex.compile(r"\p{Hangul}"),
    "ru": regex.compile(r"\p{Cyrillic}+"),
    "ar": regex.compile(r"\p{Arabic}+"),
    "hi": regex.compile(r"\p{Devanagari}+"),
    "th": regex.compile(r"\p{Thai}+"),
    "el": regex.compile(r"\p{Greek}+"),
    "he": regex.compile(r"\p{Hebrew}+"),
}


class ScriptLanguage(NamedTuple):
    """A language code (``zh``, ``en``, ``ja``, ... or ``und``) and the share of units in its script."""

    lang: str
    share: float


def script_language(text: str, min_share: float = 0.0) -> ScriptLanguage:
    """The language whose script holds the most units of ``text``, and that share.

    ``lang`` is ``und`` when ``text`` has no letters, or when the leading
    script holds less than ``min_share`` of the units: callers that must not
    guess (the identity check: "is this answer in the question's language?")
    pass a share, callers that only pick between templates leave it at 0.
    Ties go to Chinese, then English.
    """
    total = len(_UNIT.findall(text))
    if not total:
        return ScriptLanguage(UNDECIDED, 0.0)
    counts = {"zh": len(_HAN.findall(text)), "en": len(_LATIN.findall(text))}
    if counts["zh"] + counts["en"] < total:
        kana = len(_KANA.findall(text))
        if kana:
            counts["ja"] = kana + counts["zh"]
            if kana >= 0.2 * counts["ja"]:
                counts["zh"] = 0
        for lang, pattern in _OTHER.items():
            counts[lang] = len(pattern.findall(text))
    lang = max(counts, key=counts.__getitem__)
    share = round(min(1.0, counts[lang] / total), 4)
    if not counts[lang] or share < min_share:
        return ScriptLanguage(UNDECIDED, share)
    return ScriptLanguage(lang, share)


def zh_or_en(text: str) -> str:
    """``zh`` when Chinese leads ``text``, else ``en``: for choosing one of the two shipped templates."""
    return "zh" if script_language(text).lang == "zh" else "en"
