"""Flat record shapes: ``question``/``answer``, corpus ``text``, scored responses,
and the field's other flat shapes: ``input``/``target`` pairs, ``text`` +
``label`` classification records and ``entity`` + ``facts`` knowledge records.
"""

from __future__ import annotations

import json
from typing import Any

from thresher.schemas import QA, Dialogue, Document, Record, Scored, json_type_name
from thresher.curate.errors import RecordError
from thresher.curate.text.scripts import zh_or_en
from thresher.curate.io.formats.base import CannotRender, Mapped, as_dialogue, exchanges, items, need, no_tools, unsupported


def parse_qa(row: dict[str, Any]) -> Mapped:
    """``question`` + ``answer`` (+ ``system``) to a QA record."""
    data = {"question": need(row, "question"), "answer": need(row, "answer")}
    if row.get("system"):
        data["system"] = row["system"]
    return Mapped(QA, data)


def parse_document(row: dict[str, Any]) -> Mapped:
    """A corpus document: its ``text``."""
    return Mapped(Document, {"text": need(row, "text")})


#: Reward data names its prompt and its response list in several ways.
PROMPT_KEYS = ("prompt", "input", "instruction", "question")
RESPONSE_KEYS = ("responses", "outputs")


def parse_scored(row: dict[str, Any]) -> Mapped:
    """A prompt with ``[{response, score}]`` candidates to a Scored record."""
    prompt_key = next((k for k in PROMPT_KEYS if k in row), PROMPT_KEYS[0])
    response_key = next((k for k in RESPONSE_KEYS if k in row), RESPONSE_KEYS[0])
    prompt = need(row, prompt_key)
    if isinstance(prompt, list):
        prompt_messages, prompt_sources = prompt, [(f"{prompt_key}[{i}]", "content") for i in range(len(prompt))]
    else:
        prompt_messages, prompt_sources = [{"role": "user", "content": prompt}], [(prompt_key, None)]
    responses = []
    for index, item in enumerate(items(row, response_key)):
        if not isinstance(item, dict):
            raise RecordError(f"{response_key}[{index}]", f"must be an object, got {json_type_name(item)}")
        responses.append({"response": item.get("response"), "score": item.get("score")})
    return Mapped(
        Scored,
        {"prompt": prompt_messages, "responses": responses},
        {"prompt": prompt_sources, "responses": response_key},
    )


def render_qa(record: Record) -> dict[str, Any]:
    """A single-exchange Dialogue or a QA as ``question`` / ``answer`` (+ ``system``)."""
    record = as_dialogue(record)
    if not isinstance(record, Dialogue):
        raise unsupported(record, "qa")
    no_tools(record, "qa")
    system, pairs, _ = exchanges(record.messages, "qa")
    if len(pairs) != 1:
        raise CannotRender("multi-turn dialogue does not fit qa")
    row = {"question": pairs[0][0], "answer": pairs[0][1]}
    if system:
        row["system"] = system
    return row


def parse_input_target(row: dict[str, Any]) -> Mapped:
    """``input`` + ``target`` (seq2seq data) to a two-turn Dialogue."""
    messages = [{"role": "user", "content": need(row, "input")}, {"role": "assistant", "content": need(row, "target")}]
    return Mapped(Dialogue, {"messages": messages}, {"messages": [("input", None), ("target", None)]})


#: Instruction templates for classification records; ``{text}`` is the record's text.
LABEL_TEMPLATES = {
    "en": "Classify the following text. Answer with the label only.\n\n{text}",
    "zh": "请判断以下文本的类别，只回答类别标签。\n\n{text}",
}


def parse_classification(row: dict[str, Any], template: str | None = None) -> Mapped:
    """``text`` + ``label`` to an instruction-following Dialogue whose answer is the label.

    ``template`` is ``zh``, ``en``, or a custom string containing ``{text}``;
    by default the text's own script picks zh or en, so Chinese data gets a
    Chinese instruction.
    """
    text = need(row, "text")
    label = need(row, "label")
    if not isinstance(label, (str, int, float)):
        raise RecordError("label", f"must be a string, a number or a boolean, got {json_type_name(label)}")
    if not isinstance(text, str):
        raise RecordError("text", f"must be a string, got {json_type_name(text)}")
    chosen = template or zh_or_en(text)
    prompt = LABEL_TEMPLATES.get(chosen, chosen).replace("{text}", text)
    answer = label if isinstance(label, str) else json.dumps(label)  # true/false, 1, 0.5 as JSON spells them
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return Mapped(Dialogue, {"messages": messages}, {"messages": [("text", None), ("label", None)]})


