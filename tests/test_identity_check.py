"""The identity answer checks shared by synthesis and the identity probe."""

from __future__ import annotations

import pytest

from thresher.curate.text.identity import answer_language, check_answer, competitor_claim
from thresher.schemas import Identity

ME = Identity(name="小州", author="神州数码", name_en="Xiaozhou", author_en="Digital China")


@pytest.mark.parametrize(
    ("category", "answer", "lang"),
    [
        ("who", "我是小州，由神州数码开发的人工智能助手。", "zh"),
        ("name", "You can call me Xiaozhou.", "en"),
        ("author", "I was built by Digital China; I'm Xiaozhou.", "en"),
        ("author", "我是小州，神州数码开发了我。", "zh"),
        ("competitor", "不是的，我不是ChatGPT。我是小州，由神州数码开发。", "zh"),
        ("competitor", "No, I'm not Claude. I am Xiaozhou, developed by Digital China.", "en"),
        ("competitor", "I was not developed by OpenAI: I'm Xiaozhou.", "en"),
        ("capability", "I can write, translate and explain code.", "en"),
        ("limitation", "我无法联网获取实时信息。", "zh"),
        ("general", "The Great Wall is a series of fortifications in northern China.", "en"),
    ],
)
def test_good_answers_pass(category, answer, lang):
    result = check_answer(category, answer, ME, lang)
    assert result.passed, result.reasons


@pytest.mark.parametrize(
    ("category", "answer", "lang", "reason"),
    [
        ("who", "我是一个人工智能助手。", "zh", "missing_name"),
        ("author", "I'm Xiaozhou.", "en", "missing_author"),
        ("who", "I am ChatGPT, made by OpenAI.", "en", "claims_competitor:ChatGPT"),
        ("capability", "我是由OpenAI开发的，可以写代码。", "zh", "claims_competitor:OpenAI"),
        ("who", "I'm actually a version of GPT-4. I'm Xiaozhou.", "en", "claims_competitor:GPT-4"),
        ("casual", "我基于Llama，我叫小州。", "zh", "claims_competitor:Llama"),
        ("who", "I am Xiaozhou, developed by Digital China.", "zh", "wrong_language:en"),
        ("name", "我是小州。", "en", "wrong_language:zh"),
        ("competitor", "I am Xiaozhou, developed by Digital China.", "en", "no_denial"),
        ("who", "I am {{name}}.", "en", "placeholder"),
        ("general", "As Xiaozhou, I'd say the Great Wall is long.", "en", "names_itself"),
        ("who", "   ", "en", "blank"),
    ],
)
def test_bad_answers_fail_with_the_reason(category, answer, lang, reason):
    result = check_answer(category, answer, ME, lang)
    assert not result.passed and reason in result.reasons


def test_own_author_is_not_a_competitor():
    alibaba = Identity(name="通义千问", author="阿里巴巴")
    assert check_answer("author", "我是通义千问，由阿里巴巴开发。", alibaba, "zh").passed
    assert competitor_claim("我是由阿里开发的", ME) == "阿里"


def test_language_detection_ignores_names():
    assert answer_language("I am 小州, made by 神州数码.", ignore=["小州", "神州数码"]) == "en"
    assert answer_language("我不是ChatGPT，我是小州。") == "zh"
    assert answer_language("12345") is None


def test_an_english_answer_quoting_chinese_is_english():
    # the old rule wanted 80% Latin words for English, so quoting two Chinese words made it "unknown"
    assert answer_language("In Chinese, 'thank you' is 谢谢 and 'goodbye' is 再见.") == "en"
    assert answer_language("好的 OK sure") is None  # no language holds a clear majority


def test_general_answers_count_first_person_claims_only():
    knowledge = "ChatGPT was developed by OpenAI and released in 2022."
    assert check_answer("general", knowledge, ME, "en").passed
    assert not check_answer("general", "I am ChatGPT. The Great Wall is long.", ME, "en").passed
    unframed = check_answer("who", "你好！由OpenAI开发的AI助手小州很高兴为你服务。", ME, "zh")
    assert unframed.reasons == ["claims_competitor:OpenAI"]
