"""The shared text helpers: one script detector.

Each test pins an edge case on which the helpers these replaced disagreed.
"""

from __future__ import annotations

import json

from thresher.curate.stats import file_stats
from thresher.curate.text.scripts import script_language, zh_or_en

# --- language by script -----------------------------------------------------------------------


def test_a_han_character_weighs_like_a_word():
    # counting characters, stats called this English (12 Latin letters against 4 Han)
    assert script_language("使用 Python 的 pandas 库") == ("zh", 0.6667)
    assert zh_or_en("使用 Python 的 pandas 库") == "zh"
    assert script_language("The Chinese for 'thank you' is 谢谢.").lang == "en"


def test_letters_of_an_unnamed_script_are_undecided_not_chinese():
    # the filter's detector reported ("zh", 0.0) when no script it names had a letter
    assert script_language("Բարեւ ձեզ") == ("und", 0.0)
    assert script_language("12345 !!") == ("und", 0.0)
    assert zh_or_en("Բարեւ ձեզ") == "en"


def test_min_share_turns_a_mixed_text_undecided():
    assert script_language("好的 OK sure") == ("zh", 0.5)  # a tie goes to Chinese
    assert script_language("好的 OK sure", min_share=0.6) == ("und", 0.5)
    assert script_language("日本の首都は東京です。", min_share=0.6).lang == "ja"


def test_stats_counts_languages_with_the_same_detector(tmp_path):
    rows = [{"text": "使用 Python 的 pandas 库"}, {"text": "日本の首都は東京です。"}, {"text": "plain English"}]
    path = tmp_path / "mix.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert file_stats(str(path))["languages"] == {"zh": 1, "en": 1, "other": 1}
