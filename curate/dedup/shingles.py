"""Text keys for deduplication: the exact key and script-aware shingles.

Exact duplicates are found by hashing a normalised text: Unicode NFKC (so
full-width ``ＡＢＣ`` equals ``ABC``), case-folded, punctuation stripped and
whitespace collapsed.

Near duplicates are found on shingle sets, and the right shingle depends on
the script. Space-delimited text (English, Russian, ...) is compared on word
n-grams (default 5). Chinese, Japanese and Korean have no spaces, and treating a
whole clause as one "word" (what a whitespace tokenizer does) makes one
changed character change the whole clause, so CJK text is compared on
character n-grams (default 3). Mixed text is cut into script runs and each run
is shingled by its own rule: ``我喜欢用Python写代码`` gives the character
n-grams of ``我喜欢用`` and ``写代码`` and a word n-gram for ``python``.

A whole batch is tokenised and hashed by numpy, with no Python loop per word:
one table lookup classifies every character, a polynomial over its characters
hashes each word (a CJK character is its own code point), and a polynomial
over each n-token window, finished with MurmurHash3's mixer, gives the 32-bit
shingle hash that ``minhash.py`` consumes.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence
from functools import cache

import numpy as np
import xxhash

from thresher.curate.errors import ThresherError

#: Characters shingled one by one: CJK ideographs (with extensions and
#: compatibility forms), kana, Hangul, Bopomofo, and the ideographic
#: iteration marks 々〆〇.
CJK = (
    "\u2e80-\u2fdf\u3005-\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff"
    "\u3100-\u312f\u3131-\u318e\u31a0-\u31bf\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uf900-\ufaff\U00020000-\U000323af"
)
#: Past the first two Unicode planes there are only CJK ideographs (in ``CJK``), tags,
#: variation selectors and private use: no punctuation and no other letters or digits.
_SCANNED = 0x20000

DEFAULT_CJK_NGRAM = 3
DEFAULT_WORD_NGRAM = 5

_PAD = 0  # fills runs shorter than n; no CJK code point or (in practice) word hash is 0


def _char_class(low: int, high: int, category: str) -> str:
    """A regex character class body for the code points in [low, high) of a Unicode category."""
    ranges: list[str] = []
    start = None
    for code in range(low, high + 1):
        inside = code < high and unicodedata.category(chr(code)).startswith(category)
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            end = code - 1
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(end)) if end > start else ""))
            start = None
    return "".join(ranges)


@cache
def _punctuation_res() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Unicode punctuation (categories P*) as two patterns: the Basic Multilingual Plane, and beyond.

    Built once per process from ``unicodedata`` (a tenth of a second), so the
    exact key strips ``，。！“”`` as well as ``,.!"`` without a third-party regex
    engine. The split matters: ``re`` compiles a BMP-only class to a bitmap,
    while one astral range makes every character a linear scan (5x slower).
    """
    bmp = re.compile(f"[{_char_class(0, 0x10000, 'P')}]+")
    astral = re.compile(f"[{_char_class(0x10000, _SCANNED, 'P')}]+")
    return bmp, astral


def fold(text: str) -> str:
    """NFKC (full width to ASCII, compatibility forms to plain ones), then case-folded.

    Most text is already NFKC; the quick check is twenty times cheaper than normalising.
    """
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return text.casefold()


def normalize(text: str, folded: bool = False) -> str:
    """The text exact deduplication compares: NFKC, case-folded, no punctuation, single spaces."""
    text = text if folded else fold(text)
    bmp, astral = _punctuation_res()
    text = bmp.sub("", text)
    if not text.isascii() and max(text) > "\uffff":
        text = astral.sub("", text)
    return " ".join(text.split())


def exact_key(text: str, folded: bool = False) -> int:
    """64-bit hash of ``normalize(text)``; a text that is all punctuation keys on itself."""
    normal = normalize(text, folded) or " ".join(text.split())
    return xxhash.xxh3_64_intdigest(normal.encode("utf-8", "surrogatepass"))


@cache
def _char_classes() -> np.ndarray:
    """uint8 class of every code point: 0 separates tokens, ``_WORD`` is part of a word, ``_CJK`` is a token alone.

    Word characters are those ``str.isalnum`` accepts (what ``re``'s ``\\w`` means,
    less the underscore); CJK as in ``CJK``. One table lookup per character lets
    a whole batch be tokenised by numpy with no Python loop per word.
    """
    table = np.zeros(sys.maxunicode + 1, dtype=np.uint8)
    alnum = np.fromiter((chr(c).isalnum() for c in range(_SCANNED)), dtype=bool, count=_SCANNED)
    table[:_SCANNED][alnum] = _WORD
    for match in re.finditer(r"(.)(?:-(.))?", CJK):
        low, high = match.group(1), match.group(2) or match.group(1)
        table[ord(low) : ord(high) + 1] = _CJK
    return table


_WORD, _CJK = 1, 2


def prepare() -> None:
    """Build this module's lookup tables now: before forking workers, so they inherit them."""
    _punctuation_res()
    _char_classes()


