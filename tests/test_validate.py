"""`thresher validate`: format recognition, error locations, reports and exit codes."""

from __future__ import annotations

import json

import pytest

from thresher.curate.engines import local as local_engine
from thresher.curate.engines.local import LocalEngine
from thresher.curate.errors import RecordError
from thresher.curate.io.formats import detect, to_record
from thresher.curate.validate import validate_paths

SAMPLES = {
    "alpaca": {"instruction": "Add", "input": "1+1", "output": "2", "system": "math", "history": [["hi", "hello"]]},
    "alpaca-preference": {"instruction": "Pick", "input": "", "chosen": "good", "rejected": "bad"},
    "sharegpt": {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "system": "s"},
    "sharegpt-preference": {
        "conversations": [{"from": "human", "value": "hi"}],
        "chosen": {"from": "gpt", "value": "hello"},
        "rejected": {"from": "gpt", "value": "go away"},
    },
    "sharegpt-tools": {
        "conversations": [
            {"from": "human", "value": "weather in Paris?"},
            {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Paris"}}'},
            {"from": "observation", "value": '{"sky": "sunny"}'},
            {"from": "gpt", "value": "Sunny."},
        ],
        "tools": '[{"name": "weather"}]',
    },
    "messages": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "label": True},
    "prompt-completion": {"prompt": "The sky is", "completion": " blue."},
    "prompt-completion-conversational": {
        "prompt": [{"role": "user", "content": "sky?"}],
        "completion": [{"role": "assistant", "content": "blue"}],
    },
    "preference-explicit": {"prompt": "sky?", "chosen": "blue", "rejected": "green"},
    "preference-implicit": {
        "chosen": [{"role": "user", "content": "sky?"}, {"role": "assistant", "content": "blue"}],
        "rejected": [{"role": "user", "content": "sky?"}, {"role": "assistant", "content": "green"}],
    },
    "xtuner": {"conversation": [{"system": "s", "input": "hi", "output": "hello"}, {"input": "and?", "output": "bye"}]},
    "qa": {"question": "who?", "answer": "me"},
    "scored": {"input": "sky?", "outputs": [{"response": "blue", "score": 5}, {"response": "green", "score": 1}]},
    "document": {"text": "A plain corpus document."},
}

KINDS = {
    "alpaca": "dialogue", "alpaca-preference": "preference", "sharegpt": "dialogue", "sharegpt-preference": "preference",
    "sharegpt-tools": "dialogue", "messages": "dialogue", "prompt-completion": "dialogue",
    "prompt-completion-conversational": "dialogue", "preference-explicit": "preference",
    "preference-implicit": "preference", "xtuner": "dialogue", "qa": "qa", "scored": "scored", "document": "document",
}


@pytest.mark.parametrize("name", SAMPLES)
def test_every_format_is_recognised_and_mapped(name):
    assert to_record(SAMPLES[name]).kind == KINDS[name]


def test_mappings_keep_content():
    alpaca = to_record(SAMPLES["alpaca"])
    assert [(m.role, m.content) for m in alpaca.messages] == [
        ("system", "math"), ("user", "hi"), ("assistant", "hello"), ("user", "Add\n1+1"), ("assistant", "2"),
    ]
    tools = to_record(SAMPLES["sharegpt-tools"])
    assert tools.messages[1].tool_calls[0].name == "weather"
    assert json.loads(tools.messages[1].tool_calls[0].arguments) == {"city": "Paris"}
    assert [m.role for m in tools.messages] == ["user", "assistant", "tool", "assistant"]
    implicit = to_record(SAMPLES["preference-implicit"])
    assert [m.content for m in implicit.prompt] == ["sky?"] and implicit.rejected.content == "green"
    assert [m.role for m in to_record(SAMPLES["xtuner"]).messages] == ["system", "user", "assistant", "user", "assistant"]


@pytest.mark.parametrize(
    "row, field, reason",
    [
        ({"instruction": "q", "input": {"text": "x"}, "output": "a"}, "input", "must be a string, got object"),
        ({"conversation": [{"input": {"text": "x"}, "output": "a"}]}, "conversation[0].input", "must be a string, got object"),
        ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ["a"]}]}, "conversations[1].value", "must be a string, got array"),
        ({"conversations": [{"from": "robot", "value": "q"}]}, "conversations[0].from", "unknown role 'robot'"),
        ({"conversations": [{"from": "gpt", "value": "q"}, {"from": "gpt", "value": "a"}]}, "conversations[0]", "expected user, got assistant"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "I am {{name}}"}]}, "messages[1].content", "unreplaced placeholder {{name}}"),
        ({"instruction": "q", "output": "   "}, "output", "assistant content is blank"),
        ({"instruction": "q"}, "output", "missing"),
        ({"instruction": "q", "output": "a", "history": [["only one"]]}, "history[0]", "must be a [query, answer] pair"),
        ({"prompt": "q", "chosen": "same", "rejected": "same "}, "rejected", "identical to chosen"),
        ({"input": "q", "outputs": [{"response": "a", "score": "high"}, {"response": "b", "score": 1}]}, "outputs[0].score", "must be a number, got string"),
        ({"foo": 1}, "", "unrecognised record format (keys: foo)"),
    ],
)
def test_errors_name_the_field_as_the_file_spells_it(row, field, reason):
    with pytest.raises(RecordError) as info:
        to_record(row)
    assert (info.value.field, info.value.reason) == (field, reason)


