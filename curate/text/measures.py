"""Measures of one text that the heuristic rules compare against thresholds.

Web-corpus rules (Gopher, C4, FineWeb) count *words*, which Chinese does not
delimit with spaces. Every measure here therefore works on *units*: a word in
space-delimited text, a single character in CJK text. Word-only measures (mean
word length, stop words) are applied by the rules only when ``is_spaced`` says
the text is space-delimited.

Counting runs in C: the stdlib ``re`` with explicit CJK ranges for the hot
measures (it is about twice as fast as ``regex`` there), and ``regex``
Unicode categories (``\\p{S}``, ``\\p{Cc}``) where ``re`` has no equivalent.
"""

from __future__ import annotations

import re
from collections import Counter

import regex

#: CJK ideographs (with extensions and compatibility forms), kana and Hangul, as ``re`` ranges.
CJK_RANGES = (
    "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3040-\u30ff\u3131-\u318e\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
CJK_RE = re.compile(f"[{CJK_RANGES}]")
CJK_RUN_RE = re.compile(f"[{CJK_RANGES}]+")
#: One unit: a CJK character, or a non-CJK word (letters/digits, inner ' and - allowed).
_WORD_CHAR = f"[^\\W{CJK_RANGES}]"
UNIT_RE = re.compile(f"[{CJK_RANGES}]|{_WORD_CHAR}+(?:['’-]{_WORD_CHAR}+)*")
#: Runs (``+``) so that counting is one C scan and few Python strings.
TEXT_CHAR_RE = re.compile(r"[^\W_]+")
SYMBOL_RE = regex.compile(r"[\p{S}#]+")
CONTROL_RE = regex.compile(r"[\p{Cc}--[\t\n\r]]", flags=regex.V1)
URL_RE = regex.compile(r"(?:https?://|ftp://|www\.)\S+", flags=regex.IGNORECASE)
MARKUP_RE = regex.compile(r"<[^<>\n]{1,200}>|&[a-zA-Z]{2,8};|&#\d{1,6};|\[/?[a-z]{1,10}\]")
ALPHA_TOKEN_RE = re.compile(r"\S*[^\W\d_]\S*")
#: Punctuation stripped from word edges (ASCII and the common CJK/typographic marks).
EDGE_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’…—–«»，。！？；：、（）《》【】「」"


CODE_BLOCK_RE = re.compile(r"```.*?(?:```|\Z)", flags=re.DOTALL)


def prose(text: str) -> str:
    """``text`` without fenced code blocks: code is not prose, and prose statistics misjudge it."""
    return CODE_BLOCK_RE.sub("\n", text) if "```" in text else text


def non_space(text: str) -> int:
    """Characters that are not whitespace."""
    return sum(map(len, text.split()))


def count(pattern: re.Pattern[str] | regex.Pattern[str], text: str) -> int:
    """Characters matched by ``pattern`` (a character class with ``+``)."""
    return sum(map(len, pattern.findall(text)))


def is_spaced(text: str, unit_count: int, max_cjk: float = 0.1) -> bool:
    """True when ``text`` (of ``unit_count`` units) is written in a space-delimited script.

    Measured on units (each CJK character is one), so a Chinese list of English
    terms ("镍（Nickel, Ni）") counts as Chinese while an English answer quoting
    one Chinese word stays English.
    """
    return count(CJK_RUN_RE, text) <= max_cjk * unit_count if unit_count else True


def units(text: str) -> list[str]:
    """Words of space-delimited text and single characters of CJK text, in order."""
    return UNIT_RE.findall(text)


_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def duplicate_lines(text: str) -> tuple[float, float, int]:
    """(share of lines that repeat an earlier line, share of characters in them, line count).

    Gopher's two repetition measures, on stripped non-empty lines.
    """
    return _duplicates(text.splitlines())


def duplicate_paragraphs(text: str) -> tuple[float, float, int]:
    """The same two measures on paragraphs (blocks separated by blank lines), as Gopher also takes them."""
    return _duplicates(_PARAGRAPH_BREAK.split(text))


def _duplicates(pieces: list[str]) -> tuple[float, float, int]:
    lines = [piece.strip() for piece in pieces if piece.strip()]
    seen: set[str] = set()
    dup_lines = dup_chars = 0
    for line in lines:
        if line in seen:
            dup_lines += 1
            dup_chars += len(line)
        else:
            seen.add(line)
    total_chars = sum(len(line) for line in lines)
    if not lines:
        return 0.0, 0.0, 0
    return dup_lines / len(lines), dup_chars / total_chars, len(lines)


_LETTER_RE = re.compile(r"[^\W\d_]")


def top_char_fraction(text: str) -> tuple[float, int]:
    """(share of the letters that are the most frequent one, letter count); case-folded.

    What a short loop of one character looks like ("aaaaaaaa", "嗯嗯嗯嗯嗯嗯"): the
    word and n-gram measures cannot see it, since it is one word or too few units.
    """
    letters = _LETTER_RE.findall(text.casefold())
    if not letters:
        return 0.0, 0
    return Counter(letters).most_common(1)[0][1] / len(letters), len(letters)


def top_ngram_fraction(tokens: list[str], n: int) -> float:
    """Characters covered by the most frequent ``n``-gram, as a share of all unit characters."""
    if len(tokens) < n:
        return 0.0
    counts = Counter(zip(*(tokens[i:] for i in range(n))))
    gram, count = counts.most_common(1)[0]
    if count < 2:
        return 0.0
    total = sum(map(len, tokens))
    return count * sum(map(len, gram)) / total


def duplicate_ngram_fraction(tokens: list[str], n: int) -> float:
    """Characters inside ``n``-grams that occur more than once, as a share of all unit characters.

    Overlapping repeats are counted once: the scan jumps past a repeated
    ``n``-gram, as Gopher's definition (and datatrove's implementation) do.
    """
    if len(tokens) < 2 * n:
        return 0.0
    grams = list(zip(*(tokens[i:] for i in range(n))))
    counts = Counter(grams)
    if len(counts) == len(grams):
        return 0.0  # every n-gram is unique: the common case, no scan needed
    lengths = list(map(len, tokens))
    total = sum(lengths)
    covered = 0
    index = 0
    while index < len(grams):
        if counts[grams[index]] > 1:
            covered += sum(lengths[index : index + n])
            index += n
        else:
            index += 1
    return covered / total


def url_markup_lines(text: str) -> tuple[float, int]:
    """(share of non-empty lines that are mostly URLs or markup, line count).

    A line is "mostly" URL or markup when less than a third of its non-space
    characters remain after removing URLs, tags and entities.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return 0.0, 0
    flagged = 0
    for line in lines:
        if "<" not in line and "&" not in line and "[" not in line and "://" not in line and "www." not in line:
            continue
        remaining = non_space(MARKUP_RE.sub("", URL_RE.sub("", line)))
        if remaining < non_space(line) / 3:
            flagged += 1
    return flagged / len(lines), len(lines)


def words(text: str) -> list[str]:
    """Whitespace-separated words with edge punctuation stripped (empty ones dropped)."""
    stripped = (w.strip(EDGE_PUNCT) for w in text.split())
    return [w for w in stripped if w]


def alpha_tokens(tokens: list[str]) -> int:
    """How many of ``tokens`` (words without spaces) contain a letter."""
    return len(ALPHA_TOKEN_RE.findall(" ".join(tokens)))
