"""thresher convert: round trips, the peer files, llamafactory folders, rejects and counts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from thresher.curate.io.formats import RENDERERS, CannotRender, detect, to_records
from thresher.curate.io.formats.base import as_dialogue
from thresher.curate.io.readers import read_rows
from thresher.schemas import Dialogue, Preference

ALLOW = {"allow_placeholders": True}


def canonical_ids(path: Path | str) -> list[str]:
    """Canonical record ids of a file, QA records in their dialogue form so kinds compare."""
    ids = []
    for row in read_rows(path):
        assert row.data is not None, row.error
        ids += [as_dialogue(r).id for r in to_records(row.data, context=ALLOW)]
    return ids


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def stats_of(out: Path) -> dict:
    name = out.name.split(".")[0]
    return json.loads((out.parent / f"{name}.stats.json").read_text())


# generated records: multi-turn with system, preference with history, tools with parallel calls
GENERATED = [
    {"instruction": "第二个问题", "input": "补充", "output": "第二个回答", "system": "你是小州",
     "history": [["第一个问题", "第一个回答"], ["q2", "a2"]]},
    {"instruction": "Which is better?", "input": "", "chosen": "This one.", "rejected": "That one.",
     "system": "Be brief.", "history": [["hi", "hello"]]},
    {"conversations": [
        {"from": "human", "value": "Weather in Paris and Rome?"},
        {"from": "function_call", "value": json.dumps([
            {"name": "weather", "arguments": {"city": "Paris"}},
            {"name": "weather", "arguments": {"city": "Rome"}}])},
        {"from": "observation", "value": "{\"Paris\": \"sun\", \"Rome\": \"rain\"}"},
        {"from": "gpt", "value": "Sunny in Paris, rainy in Rome."}],
     "system": "Use tools.", "tools": json.dumps([{"name": "weather", "parameters": {"type": "object"}}])},
    {"messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]},
    {"prompt": [{"role": "user", "content": "p"}], "chosen": [{"role": "assistant", "content": "good"}],
     "rejected": [{"role": "assistant", "content": "bad"}]},
    {"question": "What is 2+2?", "answer": "4", "system": "Answer tersely."},
]


@pytest.mark.parametrize("target", sorted(RENDERERS))
def test_every_renderer_round_trips_what_it_can_hold(target):
    """Render then parse gives the same canonical record; what does not fit says why."""
    held = 0
    for raw in GENERATED:
        (record,) = to_records(raw)
        try:
            row = RENDERERS[target](record)
        except CannotRender as exc:
            assert exc.reason
            continue
        held += 1
        assert [as_dialogue(r).id for r in to_records(row)] == [as_dialogue(record).id], (target, row)
    assert held >= 1
    if target in ("sharegpt", "messages", "prompt-completion"):
        assert held == len(GENERATED)


@pytest.mark.parametrize(
    ("name", "middle"),
    [("alpaca_en_demo.json", "messages"), ("alpaca_zh_demo.json", "messages"), ("identity.json", "sharegpt")],
)
def test_alpaca_round_trip_on_peer_files(peer_data, thresher, tmp_path, name, middle):
    source = peer_data / name
    mid, back = tmp_path / "mid.jsonl", tmp_path / "back.json"
    thresher("convert", source, "-o", mid, "--to", middle, "--allow-placeholders", "--strict", check=True)
    thresher("convert", mid, "-o", back, "--to", "alpaca", "--allow-placeholders", "--strict", check=True)
    assert canonical_ids(back) == canonical_ids(source)
    assert all(row.data.keys() >= {"instruction", "input", "output"} for row in read_rows(back))


@pytest.mark.parametrize("name", ["glaive_toolcall_en_demo.json", "dpo_en_demo.json"])
def test_sharegpt_round_trip_on_peer_files(peer_data, thresher, tmp_path, name):
    source = peer_data / name
    mid, back = tmp_path / "mid.jsonl", tmp_path / "back.jsonl"
    thresher("convert", source, "-o", mid, "--to", "messages", "--strict", check=True)
    thresher("convert", mid, "-o", back, "--to", "sharegpt", "--strict", check=True)
    assert canonical_ids(back) == canonical_ids(source)
    if name.startswith("glaive"):  # tool-call arguments come back as the objects LLaMA-Factory's files hold
        originals = json.load(open(source, encoding="utf-8"))
        for original, row in zip(originals, read_rows(back)):
            assert row.data["conversations"] == original["conversations"]


def test_generated_round_trip_through_messages(thresher, tmp_path):
    source = write_jsonl(tmp_path / "gen.jsonl", GENERATED)
    for target in ("sharegpt", "prompt-completion"):
        mid, back = tmp_path / f"{target}.jsonl", tmp_path / f"{target}.back.jsonl"
        thresher("convert", source, "-o", mid, "--to", "messages", "--strict", check=True)
        thresher("convert", mid, "-o", back, "--to", target, "--strict", check=True)
        assert canonical_ids(back) == canonical_ids(source)


@pytest.mark.parametrize("name", ["dpo_en_demo.json", "kto_en_demo.json", "glaive_toolcall_en_demo.json"])
def test_peer_preference_kto_and_tool_files_to_messages(peer_data, thresher, tmp_path, name):
    out = tmp_path / "out.jsonl"
    result = thresher("convert", peer_data / name, "-o", out, "--to", "messages", check=True)
    source = json.load(open(peer_data / name, encoding="utf-8"))
    stats = stats_of(out)
    rejected = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert stats["in"] == len(source) == stats["kept"] + stats["removed_total"]
    assert all(r["reason"] for r in rejected) and len(rejected) == stats["removed_total"]
    written = [row.data for row in read_rows(out)]
    assert len(written) == stats["kept"] == len(source)  # every demo record fits messages
    assert f"{len(source)} converted to messages" in result.stdout
    if name.startswith("kto"):
        assert [w["label"] for w in written] == [s["label"] for s in source]
        assert all(detect(w) == "messages" for w in written)
    if name.startswith("dpo"):
        assert all(isinstance(w["prompt"], list) and len(w["chosen"]) == 1 for w in written)
    if name.startswith("glaive"):
        calls = [m for w in written for m in w["messages"] if m.get("tool_calls")]
        assert calls and all(c["tool_calls"][0]["type"] == "function" for c in calls)
        assert all(isinstance(w["tools"], str) for w in written)


def assert_llamafactory_folder(folder: Path, records: int) -> dict:
    """Read dataset_info.json back and check the mapping the way LLaMA-Factory applies it."""
    info = json.loads((folder / "dataset_info.json").read_text())
    ((name, entry),) = info.items()
    rows = json.loads((folder / entry["file_name"]).read_text(encoding="utf-8"))
    assert len(rows) == records
    columns = entry["columns"]
    for row in rows:
        assert all(column in row for column in columns.values()), (columns, row.keys())
    if entry.get("formatting") == "sharegpt":
        tags = entry["tags"]
        for row in rows:
            turns = row[columns["messages"]]
            for index, turn in enumerate(turns):
                odd = (tags["user_tag"], tags["observation_tag"]) if index % 2 == 0 else (tags["assistant_tag"], tags["function_tag"])
                assert turn[tags["role_tag"]] in odd and isinstance(turn[tags["content_tag"]], str)
            if entry.get("ranking"):
                assert len(turns) % 2 == 1
                assert row[columns["chosen"]][tags["role_tag"]] == tags["assistant_tag"]
            else:
                assert len(turns) % 2 == 0
    return entry


@pytest.mark.parametrize(
    ("name", "style", "ranking", "extra_column"),
    [
        ("dpo_en_demo.json", "sharegpt", True, "chosen"),
        ("glaive_toolcall_en_demo.json", "sharegpt", False, "tools"),
        ("kto_en_demo.json", "sharegpt", False, "kto_tag"),
        ("alpaca_zh_demo.json", "alpaca", False, "history"),
        ("dpo_en_demo.json", "alpaca", True, "rejected"),
    ],
)
def test_llamafactory_folder_reads_back(peer_data, thresher, tmp_path, name, style, ranking, extra_column):
    folder = tmp_path / "my_data"
    args = ["--style", style]
    result = thresher("convert", peer_data / name, "-o", folder, "--to", "llamafactory", *args)
    source = json.load(open(peer_data / name, encoding="utf-8"))
    stats = json.loads((tmp_path / "my_data.stats.json").read_text())
    assert result.returncode == 0 and stats["in"] == len(source) == stats["kept"] + stats["removed_total"]
    entry = assert_llamafactory_folder(folder, stats["kept"])
    assert entry["formatting"] == style and entry.get("ranking", False) is ranking
    assert extra_column in entry["columns"]
    data = folder / entry["file_name"]
    if stats["removed_total"] == 0:
        assert canonical_ids(data) == canonical_ids(peer_data / name)


def test_multi_turn_to_qa_is_rejected_unless_last_turn(thresher, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GENERATED[:1] + [{"question": "q", "answer": "a"}])
    out = tmp_path / "qa.jsonl"
    result = thresher("convert", source, "-o", out, "--to", "qa", "--strict")
    assert result.returncode == 1
    assert "1 converted to qa, 1 rejected (multi-turn dialogue does not fit qa: 1)" in result.stdout
    (reject,) = [json.loads(line) for line in (tmp_path / "qa.rejects.jsonl").read_text().splitlines()]
    assert reject["reason"] == "multi-turn dialogue does not fit qa" and reject["line"] == 1
    assert reject["record"] == GENERATED[0]

    thresher("convert", source, "-o", out, "--to", "qa", "--last-turn", "--strict", check=True)
    first = next(read_rows(out)).data
    assert first == {"question": "第二个问题\n补充", "answer": "第二个回答", "system": "你是小州"}


def test_system_override_and_reject_file_flag(thresher, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GENERATED + [{"bogus": 1}])
    out, rejects = tmp_path / "out.jsonl", tmp_path / "elsewhere" / "bad.jsonl"
    result = thresher("convert", source, "-o", out, "--to", "sharegpt", "--system", "NEW", "--rejects", rejects)
    assert result.returncode == 0
    rows = [r.data for r in read_rows(out)]
    assert len(rows) == len(GENERATED) and all(r["system"] == "NEW" for r in rows)
    (reject,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert reject["reason"] == "invalid: unrecognised record format" and reject["line"] == len(GENERATED) + 1


def test_new_source_shapes(tmp_path):
    assert detect({"input": "x", "target": "y"}) == "input-target"
    assert detect({"text": "x", "label": "pos"}) == "classification"
    assert detect({"entity": "e", "facts": []}) == "facts"
    assert detect({"messages": [], "label": True}) == "messages"
    assert detect({"text": "corpus"}) == "document"

    (d,) = to_records({"input": "translate: hi", "target": "你好"})
    assert [m.content for m in d.messages] == ["translate: hi", "你好"]
    (d,) = to_records({"instruction": "Give three fruits", "input": "", "output": ["apple", "pear", "fig"]})
    assert d.messages[-1].content == "1. apple\n2. pear\n3. fig"

    (zh,) = to_records({"text": "这部电影很好看", "label": "正面"})
    (en,) = to_records({"text": "Great movie", "label": 1})
    (custom,) = to_records({"text": "Great movie", "label": "pos"}, label_template="Sentiment of: {text}")
    assert zh.messages[0].content.startswith("请判断") and zh.messages[0].content.endswith("这部电影很好看")
    assert en.messages[0].content.startswith("Classify") and en.messages[1].content == "1"
    assert custom.messages[0].content == "Sentiment of: Great movie"

    facts = to_records({"entity": "小州", "facts": {"开发者": "神州数码", "类型": "AI 助手"}})
    assert [(q.question, q.answer) for q in facts] == [("小州的开发者是什么？", "神州数码"), ("小州的类型是什么？", "AI 助手")]
    facts = to_records({"entity": "Paris", "facts": ["It is the capital of France.",
                                                     {"question": "River?", "answer": "The Seine."}]})
    assert [(q.question, q.answer) for q in facts] == [
        ("What do you know about Paris?", "It is the capital of France."), ("River?", "The Seine.")]


def test_reward_data_and_facts_expand_and_counts_add_up(thresher, tmp_path):
    rows = [
        {"input": "Q1", "outputs": [{"response": "a", "score": 3}, {"response": "b", "score": 1},
                                    {"response": "c", "score": 2.5}]},
        {"input": "Q2", "outputs": [{"response": "a", "score": 1}, {"response": "b", "score": 1}]},
        {"entity": "Paris", "facts": {"country": "France", "river": "Seine"}},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = thresher("convert", source, "-o", out, "--to", "messages", "--min-margin", "0.5")
    assert result.returncode == 0
    written = [r.data for r in read_rows(out)]
    prefs = [w for w in written if "chosen" in w]
    # Q1: (a,b) margin 2, (a,c) 0.5 (not > 0.5), (c,b) 1.5 -> 2 pairs; Q2 has no margin at all
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in prefs] == [("a", "b"), ("c", "b")]
    assert sum("messages" in w for w in written) == 2
    stats = stats_of(out)
    assert stats == {**stats, "in": 5, "kept": 4, "removed_total": 1}
    (reject,) = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert reject["line"] == 2 and reject["reason"].startswith("invalid: no pair of responses")


def test_parquet_and_csv_outputs(thresher, tmp_path):
    rows = [{"instruction": "q1", "input": "", "output": "a1, with \"quotes\"\nand a newline"},
            {"instruction": "q2", "input": "", "output": "a2", "system": "sys"},
            GENERATED[0]]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    parquet = tmp_path / "out.parquet"
    thresher("convert", source, "-o", parquet, "--to", "alpaca", "--strict", check=True)
    assert canonical_ids(parquet) == canonical_ids(source)

    table = tmp_path / "out.csv"
    result = thresher("convert", source, "-o", table, "--to", "alpaca")
    assert result.returncode == 0 and "2 converted to alpaca, 1 rejected" in result.stdout
    with open(table, encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["instruction", "input", "output", "system"]
    assert canonical_ids(table) == canonical_ids(source)[:2]
    reason = json.loads((tmp_path / "out.rejects.jsonl").read_text())["reason"]
    assert reason == "csv holds single-turn data only; field 'history' is nested"


def test_unreadable_input_is_one_error_line(thresher, tmp_path):
    result = thresher("convert", tmp_path / "missing.jsonl", "-o", tmp_path / "o.jsonl", "--to", "qa")
    assert result.returncode == 2
    assert result.stderr.strip() == f"thresher convert: error: {tmp_path / 'missing.jsonl'}: no such file or folder"
    assert not (tmp_path / "o.jsonl").exists()


def test_canonical_kinds_survive_conversion():
    (pref,) = to_records(GENERATED[1])
    assert isinstance(pref, Preference) and [m.role for m in pref.prompt] == ["system", "user", "assistant", "user"]
    (dia,) = to_records(RENDERERS["xtuner"](to_records(GENERATED[0])[0]))
    assert isinstance(dia, Dialogue) and dia.system == "你是小州"


def test_llamafactory_adds_to_an_existing_dataset_info(thresher, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(json.dumps({"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}))
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "这部电影很好看", "label": True}, {"input": "x", "target": "y"}])
    thresher("convert", source, "-o", folder, "--to", "llamafactory", "--name", "mine", "--style", "alpaca",
             "--strict", check=True)
    info = json.loads((folder / "dataset_info.json").read_text())
    assert set(info) == {"alpaca_en_demo", "mine"} and info["mine"]["file_name"] == "mine.json"
    rows = json.loads((folder / "mine.json").read_text(encoding="utf-8"))
    assert rows[0]["output"] == "true" and rows[0]["instruction"].startswith("请判断")
    assert all(set(info["mine"]["columns"].values()) <= set(row) for row in rows)


def test_forced_source_format_and_preference_kind_mismatch_in_one_dataset(thresher, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [GENERATED[0], GENERATED[1]])
    folder = tmp_path / "lf"
    result = thresher("convert", source, "-o", folder, "--to", "llamafactory", "--from", "alpaca")
    assert result.returncode == 0
    assert "1 rejected (llamafactory dataset holds sft data only, got ranking: 1)" in result.stdout
    forced = thresher("convert", source, "-o", tmp_path / "x.jsonl", "--to", "messages", "--from", "qa")
    assert "2 rejected (invalid: missing: 2)" in forced.stdout


def test_bad_label_template_is_a_usage_error(thresher, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "t", "label": "x"}])
    result = thresher("convert", source, "-o", tmp_path / "o.jsonl", "--to", "qa", "--label-template", "no slot")
    assert result.returncode == 2 and "--label-template must be zh, en, or contain {text}" in result.stderr


def test_knowledge_records_as_the_source_material_writes_them(thresher, tmp_path):
    """``{"entity", "facts": [{"fact", "value"}]}`` (the article's knowledge-graph shape) and the other spellings."""
    rows = [
        {"entity": "爱因斯坦", "facts": [{"fact": "出生日期", "value": "1879年3月14日"}, {"fact": "国籍", "value": "德国"},
                                     {"fact": "主要成就", "value": "相对论"}]},
        {"entity": "太阳系", "facts": [{"fact": "行星数量", "value": "8"}, {"fact": "最大行星", "value": "木星"}]},
        {"entity": "Marie Curie", "facts": [{"attribute": "field", "value": "physics"}, {"relation": "spouse", "object": "Pierre Curie"},
                                          {"key": "Nobel prizes", "value": 2}, {"attribute": "elements", "value": ["polonium", "radium"]}]},
        {"entity": "Python", "facts": [{"fact": "创始人", "value": "Guido van Rossum"}]},
        {"entity": "月球", "facts": [{"fact": "卫星"}]},
    ]
    out = tmp_path / "qa.jsonl"
    result = thresher("convert", write_jsonl(tmp_path / "kg.jsonl", rows), "-o", out, "--to", "qa")
    assert result.returncode == 0, result.stderr
    assert [(r.data["question"], r.data["answer"]) for r in read_rows(out)] == [
        ("爱因斯坦的出生日期是什么？", "1879年3月14日"), ("爱因斯坦的国籍是什么？", "德国"), ("爱因斯坦的主要成就是什么？", "相对论"),
        ("太阳系的行星数量是什么？", "8"), ("太阳系的最大行星是什么？", "木星"),
        ("What is the field of Marie Curie?", "physics"), ("What is the spouse of Marie Curie?", "Pierre Curie"),
        ("What is the Nobel prizes of Marie Curie?", "2"), ("What is the elements of Marie Curie?", "polonium, radium"),
        ("Python的创始人是什么？", "Guido van Rossum"),
        ("关于月球，你知道什么？", "卫星"),
    ]
    assert stats_of(out) == {**stats_of(out), "in": 11, "kept": 11, "removed_total": 0}


MIXED_TURNS = [
    {"question": "one turn", "answer": "one answer"},
    {"messages": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
                  {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]},
    {"instruction": "pick", "input": "", "chosen": "good", "rejected": "bad"},
]


def test_prompt_completion_has_one_column_type_per_file(thresher, tmp_path):
    """Single- and multi-turn records together: every prompt/completion is a message list, and datasets loads it."""
    from datasets import load_dataset

    sft = write_jsonl(tmp_path / "sft.jsonl", MIXED_TURNS[:2])
    out = tmp_path / "pc.jsonl"
    thresher("convert", sft, "-o", out, "--to", "prompt-completion", "--strict", check=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(isinstance(r["prompt"], list) and isinstance(r["completion"], list) for r in rows)
    assert rows[0]["completion"] == [{"role": "assistant", "content": "one answer"}]
    loaded = load_dataset("json", data_files=str(out), split="train")
    assert len(loaded) == 2 and len(loaded[1]["prompt"]) == 3
    pref = write_jsonl(tmp_path / "pref.jsonl", MIXED_TURNS[2:])
    thresher("convert", pref, "-o", tmp_path / "pp.jsonl", "--to", "prompt-completion", check=True)
    (row,) = [json.loads(line) for line in (tmp_path / "pp.jsonl").read_text().splitlines()]
    assert row["chosen"] == [{"role": "assistant", "content": "good"}] and isinstance(row["prompt"], list)


def test_plain_text_prompt_completion_only_for_single_turn(thresher, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", MIXED_TURNS)
    out = tmp_path / "plain.jsonl"
    result = thresher("convert", source, "-o", out, "--to", "prompt-completion", "--plain-text")
    assert result.returncode == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"prompt": "one turn", "completion": "one answer"},
                    {"prompt": "pick", "chosen": "good", "rejected": "bad"}]
    (reject,) = [json.loads(line) for line in (tmp_path / "plain.rejects.jsonl").read_text().splitlines()]
    assert reject["reason"].startswith("only single-turn records") and reject["line"] == 2
    wrong = thresher("convert", source, "-o", tmp_path / "x.jsonl", "--to", "alpaca", "--plain-text")
    assert wrong.returncode == 2 and "--plain-text applies to --to prompt-completion" in wrong.stderr


def test_tool_call_arguments_are_objects_unless_asked_for_strings(thresher, tmp_path):
    source = write_jsonl(tmp_path / "tools.jsonl", [GENERATED[2]])
    objects, strings = tmp_path / "obj.jsonl", tmp_path / "str.jsonl"
    thresher("convert", source, "-o", objects, "--to", "messages", "--strict", check=True)
    thresher("convert", source, "-o", strings, "--to", "messages", "--strict", "--string-arguments", check=True)
    call = json.loads(objects.read_text())["messages"][2]["tool_calls"][0]["function"]
    assert call["arguments"] == {"city": "Paris"}
    call = json.loads(strings.read_text())["messages"][2]["tool_calls"][0]["function"]
    assert call["arguments"] == '{"city": "Paris"}'
    assert canonical_ids(objects) == canonical_ids(strings) == canonical_ids(source)  # both read back the same
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "not json"}}]},
        {"role": "tool", "content": "r"}, {"role": "assistant", "content": "done"}]}])
    result = thresher("convert", broken, "-o", tmp_path / "b.jsonl", "--to", "messages")
    assert result.returncode == 1  # the only record was rejected
    assert "tool-call arguments are not a JSON object; use --string-arguments" in result.stdout + result.stderr


def test_a_from_that_matches_nothing_exits_1_naming_the_format(thresher, tmp_path):
    source = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": f"q{i}", "input": "", "output": "a"} for i in range(3)])
    result = thresher("convert", source, "-o", tmp_path / "out.jsonl", "--to", "messages", "--from", "sharegpt")
    assert result.returncode == 1
    assert f"every record of {source} was rejected" in result.stderr
    assert "they look like alpaca records, not sharegpt: use --from alpaca or leave --from out" in result.stderr
    result = thresher("validate", source, "--from", "sharegpt")
    assert result.returncode == 1 and "they look like alpaca records, not sharegpt" in result.stderr


def test_empty_inputs_warn_in_one_line(thresher, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = thresher("convert", empty, "-o", tmp_path / "out.jsonl", "--to", "messages")
    assert result.returncode == 0 and result.stderr.strip() == f"warning: {empty}: no records"
    result = thresher("validate", empty)
    assert result.returncode == 0 and f"warning: {empty}: no records" in result.stderr
