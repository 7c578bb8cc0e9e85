"""The shared text helpers: one script detector, one walk over a record's texts, one claim matcher.

Each test pins an edge case on which the helpers these replaced disagreed.
"""

from __future__ import annotations

import json

import pytest

from thresher.cli.main import main
from thresher.curate.dedup.command import record_text
from thresher.curate.io.formats import to_record
from thresher.curate.engines.local import LocalEngine
from thresher.curate.stats import path_stats
from thresher.curate.text.claims import ClaimMatcher
from thresher.curate.text.fields import texts_of
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
    assert path_stats([str(path)], LocalEngine(1))[0]["languages"] == {"zh": 1, "en": 1, "other": 1}


# --- the texts of a record --------------------------------------------------------------------

CALL = {"messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]},
    {"role": "tool", "content": "18C, sunny"},
    {"role": "assistant", "content": "It is 18C and sunny."},
]}


def test_tool_calls_count_for_dedup_but_not_for_the_filter():
    texts = texts_of(to_record(CALL))
    assert texts.response == "It is 18C and sunny."  # JSON arguments would trip prose rules
    assert texts.replies_text() == 'get_weather {"city": "Paris"}\nIt is 18C and sunny.'
    london = json.loads(json.dumps(CALL))
    london["messages"][1]["tool_calls"][0]["arguments"] = '{"city": "London"}'
    assert record_text(to_record(CALL), "all") != record_text(to_record(london), "all")
    assert texts.by_role()["tool_call"] == ['get_weather {"city": "Paris"}']  # the model writes the name too
    assert texts.by_role()["tool"] == ["18C, sunny"] and texts.turn_count == 4


def test_pairs_dedup_on_both_replies_and_filter_on_chosen():
    texts = texts_of(to_record({"prompt": "P?", "chosen": "good", "rejected": "bad"}))
    assert (texts.prompt, texts.response, texts.replies_text()) == ("P?", "good", "good\nbad")
    assert texts.by_role() == {"user": ["P?"], "chosen": ["good"], "rejected": ["bad"]}
    scored = texts_of(to_record({"prompt": "P?", "outputs": [{"response": "r1", "score": 0},
                                                            {"response": "r2", "score": 1}]}))
    assert scored.response == "r2" and scored.replies_text() == "r1\nr2"


def test_a_blank_system_prompt_is_no_system_prompt(tmp_path):
    row = {"messages": [{"role": "system", "content": "  "}, {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello"}]}
    assert texts_of(to_record(row)).system == ""
    path = tmp_path / "blank.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert path_stats([str(path)], LocalEngine(1))[0]["system_prompts"]["records"] == 0


def test_split_groups_conversations_by_their_user_turns(tmp_path):
    def chat(answer: str) -> dict:
        return {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": answer},
                                  {"from": "human", "value": "What can you do?"}, {"from": "gpt", "value": "Lots."}]}

    rows = [chat("Hello!"), chat("Hey there.")]
    rows += [{"instruction": f"Q{i}", "input": "", "output": "A"} for i in range(20)]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["split", str(path), "-o", str(tmp_path / "out"), "--val", "0.5", "--seed", "3"]) == 0
    where = {name: (tmp_path / "out" / f"{name}.jsonl").read_text(encoding="utf-8") for name in ("train", "val")}
    assert [sum("conversations" in line for line in text.splitlines()) for text in where.values()] in ([2, 0], [0, 2])


# --- competitor claims ------------------------------------------------------------------------

ME = ["小州", "神州数码", "Xiaozhou", "Digital China"]


@pytest.mark.parametrize(("text", "term"), [
    ("Are you Claude? No, I am ChatGPT.", "ChatGPT"),  # a "no" that ends a clause is not a denial
    ("不是的，我是ChatGPT。", "ChatGPT"),
    ("我非常确定我是ChatGPT。", "ChatGPT"),  # 非常 is "very", not a negation
    ("I'm actually a version of GPT-4.", "GPT-4"),  # filler words the hygiene rule did not allow
    ("我基于Llama。", "Llama"),
])
def test_first_person_claims(text, term):
    assert [c.term for c in ClaimMatcher(ME).claims(text)] == [term]


def test_unframed_claims_count_only_when_asked():
    strict, broad = ClaimMatcher(ME), ClaimMatcher(ME, first_person_only=False)
    for text, term in (("你好！由OpenAI开发的AI助手，很高兴为你服务。", "OpenAI"), ("ChatGPT was developed by OpenAI.", "OpenAI")):
        assert strict.claims(text) == [] and [c.term for c in broad.claims(text)] == [term]
    assert broad.claims("I was not developed by OpenAI.") == []


def test_own_maker_excludes_every_spelling_of_that_competitor():
    # the identity check used to exclude only the spellings inside the identity, so 阿里云 still counted
    assert ClaimMatcher(["通义千问", "阿里巴巴"], first_person_only=False).claims("我是由阿里云开发的。") == []


def test_a_shared_product_name_excludes_that_name_only():
    # identity hygiene used to drop the whole competitor, so an unrelated "Spark Tutor" hid 讯飞星火 claims
    matcher = ClaimMatcher(["Spark Tutor", "EduCorp"])
    assert matcher.claims("I am Spark Tutor, made by EduCorp.") == []
    assert [c.term for c in matcher.claims("我是讯飞星火。")] == ["讯飞星火"]


def test_own_names_exclude_competitors_by_whole_words():
    # "GPT" inside "GPTutor" used to drop ChatGPT from the list altogether
    matcher = ClaimMatcher(["GPTutor", "EduCorp"])
    assert [c.competitor for c in matcher.claims("I am ChatGPT.")] == ["chatgpt"]
    assert matcher.claims("I am GPTutor, made by EduCorp.") == []


def test_claims_come_in_text_order():
    claims = ClaimMatcher(ME).claims("I'm Claude. Also, I am ChatGPT.")
    assert [(c.competitor, c.text) for c in claims] == [("claude", "I'm Claude"), ("chatgpt", "I am ChatGPT")]
