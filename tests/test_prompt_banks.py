"""The packaged prompts: LangGPT templates, question banks, the held-out eval sets."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from thresher.prompts.banks import (
    CATEGORIES,
    LANGS,
    eval_questions,
    general_prompts,
    identity_answers,
    identity_questions,
    render,
    template,
)


def norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).casefold()


@pytest.mark.parametrize("lang", LANGS)
def test_question_banks_are_large_distinct_and_cover_every_category(lang):
    bank = identity_questions(lang)
    assert len({norm(row["question"]) for row in bank}) == len(bank) >= 150
    assert {row["category"] for row in bank} == set(CATEGORIES)
    competitors = {row["competitor"] for row in bank if row["category"] == "competitor"}
    wanted = {"ChatGPT", "GPT-4", "Claude", "Llama"} | ({"通义千问", "文心一言", "ChatGLM"} if lang == "zh" else {"Qwen", "ERNIE Bot", "ChatGLM"})
    assert wanted <= competitors
    assert set(identity_answers(lang)) == set(CATEGORIES)


def test_eval_questions_are_held_out_categorised_and_bilingual():
    rows = eval_questions()
    per_lang = Counter(row["lang"] for row in rows)
    assert per_lang["zh"] >= 35 and per_lang["en"] >= 35
    bank = {norm(row["question"]) for lang in LANGS for row in identity_questions(lang)}
    assert not {norm(row["question"]) for row in rows} & bank, "eval questions must not be in the synthesis bank"
    assert {row["category"] for row in rows} >= {"who", "name", "author", "competitor", "capability", "limitation"}
    assert any(row["question"] == "你是ChatGPT吗?" for row in eval_questions("zh"))
    assert all(row.get("competitor") for row in rows if row["category"] == "competitor")


def test_general_prompts_are_bilingual_and_not_about_identity():
    rows = general_prompts()
    assert Counter(row["lang"] for row in rows) == {"zh": 20, "en": 20}
    assert not [row for row in rows if re.search(r"你是谁|who are you|your name", row["prompt"], re.I)]


@pytest.mark.parametrize("name", ["identity/system.zh.md", "identity/system.en.md", "synth/paraphrase.md", "synth/judge.md"])
def test_templates_are_langgpt_structured(name):
    text = template(name).text
    positions = [text.find(f"## {section}") for section in ("Profile", "Skills", "Rules", "Workflow", "Initialization")]
    assert text.startswith("# Role:") and -1 not in positions and positions == sorted(positions)


def test_render_refuses_a_missing_slot():
    assert render("I am {{name}} by {{ author }}", name="X", author="Y") == "I am X by Y"
    with pytest.raises(KeyError, match="author"):
        render("I am {{name}} by {{author}}", name="X")