class Shingler:
    """Turns texts into 32-bit shingle hashes, a whole batch at a time.

    Tokens: each CJK character, and each maximal run of other word characters.
    A script run is a sequence of tokens of one kind within a text, whatever
    spaces or punctuation lie between them (so CJK n-grams run across ``，``).
    Shingles are the ``cjk_ngram``-grams of CJK runs and the ``word_ngram``-grams
    of word runs; a run shorter than n is one shingle.
    """

    def __init__(self, cjk_ngram: int = DEFAULT_CJK_NGRAM, word_ngram: int = DEFAULT_WORD_NGRAM) -> None:
        if cjk_ngram < 1 or word_ngram < 1:
            raise ValueError("n-gram sizes must be at least 1")
        self.cjk_ngram = cjk_ngram
        self.word_ngram = word_ngram
        rng = np.random.default_rng(0x5EED)
        # Odd 64-bit multipliers: per character position in a word, and per token position in a window.
        self._char_mult = _odd(rng, _MAX_WORD)
        self._cjk_mult = _odd(rng, cjk_ngram)
        self._word_mult = _odd(rng, word_ngram)

    @classmethod
    def with_ngram(cls, ngram: int | None) -> Shingler:
        """One n for CJK characters and words alike (``--ngram``), or the defaults for None."""
        if ngram is not None and ngram < 1:
            raise ThresherError(f"--ngram must be at least 1, got {ngram}")
        return cls(ngram or DEFAULT_CJK_NGRAM, ngram or DEFAULT_WORD_NGRAM)

    def hashes(self, texts: Sequence[str], folded: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """All shingle hashes of ``texts`` (uint32, grouped by text) and each text's count.

        ``folded``: the texts already went through ``fold``. A hash may repeat
        within a text (a repeated phrase); MinHash does not care and
        ``shingle_sets`` removes repeats.
        """
        counts = np.zeros(len(texts), dtype=np.int64)
        if not texts:
            return np.empty(0, np.uint32), counts
        folded_texts = texts if folded else [fold(t) for t in texts]
        lengths = np.fromiter(map(len, folded_texts), dtype=np.int64, count=len(texts))
        # "surrogatepass": JSON may carry a lone surrogate (half an emoji); it is just another code point here.
        codes = np.frombuffer("".join(folded_texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        owner = np.repeat(np.arange(len(texts)), lengths)
        kind = _char_classes()[codes]
        new_text = np.r_[True, owner[1:] != owner[:-1]] if len(codes) else np.empty(0, bool)
        # Token starts: every CJK character, and a word character not continuing a word.
        starts = np.flatnonzero((kind == _CJK) | ((kind == _WORD) & (new_text | (np.r_[0, kind[:-1]] != _WORD))))
        token_kind = kind[starts]
        token_owner = owner[starts]
        token_value = codes[starts].astype(np.uint64)  # a CJK character's token is its code point
        words = token_kind == _WORD
        if words.any():
            token_value[words] = self._word_values(codes, kind, starts[words])
        # A run is broken by a change of token kind or of text.
        run_start = np.r_[True, (token_kind[1:] != token_kind[:-1]) | (token_owner[1:] != token_owner[:-1])]
        parts = []
        for which, n, mult in ((_CJK, self.cjk_ngram, self._cjk_mult), (_WORD, self.word_ngram, self._word_mult)):
            mine = token_kind == which
            if mine.any():
                parts.append(_windows(token_value[mine], run_start[mine], token_owner[mine], n, mult))
        if not parts:
            return np.empty(0, np.uint32), counts
        values = np.concatenate([p[0] for p in parts])
        owners = np.concatenate([p[1] for p in parts])
        order = np.argsort(owners, kind="stable")
        counts += np.bincount(owners, minlength=len(texts))
        return values[order], counts

    def _word_values(self, codes: np.ndarray, kind: np.ndarray, word_starts: np.ndarray) -> np.ndarray:
        """64-bit hash of each word starting at ``word_starts``: a polynomial over its characters."""
        inside = kind == _WORD
        # Each word character belongs to the word of the latest start at or before it.
        is_start = np.zeros(len(codes), dtype=bool)
        is_start[word_starts] = True
        positions = np.flatnonzero(inside)
        word_of = np.cumsum(is_start[positions]) - 1
        offset = positions - word_starts[word_of]
        mixed = codes[positions].astype(np.uint64) * self._char_mult[np.minimum(offset, _MAX_WORD - 1)]
        sums = np.add.reduceat(mixed, np.flatnonzero(is_start[positions]))
        word_length = np.diff(np.r_[np.flatnonzero(is_start[positions]), len(positions)]).astype(np.uint64)
        return fmix64(sums ^ word_length) | np.uint64(1)  # never _PAD

    def shingle_sets(self, texts: Sequence[str], folded: bool = False) -> list[np.ndarray]:
        """Each text's distinct shingle hashes, sorted (for exact Jaccard)."""
        values, counts = self.hashes(texts, folded)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [np.unique(values[bounds[i] : bounds[i + 1]]) for i in range(len(texts))]


_MAX_WORD = 64  # characters past this share the last position multiplier


def _odd(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.integers(0, 2**63, size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _windows(
    tokens: np.ndarray, run_start: np.ndarray, owner: np.ndarray, n: int, mult: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 hash of every n-token window inside a run, its text). Short runs are padded to one window."""
    first = np.flatnonzero(run_start)
    length = np.diff(np.r_[first, len(tokens)])
    windows = np.maximum(length - n + 1, 1)
    total = int(windows.sum())
    run_of_window = np.repeat(np.arange(len(first)), windows)
    begin = first[run_of_window] + (np.arange(total) - (np.cumsum(windows) - windows)[run_of_window])
    end = (first + length)[run_of_window]
    acc = np.zeros(total, dtype=np.uint64)
    for k in range(n):
        at = begin + k
        acc += np.where(at < end, tokens[np.minimum(at, len(tokens) - 1)], np.uint64(_PAD)) * mult[k]
    return (fmix64(acc) >> np.uint64(32)).astype(np.uint32), owner[first][run_of_window]


def fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, element-wise: spreads every input bit over the output."""
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))
