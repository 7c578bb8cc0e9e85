"""``thresher rename`` on real files: LLaMA-Factory's identity.json and nested records."""

from __future__ import annotations

import json

from thresher.schemas import find_placeholder


def test_fills_llamafactory_identity(peer_data, tmp_path, thresher):
    out = tmp_path / "identity.json"
    result = thresher("rename", peer_data / "identity.json", "-o", out, "--set", "name=小州", "--set", "author=神州数码", check=True)
    records = json.loads(out.read_text(encoding="utf-8"))
    source = json.loads((peer_data / "identity.json").read_text(encoding="utf-8"))
    assert len(records) == len(source)
    assert not [r for r in records for v in r.values() if isinstance(v, str) and find_placeholder(v)]
    assert any("小州" in r["output"] and "神州数码" in r["output"] for r in records)
    assert "strings changed" in result.stderr
    assert thresher("validate", out).returncode == 0


def test_every_spelling_synonyms_nested_strings_and_replace(tmp_path, thresher):
    data = tmp_path / "in.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "who?"},
                      {"role": "assistant", "content": "I am {{ NAME }} ({NAME}) from <<COMPANY>>, a.k.a. [NAME]."}]},
        {"instruction": "hi", "output": "我是{{名字}}，由{{开发者}}开发。", "tags": ["{{model_name}}", 3, None]},
        {"instruction": "old", "output": "I am OldBot by OldCorp."},
    ]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = thresher("rename", data, "-o", out, "--set", "name=Nova", "--set", "author=Acme",
                      "--replace", "OldBot=Nova", "--replace", "OldCorp=Acme", check=True)
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert got[0]["messages"][1]["content"] == "I am Nova (Nova) from Acme, a.k.a. Nova."
    assert got[1]["output"] == "我是Nova，由Acme开发。" and got[1]["tags"] == ["Nova", 3, None]
    assert got[2]["output"] == "I am Nova by Acme." and got[2]["instruction"] == "old"
    assert "strings changed" in result.stderr and "│ 4" in result.stderr  # 4 strings changed


def test_leftover_placeholders_fail_loudly_and_write_nothing(tmp_path, thresher):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"instruction": "hi", "output": "I am {{name}} by {{author}}."}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = thresher("rename", data, "-o", out, "--set", "name=Nova")
    assert result.returncode == 1
    assert f"{data}:1: {{{{author}}}}" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
    bad = thresher("rename", data, "-o", out, "--set", "novalue")
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr


def test_per_language_values_follow_each_records_language(peer_data, thresher, tmp_path):
    """LLaMA-Factory's identity.json: 16 English records, then 75 Chinese ones, all with {{name}}/{{author}}."""
    out = tmp_path / "identity.filled.json"
    result = thresher("rename", peer_data / "identity.json", "-o", out, "--set", "name=小州", "--set", "author=神州数码",
                      "--set", "name_en=Xiaozhou", "--set", "author_en=Digital China", check=True)
    rows = json.loads(out.read_text(encoding="utf-8"))
    english, chinese = rows[:16], rows[16:]
    assert all("小州" not in r["output"] and "神州数码" not in r["output"] for r in english)
    assert sum("Xiaozhou" in r["output"] for r in english) >= 10
    assert all("Xiaozhou" not in r["output"] and "Digital China" not in r["output"] for r in chinese)
    assert sum("小州" in r["output"] for r in chinese) >= 60
    assert "records in en" in result.stderr and "16" in result.stderr


def test_a_literal_language_slot_is_filled_everywhere(tmp_path, thresher):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"question": "你叫什么？", "answer": "我是{{name}}，英文名{{name_en}}。"}, ensure_ascii=False)
                      + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    thresher("rename", source, "-o", out, "--set", "name=小州", "--set", "name_en=Xiaozhou", check=True)
    assert json.loads(out.read_text(encoding="utf-8"))["answer"] == "我是小州，英文名Xiaozhou。"
