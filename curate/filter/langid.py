"""Language identification: Unicode script ratios by default, a fastText model on request.

Script ratios need no model and are exact for the question a Chinese/English
pipeline mostly asks ("is this Chinese, English, or something else?"): Han
letters are Chinese unless kana show it is Japanese, Hangul is Korean, Latin
is reported as ``en``. Telling English from French needs a trained model:
pass fastText's ``lid.176.bin``/``.ftz`` (or any fastText model with
``__label__xx`` labels) as ``--lid-model``.
"""

from __future__ import annotations

import re
from pathlib import Path

import regex

from thresher.curate.errors import ThresherError
from thresher.curate.text.measures import CJK_RANGES

# Units, as the heuristics count them: one CJK character, or one word of another script.
# The three checks every text gets use ``re`` (faster); the rarer scripts use ``regex``.
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


def script_language(text: str) -> tuple[str, float]:
    """(language, share of units in its script); ``("und", 0.0)`` for text without letters.

    A unit is a CJK character or a word of any other script, so "使用 Python 的
    pandas 库" is Chinese: a Han character carries about as much as a word.
    """
    total = len(_UNIT.findall(text))
    if not total:
        return "und", 0.0
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
    return lang, round(min(1.0, counts[lang] / total), 4)


class FastTextLanguageId:
    """A fastText language-ID model (``__label__en`` style labels), e.g. ``lid.176.ftz``."""

    def __init__(self, path: str | Path) -> None:
        self.model = load_fasttext(path, "--lid-model")

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(language, confidence) for each text."""
        lines = [" ".join(t.split()) for t in texts]
        labels, probs = self.model.predict(lines, k=1)
        return [(label[0].removeprefix("__label__"), round(float(prob[0]), 4)) for label, prob in zip(labels, probs)]


def load_fasttext(path: str | Path, flag: str):
    """Load a fastText model file, turning fastText's failures into a clear error."""
    import fasttext

    fasttext.FastText.eprint = lambda *_: None  # silence the load_model deprecation notice
    if not Path(path).is_file():
        raise ThresherError(f"{flag} {path}: no such model file")
    try:
        return fasttext.load_model(str(path))
    except ValueError as exc:
        raise ThresherError(f"{flag} {path}: not a fastText model ({exc})") from None
