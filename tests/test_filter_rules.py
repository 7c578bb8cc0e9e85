"""Every default heuristic rule, kept and removed cases side by side, in English and Chinese."""

from __future__ import annotations

import json
import random

import pytest

from thresher.curate.errors import InputError
from thresher.curate.io.formats import to_record
from thresher.curate.filter.heuristics import RULES, default_config, load_rules
from thresher.curate.text.fields import texts_of

RULESET = load_rules()

LONG_EN = (
    "Photosynthesis is the process by which green plants turn light into chemical energy. "
    "The leaves take in carbon dioxide from the air and water from the roots, and with the energy "
    "of sunlight they make glucose and release oxygen. This happens in the chloroplasts, which hold "
    "the green pigment chlorophyll that absorbs red and blue light."
)
LONG_ZH = (
    "光合作用是绿色植物利用光能把二氧化碳和水转化为有机物并释放氧气的过程。叶片中的叶绿体含有叶绿素，"
    "它能够吸收红光和蓝光，为整个反应提供能量。这个过程不仅为植物自身提供养分，也为地球上几乎所有生物提供了食物和氧气。"
)

# Chinese written with spaces between phrases: 60 whitespace "words" of 12 characters each,
# varied so that no other rule objects. Word rules would misjudge it; they must not run.
_rng = random.Random(7)
SPACED_ZH = " ".join("".join(chr(_rng.randrange(0x4E00, 0x9FA5)) for _ in range(11)) + "。" for _ in range(60))


def judge(response: str, prompt: str = "Explain the topic.", ruleset=RULESET):
    record = to_record({"instruction": prompt, "input": "", "output": response}, context={"allow_placeholders": True})
    return ruleset.check(texts_of(record))


def failed(response: str, prompt: str = "Explain the topic.", ruleset=RULESET) -> dict[str, dict]:
    return {f.rule: f.detail for f in judge(response, prompt, ruleset)[1]}