def test_detection_prefers_the_most_specific_shape():
    assert detect({"messages": [], "text": "x"}) == "messages"
    assert detect({"instruction": "i", "output": "o", "text": "x"}) == "alpaca"


def test_peer_files_are_classified(peer_data, thresher, tmp_path):
    files = ["alpaca_en_demo.json", "alpaca_zh_demo.json", "dpo_en_demo.json", "kto_en_demo.json", "glaive_toolcall_en_demo.json", "c4_demo.jsonl"]
    result = thresher("validate", *(peer_data / f for f in files), "--report", tmp_path / "r.json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["invalid"] == 0 and report["total"] == 999 + 1000 + 300 + 300 + 300 + 300
    identity = thresher("validate", peer_data / "identity.json", "--report", tmp_path / "i.json")
    assert identity.returncode == 1
    errors = json.loads((tmp_path / "i.json").read_text())["errors"]
    assert errors and all(e["reason"].startswith("unreplaced placeholder") for e in errors)
    assert errors[0] == {"file": str(peer_data / "identity.json"), "line": 2, "field": "output", "reason": "unreplaced placeholder {{name}}"}


def test_one_broken_jsonl_line_among_good_ones(tmp_path, thresher):
    path = tmp_path / "mixed.jsonl"
    good = json.dumps({"question": "q", "answer": "a"})
    path.write_text(f"{good}\n{{\"question\": oops}}\n{good}\n", encoding="utf-8")
    rejects, report = tmp_path / "rejects.jsonl", tmp_path / "report.json"
    result = thresher("validate", path, "--rejects", rejects, "--report", report)
    assert result.returncode == 1
    assert f"{path}:2: (record): invalid JSON" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert (data["total"], data["valid"], data["invalid"]) == (3, 2, 1)
    assert data["errors"][0]["line"] == 2 and data["errors"][0]["reason"].startswith("invalid JSON")
    reject = json.loads(rejects.read_text())
    assert reject["record"] == '{"question": oops}' and reject["line"] == 2


def test_kind_restricts_what_is_valid(tmp_path, thresher):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n" + json.dumps({"text": "doc"}) + "\n")
    result = thresher("validate", "--kind", "qa", path)
    assert result.returncode == 1 and "expected a qa record, got document" in result.stdout


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: p.write_text("[{]"), "invalid JSON"),
        (lambda p: p.write_bytes(b'[{"text": "\xff"}]'), "not UTF-8 text"),
    ],
)
def test_unreadable_inputs_exit_2_without_traceback(tmp_path, thresher, setup, message):
    path = tmp_path / "in.json"
    setup(path)
    result = thresher("validate", path)
    assert result.returncode == 2
    assert message in result.stdout and str(path) in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_usage_errors_exit_2(thresher):
    assert thresher("validate").returncode == 2
    assert thresher("validate", "--kind", "nonsense", "x.jsonl").returncode == 2


def test_parallel_validation_matches_sequential(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    lines = []
    for i in range(5000):
        if i % 997 == 0:
            lines.append("{not json")
        elif i % 501 == 0:
            lines.append(json.dumps({"instruction": f"q{i}", "output": {"bad": i}}))
        else:
            lines.append(json.dumps({"instruction": f"q{i}", "input": "", "output": f"a{i}"}))
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(local_engine, "PARALLEL_MIN_BYTES", 0)
    sequential = validate_paths([str(path)], engine=LocalEngine(1), shard_bytes=4096)
    parallel = validate_paths([str(path)], engine=LocalEngine(2), shard_bytes=4096)
    assert parallel.total == sequential.total == 5000
    assert [str(p) for p in parallel.problems] == [str(p) for p in sequential.problems]
    assert sequential.invalid == 6 + 9


def test_parallel_validation_reports_undecodable_bytes_with_their_line(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    good = json.dumps({"text": "fine"}).encode()
    path.write_bytes(b"\n".join([good] * 3000 + [b'{"text": "\xff"}'] + [good] * 10) + b"\n")
    monkeypatch.setattr(local_engine, "PARALLEL_MIN_BYTES", 0)
    summary = validate_paths([str(path)], engine=LocalEngine(2), shard_bytes=4096)
    assert [e.line for e in summary.unreadable] == [3001]
    assert "not UTF-8 text" in str(summary.unreadable[0])