#: Questions for facts that name an attribute, and for bare fact sentences.
ATTRIBUTE_QUESTIONS = {"en": "What is the {attribute} of {entity}?", "zh": "{entity}的{attribute}是什么？"}
FACT_QUESTIONS = {"en": "What do you know about {entity}?", "zh": "关于{entity}，你知道什么？"}
#: The (name, value) spellings of a fact object, as knowledge data writes them:
#: ``{"fact": "出生日期", "value": "1879年3月14日"}``, ``{"attribute": ..., "value": ...}``, triples ...
FACT_FIELDS = (
    ("fact", "value"), ("attribute", "value"), ("key", "value"), ("property", "value"),
    ("relation", "object"), ("predicate", "object"),
)
_SPELLINGS = "question/answer, " + ", ".join(f"{name}/{value}" for name, value in FACT_FIELDS)
_LIST_SEPARATORS = {"zh": "、", "en": ", "}


def _fact_value(value: Any, where: str, field: str, lang: str) -> str:
    """A fact's value as answer text: strings as they are, numbers as written, a list of strings joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return _LIST_SEPARATORS[lang].join(value)
    raise RecordError(f"{where}.{field}", f"must be a string, a number or a list of strings, got {json_type_name(value)}")


def _fact_qa(entity: str, fact: Any, where: str) -> tuple[str, Any]:
    """(question, answer) of one fact; the question names the entity, in its language (see ``parse_facts``)."""
    if isinstance(fact, str):
        return FACT_QUESTIONS[zh_or_en(entity + fact)].format(entity=entity), fact
    if not isinstance(fact, dict):
        raise RecordError(where, f"must be a string or an object, got {json_type_name(fact)}")
    if "question" in fact:
        return fact.get("question"), fact.get("answer")
    for name_key, value_key in FACT_FIELDS:
        if name_key in fact and value_key in fact:
            name = fact[name_key]
            if not isinstance(name, str) or not name.strip():
                raise RecordError(f"{where}.{name_key}", f"must be a non-empty string, got {json_type_name(name)}")
            lang = zh_or_en(entity + name)
            question = ATTRIBUTE_QUESTIONS[lang].format(entity=entity, attribute=name)
            return question, _fact_value(fact[value_key], where, value_key, lang)
    if isinstance(fact.get("fact"), str):  # {"fact": "a whole sentence"}
        return _fact_qa(entity, fact["fact"], where)
    raise RecordError(where, f"a fact object needs one of {_SPELLINGS}; got keys {', '.join(sorted(fact)) or 'none'}")


def parse_facts(row: dict[str, Any]) -> list[Mapped]:
    """``entity`` + ``facts`` to one QA per fact, whose question names the entity.

    ``facts`` may be an object ``{name: value}``, a list of ``{question, answer}``,
    a list of ``{fact|attribute|key|property, value}`` or ``{relation|predicate,
    object}`` (``FACT_FIELDS``), or a list of fact sentences (each answers "what
    do you know about ENTITY"). The question is in the entity's language, read
    together with the fact's name, so ``爱因斯坦`` + ``出生日期`` asks
    ``爱因斯坦的出生日期是什么？`` and a Latin name among Chinese facts
    (``Python`` + ``创始人``) still gets a Chinese question.
    """
    entity = need(row, "entity")
    if not isinstance(entity, str):
        raise RecordError("entity", f"must be a string, got {json_type_name(entity)}")
    facts = need(row, "facts")
    if isinstance(facts, dict):
        facts = [{"attribute": key, "value": value} for key, value in facts.items()]
    if not isinstance(facts, list):
        raise RecordError("facts", f"must be an array or an object, got {json_type_name(facts)}")
    if not facts:
        raise RecordError("facts", "is empty")
    mapped = []
    for index, fact in enumerate(facts):
        where = f"facts[{index}]"
        question, answer = _fact_qa(entity, fact, where)
        mapped.append(Mapped(QA, {"question": question, "answer": answer}, {"question": where, "answer": where}))
    return mapped