# (rule, language, prompt, a response the rule keeps, a response it removes)
CASES = [
    ("length", "en", "Write a story.", LONG_EN, "word " * 7000),
    ("length", "zh", "写一个故事。", LONG_ZH, "好" * 33000),
    ("empty_answer", "en", "What is 2+2?", "4", "N/A"),
    ("empty_answer", "zh", "二加二等于几？", "四。", "。。。"),
    ("control_chars", "en", "Say hi.", "Hello,\tworld!\nBye.", "Hello\x00 world\x1b[0m."),
    ("control_chars", "zh", "打个招呼。", "你好，\t世界！\n再见。", "你好\x07世界\x00。"),
    ("mojibake", "en", "Describe the café.", "The café served crème brûlée.", "The cafÃ© served crÃ¨me brÃ»lÃ©e."),
    ("mojibake", "zh", "介绍一下你自己。", "我是一个乐于助人的助手。", "锟斤拷锟斤拷烫烫烫，我是一个助手。"),
    ("placeholder", "en", "Who are you?", "In Python, f'{name}' inserts a variable.", "I am {{name}}, made by {{author}}."),
    ("placeholder", "en", "Show a Vue binding.", "Write <p>{{ message }}</p> to render the message.", "Hi, I am <NAME>."),
    ("placeholder", "zh", "你是谁？", "我是小州，由神州数码开发。", "我是XXX，由XXX开发的人工智能助手。"),
    ("refusal", "en", "Tell me a joke.", "Why did the scarecrow win an award? He was outstanding in his field.",
     "As an AI language model, I cannot tell jokes."),
    ("refusal", "zh", "讲个笑话。", "小明问爸爸：为什么海是咸的？爸爸说：因为鱼在里面哭。",
     "作为一个AI语言模型，我无法讲笑话。"),
    ("repeats_question", "en", "What is the capital of France?", "The capital of France is Paris.",
     "What is the capital of France?"),
    ("repeats_question", "zh", "法国的首都是哪里？", "法国的首都是巴黎。", "法国的首都是哪里？"),
    ("truncated", "en", "Explain photosynthesis.", LONG_EN, LONG_EN + " Without it, life on Earth would"),
    ("truncated", "zh", "解释光合作用。", LONG_ZH, LONG_ZH + "此外，光合作用还影响着大气中的二氧化碳含量，"),
    ("repeated_lines", "en", "List some fruits.", "- apples: red and sweet\n- bananas: rich in potassium\n- oranges: full of vitamin C\n- grapes: make wine\n- melons: cool in summer",
     "\n".join(["- apples are red and sweet"] * 6 + ["- pears"])),
    ("repeated_lines", "zh", "列出一些水果。", "- 苹果：又红又甜\n- 香蕉：富含钾\n- 橙子：维生素C多\n- 葡萄：可以酿酒\n- 西瓜：夏天解渴",
     "\n".join(["- 苹果又红又甜"] * 6 + ["- 梨"])),
    ("repeated_ngrams", "en", "Write a poem.", LONG_EN, "I love you so much my dear. " * 20),
    ("repeated_ngrams", "zh", "写一首诗。", LONG_ZH, "我爱你中国我爱你中国" * 10),
    ("symbol_ratio", "en", "Rate the movie.", "I would rate it four out of five stars: a charming, well-acted film.",
     "Rating: ★★★★☆ ♥♥♥♥♥ ☺☺☺☺☺ $$$$$ ★★★★★ ♥♥♥♥♥ ☺☺☺☺☺ #### ★★★★★ great"),
    ("symbol_ratio", "zh", "给电影打分。", "我会给这部电影打四颗星，它的表演很出色，故事也很温暖。",
     "评分：★★★★☆ ♥♥♥♥♥ ☺☺☺☺☺ ￥￥￥￥￥ ★★★★★ ♥♥♥♥♥ ☺☺☺☺☺ #### ★★★★★ 好"),
    ("non_text_ratio", "en", "Any comment?", "It was a long day, but the meeting went well overall.",
     "ok!!!!!! ...... ?????? ------ ,,,,,, ;;;;;; ...... !!!!!! ?????? ------ yes"),
    ("non_text_ratio", "zh", "有什么评论？", "今天很漫长，但会议总体上进行得很顺利。",
     "好！！！！！！。。。。。。？？？？？？——————，，，，，，；；；；；；。。。。。。！！！！！！是"),
    ("url_markup_lines", "en", "Tell me about cats.", "Cats are small carnivorous mammals.\nThey purr.\nThey sleep a lot.",
     "See:\nhttps://example.com/cats\n<div class='x'></div>\nhttps://example.org/more-cats\n<br/>"),
    ("url_markup_lines", "zh", "介绍一下猫。", "猫是小型食肉哺乳动物。\n它们会发出呼噜声。\n它们很爱睡觉。",
     "参见：\nhttps://example.com/cats\n<div class='x'></div>\nhttps://example.org/more-cats\n<br/>"),
    ("mean_word_length", "en", "Explain photosynthesis.", LONG_EN,
     " ".join(["a3f9c8e7d6b5a4f3c2e1d0b9a8f7"] * 55) + " the and of to"),
    # Chinese has no spaces: whitespace "words" would be whole sentences; the rule must not run.
    ("mean_word_length", "zh", "解释光合作用。", SPACED_ZH, None),
    ("stop_words", "en", "Explain photosynthesis.", LONG_EN,
     " ".join(f"keyword{i} cheap deals discount offer" for i in range(14))),
    ("stop_words", "zh", "解释光合作用。", SPACED_ZH, None),
    ("alpha_words", "en", "Explain photosynthesis.", LONG_EN,
     "numbers: " + " ".join(str(i * 7919) for i in range(60)) + " done"),
    ("alpha_words", "zh", "解释光合作用。", SPACED_ZH, None),
]


