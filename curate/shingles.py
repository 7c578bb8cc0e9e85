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

Shingles are hashed to 32-bit integers in bulk with numpy (a token hash per
word, then a vectorised polynomial combination over the n-gram window), which
is what makes the MinHash step cheap; see ``minhash.py``.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence
from functools import cache

import numpy as np
import xxhash

#: Characters shingled one by one: CJK ideographs (with extensions and
#: compatibility forms), kana, Hangul, Bopomofo, and the ideographic
#: iteration marks 々〆〇.
CJK = (
    "\u2e80-\u2fdf\u3005-\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff"
    "\u3100-\u312f\u3131-\u318e\u31a0-\u31bf\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uf900-\ufaff\U00020000-\U0003134f"
)
#: A CJK run (group 1) or a word of any other script (group 2); everything else
#: (spaces, punctuation, symbols) separates tokens and is dropped.
_TOKEN_RE = re.compile(rf"([{CJK}]+)|([^\W_{CJK}]+)")
_CJK_RE = re.compile(rf"[{CJK}]")
_WORD_RE = re.compile(r"[^\W_]+")

DEFAULT_CJK_NGRAM = 3
DEFAULT_WORD_NGRAM = 5

_PAD = 0  # fills runs shorter than n; no CJK code point or (in practice) word hash is 0


@cache
def _punctuation_re() -> re.Pattern[str]:
    """Every Unicode punctuation character (categories P*), as one character class.

    Built once per process from ``unicodedata`` (a quarter of a second), so the
    exact key strips ``，。！“”`` as well as ``,.!"`` without a third-party regex engine.
    """
    ranges: list[str] = []
    start = None
    for code in range(sys.maxunicode + 2):
        is_punct = code <= sys.maxunicode and unicodedata.category(chr(code)).startswith("P")
        if is_punct and start is None:
            start = code
        elif not is_punct and start is not None:
            end = code - 1
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(end)) if end > start else ""))
            start = None
    return re.compile(f"[{''.join(ranges)}]+")


def normalize(text: str) -> str:
    """The text exact deduplication compares: NFKC, case-folded, no punctuation, single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_punctuation_re().sub("", folded).split())


def exact_key(text: str) -> int:
    """64-bit hash of ``normalize(text)``; a text that is all punctuation keys on itself."""
    normal = normalize(text) or " ".join(text.split())
    return xxhash.xxh3_64_intdigest(normal.encode("utf-8"))


def runs(text: str) -> list[tuple[bool, list[str] | str]]:
    """Script runs of ``text`` (NFKC, case-folded): ``(is_cjk, tokens)``.

    A CJK run is one string whose characters are its tokens, merged across the
    punctuation between them; a word run is a list of words.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    if _CJK_RE.search(folded) is None:  # the common case: no CJK at all
        words = _WORD_RE.findall(folded)
        return [(False, words)] if words else []
    out: list[tuple[bool, list[str] | str]] = []
    for cjk, word in _TOKEN_RE.findall(folded):
        if cjk:
            if out and out[-1][0]:
                out[-1] = (True, out[-1][1] + cjk)  # type: ignore[operator]
            else:
                out.append((True, cjk))
        elif out and not out[-1][0]:
            out[-1][1].append(word)  # type: ignore[union-attr]
        else:
            out.append((False, [word]))
    return out


class Shingler:
    """Turns texts into 32-bit shingle hashes, in batches.

    ``cjk_ngram`` characters per shingle inside CJK runs, ``word_ngram`` words
    per shingle inside other runs; a run shorter than n is one shingle.
    """

    def __init__(self, cjk_ngram: int = DEFAULT_CJK_NGRAM, word_ngram: int = DEFAULT_WORD_NGRAM) -> None:
        if cjk_ngram < 1 or word_ngram < 1:
            raise ValueError("n-gram sizes must be at least 1")
        self.cjk_ngram = cjk_ngram
        self.word_ngram = word_ngram
        rng = np.random.default_rng(0x5EED)
        # Odd 64-bit multipliers, one per window position, a different set per script.
        self._cjk_mult = rng.integers(0, 2**63, cjk_ngram, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._word_mult = rng.integers(0, 2**63, word_ngram, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._word_hash: dict[str, int] = {}

    def _word_tokens(self, words: list[str]) -> list[int]:
        """64-bit hashes of ``words``, through a per-process cache (most words repeat)."""
        cache = self._word_hash
        get = cache.get
        values = [get(w, 0) for w in words]
        if 0 in values:
            if len(cache) > 1_000_000:  # bound the cache on huge vocabularies
                cache.clear()
            for i, value in enumerate(values):
                if not value:
                    word = words[i]
                    values[i] = cache[word] = xxhash.xxh3_64_intdigest(word.encode("utf-8")) | 1
        return values

    def hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All shingle hashes of ``texts`` (uint32, grouped by text) and each text's count.

        A hash may repeat within a text (a repeated phrase); MinHash does not
        care and ``shingle_sets`` removes repeats.
        """
        cjk = _Windows(self.cjk_ngram)
        words = _Windows(self.word_ngram)
        for index, text in enumerate(texts):
            for is_cjk, tokens in runs(text):
                if is_cjk:
                    cjk.add(index, [ord(c) for c in tokens])
                else:
                    words.add(index, self._word_tokens(tokens))  # type: ignore[arg-type]
        parts = [cjk.hashes(self._cjk_mult), words.hashes(self._word_mult)]
        owner = np.concatenate([parts[0][1], parts[1][1]])
        values = np.concatenate([parts[0][0], parts[1][0]])
        order = np.argsort(owner, kind="stable")
        counts = np.bincount(owner, minlength=len(texts)).astype(np.int64)
        return values[order], counts

    def shingle_sets(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's distinct shingle hashes, sorted (for exact Jaccard)."""
        values, counts = self.hashes(texts)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [np.unique(values[bounds[i] : bounds[i + 1]]) for i in range(len(texts))]


class _Windows:
    """Token runs of one n-gram size, collected per batch and hashed at once."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.tokens: list[int] = []
        self.run_starts: list[int] = []
        self.run_lengths: list[int] = []
        self.run_owner: list[int] = []

    def add(self, owner: int, tokens: list[int]) -> None:
        if len(tokens) < self.n:
            tokens = tokens + [_PAD] * (self.n - len(tokens))
        self.run_starts.append(len(self.tokens))
        self.run_lengths.append(len(tokens))
        self.run_owner.append(owner)
        self.tokens.extend(tokens)

    def hashes(self, multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uint32 hash of every window, index of the text it belongs to)."""
        if not self.run_starts:
            return np.empty(0, np.uint32), np.empty(0, np.int64)
        tokens = np.array(self.tokens, dtype=np.uint64)
        lengths = np.array(self.run_lengths, dtype=np.int64)
        windows = lengths - self.n + 1
        total = int(windows.sum())
        first_window = np.cumsum(windows) - windows
        starts = np.repeat(np.array(self.run_starts, dtype=np.int64) - first_window, windows) + np.arange(total)
        acc = tokens[starts] * multipliers[0]
        for k in range(1, self.n):
            acc += tokens[starts + k] * multipliers[k]
        return (fmix64(acc) >> np.uint64(32)).astype(np.uint32), np.repeat(np.array(self.run_owner), windows)


def fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, element-wise: spreads every input bit over the output."""
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))
