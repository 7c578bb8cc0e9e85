"""thresher mix, split and stats: sampling counts, determinism, group integrity, hand-checked figures."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path


from thresher.curate.mix import copies_by_rate, parse_spec, ratio_counts
from thresher.curate.dedup.shingles import normalize
from thresher.curate.engines.local import LocalEngine
from thresher.curate.stats import path_stats


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def qa_file(path: Path, count: int, tag: str) -> Path:
    return write_jsonl(path, [{"instruction": f"{tag} question {i}", "input": "", "output": f"answer {i}"}
                              for i in range(count)])


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- mix

def test_parse_spec_and_sampling_arithmetic(tmp_path):
    assert parse_spec("data/a.jsonl:0.5") == ("data/a.jsonl", 0.5)
    assert parse_spec("data/a.jsonl") == ("data/a.jsonl", None)
    odd = tmp_path / "weird:2"
    odd.write_text("")
    assert parse_spec(str(odd)) == (str(odd), None)  # an existing file whose name ends in :N is a path
    copies = copies_by_rate(1000, 2.3, random.Random(0))
    assert sum(copies) == 2300 and set(copies) == {2, 3} and copies.count(3) == 300
    assert ratio_counts([91, 1000], [1, 5]) == [91, 455]
    assert ratio_counts([500, 1000], [1, 5]) == [200, 1000]


def test_mix_rates_counts_meta_and_conservation(thresher, tmp_path):
    a, b = qa_file(tmp_path / "a.jsonl", 1000, "a"), qa_file(tmp_path / "b.jsonl", 200, "b")
    out = tmp_path / "mix.jsonl"
    result = thresher("mix", f"{a}:0.3", f"{b}:2.5", "-o", out, "--seed", "7")
    assert result.returncode == 0, result.stderr
    rows = lines(out)
    by_source = Counter(r["meta"]["source"] for r in rows)
    assert by_source == {str(a): 300, str(b): 500}
    a_lines = Counter(r["meta"]["line"] for r in rows if r["meta"]["source"] == str(a))
    b_lines = Counter(r["meta"]["line"] for r in rows if r["meta"]["source"] == str(b))
    assert set(a_lines.values()) == {1} and len(a_lines) == 300  # below 1: without replacement
    assert set(b_lines.values()) == {2, 3} and len(b_lines) == 200  # 2 copies each plus half once more
    for row in rows:  # records keep their shape; only meta is added
        original = {k: v for k, v in row.items() if k != "meta"}
        assert original == {"instruction": original["instruction"], "input": "", "output": original["output"]}
    stats = json.loads((tmp_path / "mix.stats.json").read_text())
    assert stats["in"] == 1200 == stats["kept"] + stats["removed_total"]
    assert stats["removed"] == {"not_sampled": 700} and stats["written"] == 800
    assert len((tmp_path / "mix.removed.jsonl").read_text().splitlines()) == 700
    # the output is shuffled: sources interleave instead of following each other
    first_half = Counter(r["meta"]["source"] for r in rows[:400])
    assert 100 < first_half[str(a)] < 200


def test_mix_is_deterministic_byte_for_byte(thresher, tmp_path):
    a, b = qa_file(tmp_path / "a.jsonl", 300, "a"), qa_file(tmp_path / "b.jsonl", 50, "b")
    outs = []
    for name, seed in (("one", "3"), ("two", "3"), ("three", "4")):
        out = tmp_path / f"{name}.jsonl"
        thresher("mix", f"{a}:0.5", f"{b}:3", "-o", out, "--seed", seed, check=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    plain = tmp_path / "plain.jsonl"
    thresher("mix", str(a), "-o", plain, "--no-meta", check=True)
    assert sorted(plain.read_text().splitlines()) == sorted(a.read_text().splitlines())


def test_mix_ratio_between_sources(thresher, tmp_path):
    identity, general = qa_file(tmp_path / "id.jsonl", 90, "id"), qa_file(tmp_path / "gen.jsonl", 2000, "gen")
    out = tmp_path / "mix.jsonl"
    thresher("mix", identity, general, "--ratio", "1:5", "-o", out, check=True)
    by_source = Counter(r["meta"]["source"] for r in lines(out))
    assert by_source == {str(identity): 90, str(general): 450}
    bad = thresher("mix", f"{identity}:2", general, "--ratio", "1:5", "-o", out)
    assert bad.returncode == 2 and "either RATEs or --ratio" in bad.stderr
    bad = thresher("mix", f"{identity}:20", "-o", out)
    assert bad.returncode == 2 and "rate must be between 0.01 and 10" in bad.stderr


def test_mix_sample_is_uniform_across_seeds():
    """Each record is picked at rate 0.2 about 20% of the time over many seeds (binomial bounds)."""
    picks = Counter()
    seeds = 400
    for seed in range(seeds):
        copies = copies_by_rate(50, 0.2, random.Random(seed))
        picks.update(i for i, n in enumerate(copies) if n)
    # 400 draws at p=0.2: mean 80, sd 8; 5 sd either side
    assert all(40 <= picks[i] <= 120 for i in range(50)), picks


# ---------------------------------------------------------------- split

def split_rows() -> list[dict]:
    rows = []
    for i in range(200):
        rows.append({"instruction": f"Question number {i}", "input": "", "output": f"a{i}",
                     "label": "zh" if i % 4 == 0 else "en"})
    variants = ["Who are you?", "who are you", "WHO  are you !", "Who are you？"]
    rows += [{"instruction": v, "input": "", "output": f"I am X ({n})", "label": "en"} for n, v in enumerate(variants)]
    rows += [{"instruction": "你是谁", "input": "", "output": f"我是小州{n}", "label": "zh"} for n in range(3)]
    rows.append({"broken": True})
    return rows


def test_normalize_groups_layout_case_and_punctuation():
    assert normalize("Who are you?") == normalize("  who ARE you！ ") == "who are you"
    assert normalize("Who are you?") != normalize("Who were you?")


def test_split_groups_stratifies_and_adds_up(thresher, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", split_rows())
    out = tmp_path / "splits"
    result = thresher("split", source, "-o", out, "--val", "0.1", "--test", "0.05", "--seed", "1",
                      "--stratify-by", "label")
    assert result.returncode == 0, result.stderr
    assert "2 groups of repeated prompts kept together (7 records)" in result.stdout
    parts = {name: lines(out / f"{name}.jsonl") for name in ("train", "val", "test")}
    stats = json.loads((out / "split.stats.json").read_text())
    assert stats["in"] == 208 == sum(len(p) for p in parts.values()) + stats["removed_total"]
    assert stats["removed"] == {"invalid": 1}
    home = {}
    for name, rows in parts.items():
        for row in rows:
            home.setdefault(normalize(row["instruction"]), set()).add(name)
    assert all(len(splits) == 1 for splits in home.values())  # no prompt straddles splits
    assert 17 <= len(parts["val"]) <= 24 and 7 <= len(parts["test"]) <= 13
    for name, rows in parts.items():  # zh is 1/4 of the data in every split, within a group's size
        zh = sum(r["label"] == "zh" for r in rows)
        assert abs(zh - len(rows) * 54 / 207) <= 4, (name, zh, len(rows))


def test_split_is_deterministic(thresher, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", split_rows())
    runs = []
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        thresher("split", source, "-o", tmp_path / name, "--val", "0.2", "--seed", seed, "--no-meta", check=True)
        runs.append((tmp_path / name / "train.jsonl").read_bytes() + (tmp_path / name / "val.jsonl").read_bytes())
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert not (tmp_path / "a" / "test.jsonl").exists()
    kept = [json.loads(line) for line in runs[0].decode().splitlines()]
    assert all("meta" not in row for row in kept) and len(kept) == 207


# ---------------------------------------------------------------- stats

HAND_CHECKED = [
    {"instruction": "hi", "input": "", "output": "hello there", "system": "Be nice."},          # 2 / 11 chars
    {"instruction": "你好", "input": "", "output": "你好，我是小州"},                            # zh
    {"instruction": "hi", "input": "", "output": "hello there", "system": "Be nice."},          # duplicate
    {"conversations": [{"from": "human", "value": "a b c"}, {"from": "gpt", "value": "d"},
                       {"from": "human", "value": "e"}, {"from": "gpt", "value": "f g"}]},      # 4 turns
    {"instruction": "Pick", "input": "", "chosen": "yes", "rejected": "no way"},               # preference
    {"text": "1234 5678"},                                                                      # other script
    {"nothing": "here"},                                                                        # invalid
]


def test_stats_figures_on_a_hand_checked_file(tmp_path):
    path = write_jsonl(tmp_path / "hand.jsonl", HAND_CHECKED)
    stats = path_stats([str(path)], LocalEngine(1))[0]
    assert stats["rows"] == 7 and stats["records"] == 6
    assert stats["kinds"] == {"dialogue": 4, "preference": 1, "document": 1, "invalid": 1}
    # turns: 2, 2, 2, 4, preference 1+1, document 1 -> sorted [1, 2, 2, 2, 2, 4]
    assert stats["turns"] == {"min": 1, "median": 2, "p95": 4, "max": 4}
    # user turns: hi, 你好, hi, "a b c", e -> 2, 2, 2, 5, 1
    assert stats["chars"]["user"] == {"min": 1, "median": 2, "p95": 5, "max": 5}
    # assistant: 11, 7, 11, 1, 3 -> sorted [1, 3, 7, 11, 11]
    assert stats["chars"]["assistant"] == {"min": 1, "median": 7, "p95": 11, "max": 11}
    assert stats["chars"]["chosen"] == {"min": 3, "median": 3, "p95": 3, "max": 3}
    assert stats["chars"]["system"] == {"min": 8, "median": 8, "p95": 8, "max": 8}
    assert stats["languages"] == {"zh": 1, "en": 4, "other": 1}
    assert stats["system_prompts"]["distinct"] == 1 and stats["system_prompts"]["records"] == 2
    assert stats["duplicates"] == 1
    assert stats["empty_fields"] == {"input": 4}


def test_stats_cli_json_and_tokenizer(thresher, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(["hello there hi a b c d e f g"], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(tmp_path / "tok")

    path = write_jsonl(tmp_path / "hand.jsonl", HAND_CHECKED)
    result = thresher("stats", path, "--json", "--tokenizer", tmp_path / "tok")
    assert result.returncode == 0, result.stderr
    (stats,) = json.loads(result.stdout)["files"]
    # Whitespace pre-tokenizer (words and punctuation runs) per assistant turn:
    # "hello there" 2, "你好，我是小州" 3 (你好 / ， / 我是小州), 2, "d" 1, "f g" 2 -> sorted [1, 2, 2, 2, 3]
    assert stats["tokens"]["assistant"] == {"min": 1, "median": 2, "p95": 3, "max": 3}
    assert stats["tokens"]["user"]["max"] == 3
    table = thresher("stats", path)
    assert table.returncode == 0 and "exact duplicates" in table.stdout and "chars p95" in table.stdout
    missing = thresher("stats", path, "--tokenizer", tmp_path / "nope")
    assert missing.returncode == 2 and "must be a local folder" in missing.stderr