# What the field's quality filters remove and a filter must too, however short the reply; and
# the look-alikes that must stay: (prompt, response, the rule that removes it, or None to keep).
SHORT_AND_BROKEN = [
    ("Say something nice.", "I love you. I love you. I love you. I love you.", "repeated_ngrams"),
    ("说点好听的。", "你好你好你好你好你好你好", "repeated_ngrams"),
    ("Rate it.", "好好好好好好好好好好好好", "repeated_ngrams"),
    ("Rate it.", "aaaaaaaaaaaaaaaaaaaaa", "repeated_ngrams"),
    ("推荐一个网站。", "点击这里" * 11, "repeated_ngrams"),
    ("推荐一个网站。", " ".join(["点击这里"] * 11), "repeated_ngrams"),
    ("Give me a link to read more.", "https://example.com/some/page?id=3", None),  # the prompt asks for it
    ("Explain gravity.", "https://example.com/some/page?id=3", "url_markup_lines"),
    ("介绍一下引力。", "www.example.com", "url_markup_lines"),
    ("What is the capital of France?", "The capital of France is the", "truncated"),
    ("How do I make tea?", "Boil water and pour it over the leaves, then wait three minutes because", "truncated"),
    ("怎么泡茶？", "要泡茶，先把水烧开，然后倒在茶叶上，等待三分钟，因为", "truncated"),
    ("什么是光合作用？", "光合作用是植物把光能转化为化学能的过程，它发生在叶绿体中，并且", "truncated"),
    ("Write a welcome line.", "Hello {{product}} user, welcome aboard!", "placeholder"),
    ("写一句欢迎语。", "欢迎使用{{产品名}}！", "placeholder"),
    # kept
    ("What is the capital of France?", "Paris", None),
    ("Tell me a joke.", "哈哈哈哈哈哈哈哈，太好笑了", None),
    ("Sing a nursery rhyme.", "Row, row, row your boat, gently down the stream. Merrily, merrily, merrily, merrily, "
                              "life is but a dream.", None),
    ("背一首乐府诗。", "江南可采莲，莲叶何田田。鱼戏莲叶间。鱼戏莲叶东，鱼戏莲叶西，鱼戏莲叶南，鱼戏莲叶北。", None),
    ("Where are the docs?", "See https://docs.python.org for details.", None),
    ("Show a Vue binding.", "Write <p>{{ message }}</p> to render the message.", None),
    ("Show a Jinja loop.", "{% for item in items %}{{ item }}{% endfor %}", None),
    ("List two fruits.", "- apples and\n- pears or", None),
    ("What's 600 + 66?", "666", None),
]


@pytest.mark.parametrize(("prompt", "response", "rule"), SHORT_AND_BROKEN, ids=[c[1][:24] for c in SHORT_AND_BROKEN])
def test_short_loops_cut_off_replies_spam_urls_and_slots(prompt, response, rule):
    found = failed(response, prompt)
    if rule is None:
        assert found == {}, f"must keep {response[:40]!r}; failed: {found}"
    else:
        assert rule in found, f"{rule} must remove {response[:40]!r}; failed: {found}"


def test_repeated_paragraphs_count_like_lines():
    paragraph = "Photosynthesis turns light into chemical energy, and the leaves release oxygen."
    text = "\n\n".join([paragraph] * 4 + ["That is all."])
    measured = judge(text)[0]["repeated_lines"]["response"]
    assert (measured["paragraph_fraction"], measured["line_fraction"]) == (0.6, 0.6)
    assert "repeated_lines" in failed(text)


def test_every_default_rule_has_cases_in_both_languages():
    covered = {(rule, lang) for rule, lang, *_ in CASES}
    assert {(rule, lang) for rule in RULES for lang in ("en", "zh")} <= covered


