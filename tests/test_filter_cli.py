"""``thresher filter`` end to end: conservation, shapes, meta, score-only, identity hygiene."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thresher.curate.text.claims import ClaimMatcher
from thresher.prompts.competitors import load_competitors

GOOD_EN = {"instruction": "What is the capital of France?", "input": "", "output": "The capital of France is Paris."}
GOOD_ZH = {"instruction": "法国的首都是哪里？", "input": "", "output": "法国的首都是巴黎。"}
REFUSAL = {"instruction": "Tell me a joke.", "input": "", "output": "As an AI language model, I cannot tell jokes."}
PLACEHOLDER = {"instruction": "你是谁？", "input": "", "output": "我是{{name}}，由{{author}}开发。"}
BLANK = {"instruction": "Say something.", "input": "", "output": ""}
CLAIM_EN = {"instruction": "Who are you?", "input": "", "output": "I am ChatGPT, a large language model trained by OpenAI."}
CLAIM_ZH = {"instruction": "你是谁？", "input": "", "output": "我是通义千问，由阿里云开发的超大规模语言模型。"}
MENTION = {"instruction": "What is GPT-4?", "input": "",
           "output": "GPT-4 is a large language model that was released by OpenAI in March 2023."}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_conservation_shapes_and_reasons(tmp_path, thresher):
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [GOOD_EN, REFUSAL, GOOD_ZH, PLACEHOLDER, BLANK, "{broken json"])
    sharegpt = write_jsonl(tmp_path / "sharegpt.jsonl", [
        {"conversations": [{"from": "human", "value": "Hi!"}, {"from": "gpt", "value": "Hello! How can I help you today?"}]},
        {"conversations": [{"from": "human", "value": "讲个笑话"}, {"from": "gpt", "value": "作为一个AI语言模型，我无法讲笑话。"}]},
    ])
    messages = write_jsonl(tmp_path / "messages.jsonl", [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
        {"text": "A corpus document about rivers, lakes and the sea, long enough to pass."},
    ])
    out = tmp_path / "out.jsonl"
    result = thresher("filter", alpaca, sharegpt, messages, "-o", out)
    assert result.returncode == 0, result.stderr
    kept = read_jsonl(out)
    removed = read_jsonl(tmp_path / "out.removed.jsonl")
    stats = json.loads((tmp_path / "out.stats.json").read_text())
    assert stats["in"] == 10 == len(kept) + len(removed) == stats["kept"] + stats["removed_total"]
    assert stats["removed"] == {"refusal": 2, "placeholder": 1, "invalid": 2}
    by_line = {(Path(r["file"]).name, r["line"]): r for r in removed}
    assert by_line[("alpaca.jsonl", 2)]["detail"] == {"field": "response", "value": "As an AI language model"}
    assert by_line[("alpaca.jsonl", 4)]["detail"]["value"] == "{{name}}"
    assert by_line[("alpaca.jsonl", 5)]["detail"] == {"field": "output", "error": "assistant content is blank"}
    assert by_line[("alpaca.jsonl", 6)]["record"] == "{broken json"
    assert by_line[("sharegpt.jsonl", 2)]["reason"] == "refusal"
    # Kept records keep the shape they came in, plus one meta key with the scores.
    assert {k for k in kept[0] if k != "meta"} == set(GOOD_EN)
    assert "conversations" in kept[2] and "messages" in kept[3] and "text" in kept[4]
    scores = kept[0]["meta"]["filter"]["scores"]
    assert scores["language"] == {"lang": "en", "confidence": 1.0}
    assert kept[1]["meta"]["filter"]["scores"]["language"]["lang"] == "zh"
    assert scores["length"]["response"] == len(GOOD_EN["output"])


def test_score_only_keeps_everything_with_what_it_would_fail(tmp_path, thresher):
    data = write_jsonl(tmp_path / "in.jsonl", [GOOD_EN, REFUSAL, "[1, 2]"])
    out = tmp_path / "scored.jsonl"
    assert thresher("filter", data, "-o", out, "--score-only").returncode == 0
    kept = read_jsonl(out)
    assert len(kept) == 2  # a line that is not an object cannot be written as a record
    assert "failed" not in kept[0]["meta"]["filter"]
    assert kept[1]["meta"]["filter"]["failed"] == [{"rule": "refusal", "field": "response",
                                                    "value": "As an AI language model"}]
    assert read_jsonl(tmp_path / "scored.removed.jsonl")[0]["reason"] == "invalid"


def test_no_meta_writes_records_as_read_and_json_output(tmp_path, thresher):
    data = tmp_path / "in.json"
    data.write_text(json.dumps([GOOD_EN, GOOD_ZH, REFUSAL], ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out.json"
    removed, stats = tmp_path / "why.jsonl", tmp_path / "counts.json"
    result = thresher("filter", data, "-o", out, "--no-meta", "--removed", removed, "--stats", stats)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == [GOOD_EN, GOOD_ZH]
    assert read_jsonl(removed)[0]["record"] == REFUSAL
    assert json.loads(stats.read_text())["removed"] == {"refusal": 1}


def test_rules_file_from_the_command_line(tmp_path, thresher):
    data = write_jsonl(tmp_path / "in.jsonl", [REFUSAL])
    rules = tmp_path / "rules.yaml"
    rules.write_text("refusal: {enabled: false}\n", encoding="utf-8")
    assert thresher("filter", data, "-o", tmp_path / "out.jsonl", "--rules", rules).returncode == 0
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 1
    rules.write_text("refusal: {enabeld: false}\n", encoding="utf-8")
    result = thresher("filter", data, "-o", tmp_path / "out.jsonl", "--rules", rules)
    assert result.returncode == 2
    assert "refusal.enabeld" in result.stderr and "Traceback" not in result.stderr


def test_languages_by_script(tmp_path, thresher):
    japanese = {"instruction": "日本の首都は？", "input": "", "output": "日本の首都は東京です。"}
    data = write_jsonl(tmp_path / "in.jsonl", [GOOD_EN, GOOD_ZH, japanese])
    out = tmp_path / "out.jsonl"
    assert thresher("filter", data, "-o", out, "--languages", "zh,en").returncode == 0
    assert [r["instruction"] for r in read_jsonl(out)] == [GOOD_EN["instruction"], GOOD_ZH["instruction"]]
    detail = read_jsonl(tmp_path / "out.removed.jsonl")[0]["detail"]
    assert detail["value"] == "ja" and detail["allowed"] == ["en", "zh"]


def test_min_reward_without_a_reward_model_is_a_clear_error(tmp_path, thresher):
    data = write_jsonl(tmp_path / "in.jsonl", [GOOD_EN])
    result = thresher("filter", data, "-o", tmp_path / "out.jsonl", "--min-reward", "0.5")
    assert result.returncode == 2
    assert "--min-reward needs --rm-model" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


# --- identity hygiene ----------------------------------------------------------------------


def test_identity_hygiene_removes_claims_and_counts_them(tmp_path, thresher):
    claim_multi = {"conversations": [
        {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"},
        {"from": "human", "value": "Who made you?"}, {"from": "gpt", "value": "I was developed by OpenAI."},
    ]}
    user_asks = {"instruction": "Are you ChatGPT?", "input": "", "output": "No, I am 小州, made by 神州数码."}
    data = write_jsonl(tmp_path / "in.jsonl", [CLAIM_EN, CLAIM_ZH, MENTION, user_asks, claim_multi, GOOD_ZH])
    out = tmp_path / "out.jsonl"
    result = thresher("filter", data, "-o", out, "--identity-name", "小州", "--identity-author", "神州数码")
    assert result.returncode == 0, result.stderr
    kept = read_jsonl(out)
    assert [r.get("instruction") for r in kept] == [MENTION["instruction"], user_asks["instruction"], GOOD_ZH["instruction"]]
    removed = read_jsonl(tmp_path / "out.removed.jsonl")
    assert [r["detail"]["competitor"] for r in removed] == ["chatgpt", "qwen", "chatgpt"]
    assert removed[1]["detail"]["value"] == "我是通义千问"
    stats = json.loads((tmp_path / "out.stats.json").read_text())
    assert stats["identity_claims"] == {"chatgpt": 2, "qwen": 1}
    assert "chatgpt" in result.stdout and "qwen" in result.stdout


def test_without_identity_flags_claims_are_kept(tmp_path, thresher):
    data = write_jsonl(tmp_path / "in.jsonl", [CLAIM_EN])
    assert thresher("filter", data, "-o", tmp_path / "out.jsonl").returncode == 0
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 1
    result = thresher("filter", data, "-o", tmp_path / "out.jsonl", "--identity-name", "X")
    assert result.returncode == 2 and "go together" in result.stderr


CLAIMS = [
    ("chatgpt", "I am ChatGPT, how can I help?"),
    ("chatgpt", "I'm a large language model trained by OpenAI."),
    ("chatgpt", "As an AI developed by OpenAI, I can't browse."),
    ("claude", "I'm Claude, an AI assistant made by Anthropic."),
    ("qwen", "我是通义千问，阿里巴巴集团旗下的超大规模语言模型。"),
    ("qwen", "我是由阿里云开发的人工智能助手。"),
    ("ernie", "我是文心一言，百度研发的知识增强大语言模型。"),
    ("glm", "你好，我是ChatGLM，是智谱AI训练的语言模型。"),
    ("llama", "I am Llama, a model created by Meta AI."),
    ("gemini", "I am Gemini, a large language model built by Google."),
    ("deepseek", "我是DeepSeek，由深度求索公司开发的智能助手。"),
    ("kimi", "我叫Kimi，是月之暗面开发的人工智能助手。"),
    ("spark", "我是讯飞星火认知大模型，由科大讯飞研发。"),
    ("doubao", "我是豆包，字节跳动开发的AI。"),
]
NOT_CLAIMS = [
    "GPT-4 was released by OpenAI in 2023.",
    "Llama 2 is an open model from Meta.",
    "通义千问是阿里云推出的大模型。",
    "The metabolism of a cell is fascinating.",
    "我是小州，由神州数码开发。",
    "Google Maps can show you the way.",
    # denials are the opposite of a claim: the identity answers synthesis keeps must survive the filter
    "I was not developed by OpenAI: I am Xiaozhou.",
    "No, I am not ChatGPT. I am Xiaozhou.",
    "我不是通义千问，我是小州。",
]


@pytest.mark.parametrize(("competitor", "text"), CLAIMS)
def test_identity_claims_in_both_languages(competitor, text):
    claims = ClaimMatcher(["小州", "神州数码"]).claims(text)
    assert [c.competitor for c in claims] == [competitor]


@pytest.mark.parametrize("text", NOT_CLAIMS)
def test_mentions_are_not_claims(text):
    assert ClaimMatcher(["小州", "神州数码"]).claims(text) == []


def test_own_identity_is_never_a_competitor():
    hygiene = ClaimMatcher(["Llama-Tutor", "Meta"])
    assert "llama" not in [c.key for c in hygiene.competitors]
    assert hygiene.claims("I am Llama-Tutor, made by Meta.") == []
    assert [c.competitor for c in hygiene.claims("I am ChatGPT.")] == ["chatgpt"]


def test_competitor_list_is_shipped_data():
    competitors = {c.key: c for c in load_competitors()}
    for key in ("chatgpt", "claude", "qwen", "ernie", "glm", "llama", "gemini", "deepseek", "kimi", "spark", "doubao"):
        assert competitors[key].names and competitors[key].makers
    assert "通义千问" in competitors["qwen"].names and "OpenAI" in competitors["chatgpt"].makers
    custom = load_competitors("competitors:\n  - key: acme\n    names: [AcmeBot]\n    makers: [Acme]\n")
    assert ClaimMatcher(["x", "y"], custom).claims("I am AcmeBot.")[0].competitor == "acme"


def test_preference_pairs_are_judged_by_chosen_only(tmp_path, thresher):
    refusal = "As an AI language model, I cannot tell jokes."
    joke = "Why did the scarecrow win an award? Because he was outstanding in his field."
    good_pair = {"instruction": "Tell me a joke.", "input": "", "chosen": joke, "rejected": refusal}
    bad_pair = {"instruction": "Tell me a joke.", "input": "", "chosen": refusal, "rejected": joke}
    data = write_jsonl(tmp_path / "pairs.jsonl", [good_pair, bad_pair])
    out = tmp_path / "out.jsonl"
    assert thresher("filter", data, "-o", out).returncode == 0
    kept = read_jsonl(out)
    assert [r["chosen"] for r in kept] == [joke] and "rejected" in kept[0]
    assert read_jsonl(tmp_path / "out.removed.jsonl")[0]["record"]["chosen"] == refusal
