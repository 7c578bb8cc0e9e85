"""The data contract: every validation rule of thresher.schemas, on hand-made records."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from thresher.curate.schema_export import export
from thresher.schemas import QA, Dialogue, Document, Identity, Preference, Scored, find_placeholder


def turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


def error_of(model, data, **kwargs) -> tuple[tuple, str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data, **kwargs)
    first = info.value.errors()[0]
    return first["loc"], str(first["ctx"]["error"]) if "ctx" in first else first["msg"]


GOOD = turns(("user", "hi"), ("assistant", "hello"))


@pytest.mark.parametrize("bad, name", [({"text": "x"}, "object"), (["x"], "array"), (5, "number"), (None, "null")])
def test_content_must_be_a_string_and_the_error_names_the_type(bad, name):
    loc, reason = error_of(Dialogue, {"messages": [{"role": "user", "content": bad}, GOOD[1]]})
    assert loc == ("messages", 0, "content")
    assert reason == f"must be a string, got {name}"


@pytest.mark.parametrize("role", ["user", "assistant"])
def test_blank_user_or_assistant_content_is_rejected(role):
    messages = turns(("user", "q"), ("assistant", "a"))
    messages[0 if role == "user" else 1]["content"] = " \n\t"
    _, reason = error_of(Dialogue, {"messages": messages})
    assert reason == f"{role} content is blank"


def test_a_valid_dialogue_with_system_prompt():
    dialogue = Dialogue.model_validate({"messages": turns(("system", "be brief"), *[(m["role"], m["content"]) for m in GOOD])})
    assert dialogue.system == "be brief"
    assert len(dialogue.messages) == 3


@pytest.mark.parametrize(
    "messages, reason",
    [
        (turns(("system", "a"), ("system", "b"), ("user", "q"), ("assistant", "a")), "system message allowed only first"),
        (turns(("user", "q"), ("system", "s"), ("assistant", "a")), "system message allowed only first"),
        (turns(("assistant", "a"), ("user", "q"), ("assistant", "a")), "expected user, got assistant"),
        (turns(("user", "q"), ("user", "q2"), ("assistant", "a")), "expected assistant, got user"),
        (turns(("user", "q"), ("assistant", "a"), ("user", "q2")), "must end with a assistant message, ends with user"),
        (turns(("system", "s")), "only a system message"),
        ([], "no messages"),
    ],
)
def test_turn_order_rules(messages, reason):
    loc, got = error_of(Dialogue, {"messages": messages})
    assert loc == ("messages",)
    assert got == reason


def test_tool_calls_follow_the_openai_shape():
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": "{}"}]},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
    ]
    assert len(Dialogue.model_validate({"messages": messages}).messages) == 4
    _, reason = error_of(Dialogue, {"messages": messages[:1] + messages[2:]})
    assert reason == "expected assistant, got tool"


def test_preference_rules():
    prompt = turns(("user", "q"))
    good = {"prompt": prompt, "chosen": {"role": "assistant", "content": "yes"}, "rejected": {"role": "assistant", "content": "no"}}
    assert Preference.model_validate(good).chosen.content == "yes"
    loc, reason = error_of(Preference, {**good, "prompt": turns(("user", "q"), ("assistant", "a"))})
    assert (loc, reason) == (("prompt",), "must end with a user message, ends with assistant")
    loc, reason = error_of(Preference, {**good, "chosen": {"role": "user", "content": "yes"}})
    assert (loc, reason) == (("chosen",), "must be an assistant message, got user")
    loc, reason = error_of(Preference, {**good, "rejected": {"role": "assistant", "content": " yes \n"}})
    assert (loc, reason) == (("rejected",), "identical to chosen")


def test_scored_rules_and_pair_expansion():
    prompt = turns(("user", "q"))
    loc, reason = error_of(Scored, {"prompt": prompt, "responses": [{"response": "a", "score": 1}]})
    assert (loc, reason) == (("responses",), "needs at least two responses, has 1")
    for bad, name in (("5", "string"), (True, "boolean")):
        loc, reason = error_of(Scored, {"prompt": prompt, "responses": [{"response": "a", "score": bad}, {"response": "b", "score": 1}]})
        assert (loc, reason) == (("responses", 0, "score"), f"must be a number, got {name}")
    scored = Scored.model_validate(
        {"prompt": prompt, "responses": [{"response": "a", "score": 1}, {"response": "b", "score": 3}, {"response": "c", "score": 3}]}
    )
    pairs = [(p.chosen.content, p.rejected.content) for p in scored.to_preferences()]
    assert pairs == [("b", "a"), ("c", "a")]  # b and c tie: no pair
    assert scored.to_preferences(min_margin=2) == []


@pytest.mark.parametrize("text", ["I am {{name}}", "by {{ AUTHOR }}", "I am <NAME>", "[NAME] here", "{NAME}", "我是{{名字}}", "<<AUTHOR>>"])
def test_unreplaced_placeholders_are_errors_by_default(text):
    _, reason = error_of(QA, {"question": "who are you?", "answer": text})
    assert reason.startswith("unreplaced placeholder ")
    assert QA.model_validate({"question": "who are you?", "answer": text}, context={"allow_placeholders": True}).answer == text


@pytest.mark.parametrize("text", ["<name>x</name>", 'f"{name}"', "{{ message }}", "use [x] and {y}", "a < b > c"])
def test_markup_and_code_are_not_placeholders(text):
    assert find_placeholder(text) is None


def test_id_is_a_stable_content_hash_independent_of_meta():
    a = QA.model_validate({"question": "q", "answer": "a", "meta": {"source": "x"}})
    b = QA.model_validate({"question": "q", "answer": "a"})
    c = QA.model_validate({"question": "q", "answer": "b"})
    assert a.id == b.id != c.id
    assert Document(text="q").id != QA(question="q", answer="a").id
    assert len(a.id) == 16


def test_qa_converts_losslessly_to_dialogue():
    qa = QA(question="q", answer="a", system="s")
    assert [(m.role, m.content) for m in qa.to_dialogue().messages] == [("system", "s"), ("user", "q"), ("assistant", "a")]


def test_identity_requires_name_and_author():
    loc, reason = error_of(Identity, {"name": " ", "author": "x"})
    assert (loc, reason) == (("name",), "is blank")
    assert Identity(name="小州", author="神州数码").name_en is None


def test_schema_export_writes_one_valid_json_schema_per_kind(tmp_path):
    paths = export(tmp_path)
    assert {p.name for p in paths} == {f"{k}.schema.json" for k in ("dialogue", "qa", "preference", "scored", "document", "identity")}
    schema = json.loads((tmp_path / "dialogue.schema.json").read_text())
    assert "messages" in schema["properties"]