@pytest.mark.parametrize(("rule", "lang", "prompt", "kept", "removed"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_rule_keeps_and_removes(rule, lang, prompt, kept, removed):
    assert failed(kept, prompt) == {}, f"{rule} ({lang}) must keep: {kept[:60]!r}"
    if removed is None:  # a word rule on Chinese: it must not even be measured
        scores, _ = judge(kept, prompt)
        assert rule not in scores
        return
    found = failed(removed, prompt)
    assert rule in found, f"{rule} ({lang}) must remove {removed[:60]!r}; failed: {found}"
    assert "value" in found[rule] and found[rule]["field"] == "response"


def test_word_rules_would_misfire_on_chinese_without_the_script_check():
    # Proof that the guard matters: measured as if spaced, Chinese looks like one giant word.
    from thresher.curate.text import measures as ts

    words = ts.words(SPACED_ZH)
    assert len(words) >= 50 and sum(map(len, words)) / len(words) > 10
    assert not ts.is_spaced(SPACED_ZH, len(ts.units(SPACED_ZH)))
    assert ts.is_spaced(LONG_EN, len(ts.units(LONG_EN)))


def test_kept_record_scores_name_the_measures():
    scores, findings = judge(LONG_EN)
    assert findings == []
    assert scores["length"]["response"] == len(LONG_EN)
    assert scores["repeated_ngrams"]["response"]["script"] == "spaced"
    assert 0 <= scores["symbol_ratio"]["response"] < 0.35
    zh_scores, _ = judge(LONG_ZH * 2, "解释光合作用。")
    assert zh_scores["repeated_ngrams"]["response"]["script"] == "cjk"


def test_code_blocks_are_not_judged_as_prose():
    code = "```python\n" + "\n".join(["    }"] * 10 + ["x = [i ** 2 for i in range(10)]"] * 4) + "\n```"
    answer = "Here is the code:\n\n" + code + "\n\nIt prints the squares of the numbers."
    assert failed(answer, "Write some code.") == {}
    assert "repeated_lines" in failed(code.strip("`python\n"), "Write some code.")


def test_truncation_leaves_lists_titles_and_short_answers_alone():
    for answer in ("Paris", '"A Tale of Two Cities"', "- apples\n- pears\n- plums", "2x5=10\n3x5=15\n4x5=20"):
        assert "truncated" not in failed(answer)


def test_markup_is_fine_when_the_prompt_asks_for_it():
    html = "<table>\n  <tr>\n    <td>John</td>\n  </tr>\n</table>"
    assert "url_markup_lines" not in failed(html, "Make an HTML table of the names.")
    assert "url_markup_lines" in failed(html, "Who is in the team?")


# --- YAML overrides ------------------------------------------------------------------------


def test_yaml_threshold_override(tmp_path):
    symbols = "Rating: ★★★★☆ ♥♥♥♥♥ ☺☺☺☺☺ $$$$$ ★★★★★ ♥♥♥♥♥ ☺☺☺☺☺ #### ★★★★★ great"
    rules = tmp_path / "rules.yaml"
    rules.write_text("symbol_ratio: {max: 0.95}\nnon_text_ratio: {max: 0.99}\n", encoding="utf-8")
    assert "symbol_ratio" in failed(symbols)
    assert "symbol_ratio" not in failed(symbols, ruleset=load_rules(rules))


def test_yaml_turns_a_rule_off_and_changes_fields(tmp_path):
    refusal = "As an AI language model, I cannot tell jokes."
    off = tmp_path / "off.yaml"
    off.write_text("refusal:\n  enabled: false\n", encoding="utf-8")
    assert failed(refusal, ruleset=load_rules(off)) == {}
    prompt_too = tmp_path / "prompt.yaml"
    prompt_too.write_text("placeholder:\n  fields: [prompt]\n", encoding="utf-8")
    found = failed("A fine answer.", "Greet {{name}} please.", ruleset=load_rules(prompt_too))
    assert found["placeholder"] == {"field": "prompt", "value": "{{name}}"}


def test_yaml_lists_replace_and_bounds_merge(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "refusal:\n  patterns: ['i refuse']\nlength:\n  bounds:\n    response: {min: 20, max: 1000}\n",
        encoding="utf-8",
    )
    custom = load_rules(rules)
    assert "refusal" not in failed("As an AI language model, I cannot tell jokes.", ruleset=custom)
    assert failed("I refuse to answer that question today.", ruleset=custom)["refusal"]["value"] == "I refuse"
    assert failed("Paris.", ruleset=custom)["length"] == {"field": "response", "value": 6, "min": 20}
    assert custom.config["length"]["bounds"]["prompt"] == default_config()["length"]["bounds"]["prompt"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("symbol_ration: {max: 0.5}\n", "unknown rule 'symbol_ration'"),
        ("symbol_ratio: {maxx: 0.5}\n", "symbol_ratio.maxx"),
        ("symbol_ratio: {max: lots}\n", "symbol_ratio.max"),
        ("refusal: {patterns: ['(unclosed']}\n", "bad regular expression"),
        ("- a list\n", "must be a mapping"),
        ("a: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_rules_file_is_a_clear_error(tmp_path, text, message):
    rules = tmp_path / "rules.yaml"
    rules.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("[", r"\[")) as info:
        load_rules(rules)
    assert str(rules) in str(info.value)


def test_defaults_ship_as_package_data():
    from importlib.resources import files

    assert files("thresher.prompts").joinpath("filter_rules.yaml").is_file()
    assert set(default_config()) == set(RULES)


# --- the peer demo data --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alpaca_en_demo.json", "alpaca_zh_demo.json"])
def test_defaults_remove_under_five_percent_of_alpaca_demo(peer_data, name):
    rows = json.loads((peer_data / name).read_text(encoding="utf-8"))
    removed = {}
    for index, row in enumerate(rows):
        findings = judge(row["output"], f"{row['instruction']}\n{row['input']}".strip())[1]
        if findings:
            removed[index] = findings[0].rule
    assert len(removed) < 0.05 * len(rows)
    # What goes is boilerplate, cut-off answers and template slots, not good answers (see the report).
    assert set(removed.values()) <= {"refusal", "truncated", "placeholder"}


def test_defaults_remove_only_junk_from_the_c4_demo(peer_data):
    removed = {}
    for index, line in enumerate((peer_data / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        findings = RULESET.check(texts_of(to_record(json.loads(line))))[1]
        if findings:
            removed[index] = findings[0].rule
    # Five mojibake pages, the "Access All Records Of 213-484-0480" spam page and a navigation fragment
    # whose last two lines repeat ("// TODO: The todos are also highlighted!").
    assert len(removed) <= 0.03 * 300 and set(removed.values()) <= {"mojibake", "repeated_ngrams"}


def test_word_rules_spare_other_latin_languages_and_requested_arithmetic():
    spanish = (
        "El Tribunal Superior de Irlanda y el Tribunal Constitucional de Austria solicitan al Tribunal de Justicia "
        "que examine la validez de la directiva, en particular a la luz de dos derechos fundamentales de la Carta: "
        "el derecho al respeto de la vida privada y el derecho a la protección de los datos personales. La directiva "
        "obliga a los proveedores a conservar los datos de tráfico y de localización durante un periodo determinado."
    )
    assert failed(spanish, "Translate the paragraph into Spanish.") == {}
    working = "94962 × 4694 = 43957319824\n\n" + "\n".join(
        f"= {a} × {b} + {c} × {d}" for a, b, c, d in zip(range(90000, 90020), range(4000, 4020), range(10, 30), range(5, 25))
    )
    assert failed(working, "Compute 94962 × 4694 step by step.") == {}
    assert "alpha_words" in failed(working, "Tell me a story about a dragon.")


def test_unless_prompt_matches_works_for_any_rule(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("refusal: {unless_prompt_matches: 'role-play an AI'}\n", encoding="utf-8")
    custom = load_rules(rules)
    refusal = "As an AI language model, I cannot feel emotions."
    assert failed(refusal, "Please role-play an AI from the 1980s.", ruleset=custom) == {}
    assert "refusal" in failed(refusal, "How do you feel?", ruleset=custom)


def test_rule_hooks_are_abstract_and_every_shipped_rule_fills_them():
    """A rule is measure + failure; a base that forgets one cannot be built, and no shipped rule forgets."""
    import inspect

    from thresher.curate.filter.rules.base import Rule
    from thresher.curate.filter.rules.shape import WordRule

    assert Rule.__abstractmethods__ == {"measure", "failure"}
    assert "_value" in WordRule.__abstractmethods__
    with pytest.raises(TypeError, match="abstract"):
        WordRule(enabled=True, fields=["response"], min_words=1)
    config = default_config()
    for name, rule in RULES.items():
        assert not inspect.isabstract(rule), name
        assert rule.model_validate(config[name]).name == name
