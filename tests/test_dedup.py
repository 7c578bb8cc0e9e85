"""thresher dedup and duplicate_of(): exact, near (MinHash LSH), Chinese-aware, conservation."""

from __future__ import annotations

import itertools
import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from thresher.curate.dedup import minhash
from thresher.curate.dedup.clusters import duplicate_of
from thresher.curate.dedup.command import dedup
from thresher.curate.dedup.shingles import CJK, Shingler, exact_key, fold, normalize

# Thirty-character Chinese sentences, unrelated to each other.
ZH = [
    "今天上午我们全家去北京动物园看熊猫，后来又在餐厅里吃了午饭。",
    "这家公司的新产品很受欢迎，销售额比去年同期增长了百分之三十。",
    "学习外语需要长期坚持，每天练习听说读写才能掌握并且灵活运用。",
    "春天来了，公园里的花都开了，吸引了很多游客前来拍照和散步呢。",
    "他每天早上六点起床，先跑步半小时，然后骑自行车去学校上课了。",
]
# Sentences that share many common characters (我们, 的, 了, 是, 在, 一个) but say different things.
ZH_COMMON_A = "我们在一个很大的城市里工作了很多年，是的，我们的生活一直很忙碌。"
ZH_COMMON_B = "是我们的老师在一个小的教室里给了大家很多的书，我们都很喜欢了。"

EN = (
    "The committee met on Tuesday to review the proposed budget for the coming fiscal year, "
    "and after a long debate the members agreed to increase funding for public libraries, "
    "repair several bridges in the northern district, and hire additional staff for the "
    "city's emergency services department before the winter season begins in earnest."
)
EN_OTHER = (
    "Our hiking group left the trailhead at dawn, climbed steadily through pine forests and "
    "rocky meadows, and reached the summit just before noon, where we ate sandwiches, "
    "watched hawks circling overhead, and took photographs of the glacier-fed lakes below us."
)


def change_char(text: str, position: int) -> str:
    """``text`` with the character at ``position`` replaced by one not in the text."""
    replacement = next(c for c in "鑫淼犇骉焱垚" if c not in text)
    return text[:position] + replacement + text[position + 1 :]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- normalisation, shingles, signatures


def test_exact_key_ignores_case_width_whitespace_and_punctuation():
    base = "Hello World, this is 小州！"
    variants = ["hello world this is 小州", "ＨＥＬＬＯ　ｗｏｒｌｄ，  this is 小州。", "HELLO\tWORLD\n\nthis   is 小州!!"]
    assert {exact_key(v) for v in variants} == {exact_key(base)}
    assert normalize(base) == "hello world this is 小州"
    assert exact_key("hello world") != exact_key("hello word")
    assert exact_key("1+1=2") != exact_key("1=1+2"), "symbols are content, not punctuation"


def reference_shingles(text: str, cjk_n: int = 3, word_n: int = 5) -> set[tuple[str, ...]]:
    """The shingling rule written plainly: tokens by regex, script runs, n-grams per run."""
    tokens = re.findall(rf"([{CJK}])|([^\W_{CJK}]+)", fold(text))
    shingles: set[tuple[str, ...]] = set()
    for is_cjk, run in itertools.groupby(tokens, key=lambda t: bool(t[0])):
        words = [cjk or word for cjk, word in run]
        n = cjk_n if is_cjk else word_n
        for i in range(max(1, len(words) - n + 1)):
            shingles.add(("cjk" if is_cjk else "word", *words[i : i + n]))
    return shingles


MIXED = [
    "我喜欢用Python写代码，真的 very much fun! 日本語のテキストと한국어",
    "Hello, world",
    "我喜欢用Python写代码，真的 very much fun!",
    "ＡＢＣ ｄｅｆ，中文。Ünïcödé wörds — and_underscores 42 times",
    json.loads('"half an emoji \\ud83d in JSON 😀 and 𠀀𠀁𠀂 ext-B"'),
    "abc def 中文 ünïcödé words and underscores 42",
    "",
    "。！",
    EN,
    ZH[0] + EN_OTHER,
]


def test_vectorised_shingles_match_the_plain_rule():
    """Batch hashing gives the same sets (up to hashing) as the rule above, for every pair of texts."""
    sets = Shingler().shingle_sets(MIXED)
    reference = [reference_shingles(t) for t in MIXED]
    for mine, theirs in zip(sets, reference):
        assert len(mine) == len(theirs)
    for i, j in itertools.combinations(range(len(MIXED)), 2):
        union = len(reference[i] | reference[j])
        expected = len(reference[i] & reference[j]) / union if union else 1.0
        assert minhash.jaccard(sets[i], sets[j]) == pytest.approx(expected), (MIXED[i], MIXED[j])
    # Batching does not change a text's shingles.
    assert all(np.array_equal(a, b) for a, b in zip(sets, (Shingler().shingle_sets([t])[0] for t in MIXED)))


def test_shingles_are_character_ngrams_for_chinese_and_word_ngrams_for_english():
    shingler = Shingler(cjk_ngram=3, word_ngram=5)
    sets = shingler.shingle_sets([ZH[0], EN, "short", "", "。！"])
    hanzi = len(ZH[0]) - 2  # 30 characters, two of them punctuation
    assert len(sets[0]) == hanzi - 2, "3-grams run across the punctuation inside a CJK run"
    assert len(sets[1]) == len(re.findall(r"\w+", EN)) - 4
    assert len(sets[2]) == 1, "a run shorter than n is one shingle"
    assert len(sets[3]) == len(sets[4]) == 0
    # One changed character changes exactly the three 3-grams that cover it.
    changed = shingler.shingle_sets([change_char(ZH[0], 15)])[0]
    assert len(np.intersect1d(sets[0], changed)) == len(sets[0]) - 3


def test_signatures_equal_datasketch_minhash():
    from datasketch import MinHash

    shingler = Shingler()
    rng = random.Random(3)
    long_text = " ".join(rng.choice(EN.split()) + str(i % 97) for i in range(minhash._CHUNK_SHINGLES + 500))
    values, counts = shingler.hashes([EN, ZH[1], "", "混合 mixed text 文本", long_text, EN_OTHER])
    assert counts[4] > minhash._CHUNK_SHINGLES, "one record longer than a signature chunk"
    sigs = minhash.signatures(values, counts, 64)
    ends = np.cumsum(counts)
    for i, (start, end) in enumerate(zip(ends - counts, ends)):
        reference = MinHash(num_perm=64, seed=minhash.SEED, hashfunc=int)
        reference.update_batch(values[start:end].tolist())
        assert np.array_equal(reference.hashvalues, sigs[i]), i


def test_lsh_params_are_datasketchs_optimum_for_the_threshold():
    from datasketch import MinHashLSH

    for threshold in (0.5, 0.7, 0.8, 0.9):
        lsh = MinHashLSH(threshold=threshold, num_perm=128, weights=minhash.LSH_WEIGHTS)
        assert minhash.lsh_params(threshold, 128) == (lsh.b, lsh.r)
    bands, rows = minhash.lsh_params(0.8, 128)
    assert bands * rows <= 128
    assert 1 - (1 - 0.85**rows) ** bands > 0.95, "a pair at 0.85 must almost always become a candidate"


# ---------------------------------------------------------------- duplicate_of()


def test_duplicate_of_finds_exact_duplicates_first_occurrence_wins():
    texts = ["Hello World", "hello   world!", "ＨＥＬＬＯ ＷＯＲＬＤ", "something else entirely", "Hello World"]
    assert duplicate_of(texts) == [None, 0, 0, None, 0]
    assert duplicate_of([]) == []


@pytest.mark.parametrize("position", [0, 7, 15, 29])
def test_chinese_one_character_change_is_found_at_0_7(position):
    texts = [*ZH, *(change_char(s, position) for s in ZH)]
    assert all(len(s) == 30 for s in ZH)
    assert duplicate_of(texts, threshold=0.7) == [None] * 5 + [0, 1, 2, 3, 4]


def test_unrelated_chinese_sentences_sharing_common_characters_are_kept():
    shared = set(ZH_COMMON_A) & set(ZH_COMMON_B) - set("，。")
    assert len(shared) >= 10, "the two sentences must really share many characters"
    assert duplicate_of([ZH_COMMON_A, ZH_COMMON_B], threshold=0.7) == [None, None]
    assert duplicate_of([ZH_COMMON_A, ZH_COMMON_B], threshold=0.5) == [None, None]
    assert duplicate_of(ZH, threshold=0.5) == [None] * 5


def test_english_near_duplicates():
    words = EN.split()
    edited = " ".join(words[:20] + ["Wednesday"] + words[21:])  # one word changed in a 60-word text
    assert duplicate_of([EN, EN_OTHER, edited], threshold=0.8) == [None, None, 0]
    # Heavily rewritten: half the words changed is no longer a duplicate.
    rng = random.Random(0)
    rewritten = " ".join(w if i % 2 else rng.choice(["alpha", "beta", "gamma"]) for i, w in enumerate(words))
    assert duplicate_of([EN, rewritten], threshold=0.8) == [None, None]


def test_mixed_script_near_duplicates():
    a = "使用Python的pandas库读取CSV文件，然后用matplotlib画出销售额随时间变化的折线图，最后保存为PNG图片。"
    b = "使用Python的pandas库读取CSV文件，然后用matplotlib画出销售额随时间变化的柱状图，最后保存为PNG图片。"
    other = "使用Java的Spring框架搭建一个REST服务，然后连接MySQL数据库，并且部署到Linux服务器上运行。"
    assert duplicate_of([a, other, b], threshold=0.7) == [None, None, 0]
    english_changed = a.replace("pandas", "polars").replace("matplotlib", "seaborn")
    assert duplicate_of([a, english_changed], threshold=0.7) == [None, 0]
    # The English words count: a text whose Chinese is the same but every English word differs is not a copy.
    other_words = "使用Rust的serde库读取JSON文件，然后用plotters画出销售额随时间变化的折线图，最后保存为SVG图片。"
    assert duplicate_of([a, other_words], threshold=0.8) == [None, None]


def test_ngram_controls_sensitivity_on_short_texts():
    q1, q2 = "What is your name?", "What's your name?"
    assert duplicate_of([q1, q2], threshold=0.5, ngram=1) == [None, 0]
    assert duplicate_of([q1, q2], threshold=0.5) == [None, None], "5-grams of a 4-word question barely overlap"


# ---------------------------------------------------------------- the command


def corpus(tmp_path: Path) -> tuple[Path, list[dict]]:
    """A mixed file: documents with exact and near copies, a broken line, an unrelated record."""
    rows = [
        {"text": EN},
        {"text": ZH[0]},
        {"text": EN.upper()},  # exact
        {"text": EN_OTHER},
        {"text": change_char(ZH[0], 10)},  # near
        {"text": ZH_COMMON_A},
        {"text": ZH_COMMON_B},
        {"text": "  ".join(EN_OTHER.split())},  # exact (whitespace)
    ]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("{broken json\n")
        handle.write(json.dumps({"neither": "text nor messages"}) + "\n")
    return path, rows


def assert_conserved(inputs: list[Path], out: Path, removed: Path) -> None:
    """Kept plus removed is exactly the input, as a multiset of records."""
    def key(value) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    expected: Counter[str] = Counter()
    for path in inputs:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    expected[key(json.loads(line))] += 1
                except json.JSONDecodeError:
                    expected[key(line)] += 1
    got = Counter(key(r) for r in read_jsonl(out)) + Counter(key(r["record"]) for r in read_jsonl(removed))
    assert got == expected


def test_cli_removes_exact_and_near_with_reasons(tmp_path, thresher):
    path, rows = corpus(tmp_path)
    out = tmp_path / "out.jsonl"
    result = thresher("dedup", path, "-o", out, "--threshold", "0.7", check=True)
    assert "thresher dedup" in result.stdout
    kept = read_jsonl(out)
    assert kept == [rows[i] for i in (0, 1, 3, 5, 6)], "kept records keep their shape and order"
    removed = read_jsonl(tmp_path / "out.removed.jsonl")
    dups = {r["line"]: r["detail"] for r in removed if r["reason"] == "duplicate"}
    assert set(dups) == {3, 5, 8}
    assert dups[3]["kind"] == dups[8]["kind"] == "exact" and dups[3]["similarity"] == 1.0
    assert dups[5]["kind"] == "near" and 0.7 <= dups[5]["similarity"] < 1.0
    assert dups[5]["duplicate_of_source"] == f"{path}:2"
    from thresher.curate.io.formats import to_record

    assert dups[3]["duplicate_of"] == to_record(rows[0]).id
    invalid = [r for r in removed if r["reason"] == "invalid"]
    assert [r["line"] for r in invalid] == [9, 10]
    assert invalid[0]["record"] == "{broken json" and invalid[0]["detail"]["error"].startswith("invalid JSON")
    assert invalid[1]["detail"]["error"].startswith("unrecognised record format")
    stats = json.loads((tmp_path / "out.stats.json").read_text())
    assert stats["in"] == 10 and stats["kept"] == 5
    assert stats["removed"] == {"duplicate": 3, "invalid": 2}
    assert stats["duplicates"] == {"exact": 2, "near": 1, "against": 0}
    assert stats["lsh"] == dict(zip(("bands", "rows"), minhash.lsh_params(0.7, 128)))
    assert stats["verify"] is True and stats["peak_memory_mb"]["main"] > 0
    assert_conserved([path], out, tmp_path / "out.removed.jsonl")


def test_exact_only_keeps_near_duplicates(tmp_path):
    path, _ = corpus(tmp_path)
    stats = dedup([str(path)], str(tmp_path / "out.jsonl"), exact_only=True, threshold=0.7)
    assert stats["duplicates"] == {"exact": 2, "near": 0, "against": 0}
    assert stats["lsh"] is None


@pytest.mark.parametrize("verify", [True, False])
def test_conservation_and_determinism(tmp_path, verify):
    """Random corpora with planted copies: kept + removed == input, and reruns are identical."""
    rng = random.Random(7)
    vocabulary = EN.split() + EN_OTHER.split()
    rows = []
    for i in range(300):
        if rows and rng.random() < 0.4:
            source = rng.choice(rows)
            text = source.get("text") or source["instruction"]
            words = text.split()
            if len(words) > 1 and rng.random() < 0.5:
                words[rng.randrange(len(words))] = rng.choice(vocabulary)
            text = " ".join(words)
        else:
            text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(3, 40)))
        rows.append({"text": text} if i % 3 else {"instruction": text, "input": "", "output": f"answer {i % 7}"})
    first = write_jsonl(tmp_path / "a.jsonl", rows[:150])
    second = write_jsonl(tmp_path / "b.jsonl", rows[150:])
    outputs = []
    for run in range(2):
        out = tmp_path / f"out{run}.jsonl"
        dedup([str(first), str(second)], str(out), verify=verify, keep="longest", workers=1)
        outputs.append((out.read_bytes(), (tmp_path / f"out{run}.removed.jsonl").read_bytes()))
        assert_conserved([first, second], out, tmp_path / f"out{run}.removed.jsonl")
    assert outputs[0] == outputs[1]
    assert 0 < len(read_jsonl(tmp_path / "out0.removed.jsonl")) < len(rows)


def test_workers_give_the_same_result_as_one_process(tmp_path, monkeypatch):
    """The shipped general sample twice over, through a process pool: every copy is an exact duplicate."""
    import thresher.curate.dedup.passes as module

    monkeypatch.setattr(module, "BATCH", 32)  # several batches, so the pool really runs
    source = Path(__file__).resolve().parents[1] / "examples" / "general_sample.jsonl"
    results = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.jsonl"
        stats = dedup([str(source), str(source)], str(out), workers=workers)
        results.append((out.read_bytes(), (tmp_path / f"w{workers}.removed.jsonl").read_bytes()))
        assert stats["in"] == 480 and stats["duplicates"]["exact"] >= 240
    assert results[0] == results[1]
    removed = [json.loads(line) for line in results[0][1].decode().splitlines()]
    assert sum(r["detail"]["kind"] == "exact" for r in removed) >= 240


def test_the_workers_memory_is_reported(tmp_path, thresher):
    """In a fresh process, so the only child processes are dedup's own: none with one worker."""
    rows = [{"text": f"document {i} " + " ".join(f"w{(i * 7 + j) % 997}" for j in range(12))} for i in range(2500)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    for workers in (1, 2):
        out = tmp_path / f"out{workers}.jsonl"
        thresher("dedup", source, "-o", out, "--workers", workers, check=True)
        memory = json.loads((tmp_path / f"out{workers}.stats.json").read_text())["peak_memory_mb"]
        assert memory["main"] > 0 and (memory["workers"] > 0) == (workers > 1), memory


def test_against_removes_contamination_without_deduplicating_the_reference(tmp_path, thresher):
    eval_rows = [
        {"instruction": ZH[0], "output": "答案一"},
        {"instruction": ZH[0], "output": "答案一"},  # duplicated inside the eval set: not our business
        {"instruction": EN, "output": "yes"},
    ]
    eval_file = write_jsonl(tmp_path / "eval.jsonl", eval_rows)
    train_rows = [
        {"instruction": change_char(ZH[0], 3), "output": "答案一"},  # near an eval record
        {"instruction": EN.lower(), "output": "yes"},  # exact copy of an eval record
        {"instruction": ZH[1], "output": "另一个答案"},
        {"instruction": ZH[1], "output": "另一个答案"},  # duplicate inside the training data
        {"instruction": ZH[2], "output": "第三个"},
    ]
    train = write_jsonl(tmp_path / "train.jsonl", train_rows)
    out = tmp_path / "clean.jsonl"
    thresher("dedup", train, "-o", out, "--against", eval_file, "--threshold", "0.7", check=True)
    assert read_jsonl(out) == [train_rows[2], train_rows[4]]
    removed = {r["line"]: r["detail"] for r in read_jsonl(tmp_path / "clean.removed.jsonl")}
    assert removed[1]["duplicate_of_source"] == f"{eval_file}:1" and removed[1]["kind"] == "near"
    assert removed[2]["duplicate_of_source"] == f"{eval_file}:3" and removed[2]["kind"] == "exact"
    assert removed[4]["duplicate_of_source"] == f"{train}:3"
    stats = json.loads((tmp_path / "clean.stats.json").read_text())
    assert stats["in"] == 5 and stats["duplicates"]["against"] == 2 and stats["against_records"] == 3
    assert_conserved([train], out, tmp_path / "clean.removed.jsonl")


def test_on_prompt_and_response_for_dialogues(tmp_path):
    rows = [
        {"messages": [{"role": "system", "content": "You are 小州."},
                      {"role": "user", "content": EN}, {"role": "assistant", "content": ZH[0]}]},
        {"messages": [{"role": "system", "content": "Different system prompt."},
                      {"role": "user", "content": EN}, {"role": "assistant", "content": ZH[1]}]},
        {"conversations": [{"from": "human", "value": EN_OTHER}, {"from": "gpt", "value": ZH[0]}]},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)

    def removed_lines(on: str) -> list[int]:
        dedup([str(path)], str(tmp_path / f"{on}.jsonl"), on=on)
        return [r["line"] for r in read_jsonl(tmp_path / f"{on}.removed.jsonl")]

    assert removed_lines("prompt") == [2]
    assert removed_lines("response") == [3]
    assert removed_lines("all") == []
    assert removed_lines("auto") == []


def test_keep_longest_and_score(tmp_path):
    rows = [
        {"instruction": EN, "output": "short", "meta": {"score": 0.2}},
        {"instruction": EN + "!", "output": "short but longer", "meta": {"score": 0.9}},
        {"instruction": EN.upper(), "output": "short", "meta": {"score": 0.5}},
    ]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    for keep, survivor in (("first", 0), ("longest", 1), ("score:meta.score", 1)):
        out = tmp_path / f"{keep.replace(':', '_')}.jsonl"
        dedup([str(path)], str(out), keep=keep, on="prompt")
        assert read_jsonl(out) == [rows[survivor]], keep
    out = tmp_path / "neg.jsonl"
    rows[1]["meta"]["score"] = -1
    write_jsonl(path, rows)
    dedup([str(path)], str(out), keep="score:meta.score", on="prompt")
    assert read_jsonl(out) == [rows[2]]


def test_clear_errors(tmp_path, thresher):
    path, _ = corpus(tmp_path)
    bad_keep = thresher("dedup", path, "-o", tmp_path / "o.jsonl", "--keep", "biggest")
    assert bad_keep.returncode == 2 and "--keep must be first, longest or score:FIELD" in bad_keep.stderr
    bad_threshold = thresher("dedup", path, "-o", tmp_path / "o.jsonl", "--threshold", "1.5")
    assert bad_threshold.returncode == 2 and "--threshold" in bad_threshold.stderr
    bad_output = thresher("dedup", path, "-o", tmp_path / "o.txt")
    assert bad_output.returncode == 2 and "unsupported output type" in bad_output.stderr
    missing = thresher("dedup", tmp_path / "nope.jsonl", "-o", tmp_path / "o.jsonl")
    assert missing.returncode == 2 and "nope.jsonl: no such file" in missing.stderr
    assert "Traceback" not in bad_keep.stderr + bad_threshold.stderr + bad_output.stderr + missing.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_help_documents_against(thresher):  # heavy imports at --help: tests/test_cli.py checks every command
    assert "--against" in thresher("dedup", "--help").stdout


def test_record_text_for_every_kind():
    from thresher.curate.dedup.command import record_text
    from thresher.curate.errors import RecordError
    from thresher.curate.io.formats import to_record

    qa = to_record({"question": "Q?", "answer": "A.", "system": "S"})
    assert [record_text(qa, on) for on in ("prompt", "response", "all")] == ["Q?", "A.", "Q?\nA."]
    preference = to_record({"prompt": "P?", "chosen": "good", "rejected": "bad"})
    assert record_text(preference, "response") == "good\nbad" and record_text(preference, "prompt") == "P?"
    scored = to_record({"prompt": "P?", "outputs": [{"response": "r1", "score": 1}, {"response": "r2", "score": 0}]})
    assert record_text(scored, "auto") == "P?\nr1\nr2"
    document = to_record({"text": "corpus text"})
    assert record_text(document, "auto") == record_text(document, "text") == "corpus text"
    with pytest.raises(RecordError, match="a document has no prompt"):
        record_text(document, "prompt")


def test_json_output_and_explicit_sidecars(tmp_path, peer_data):
    out, removed, stats = tmp_path / "kept.json", tmp_path / "r.jsonl", tmp_path / "s.json"
    result = dedup([str(peer_data / "identity.json")], str(out), removed=str(removed), stats=str(stats),
                   threshold=0.7, on="response")
    kept = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(kept, list) and len(kept) == result["kept"] > 0
    assert json.loads(stats.read_text())["in"] == len(kept) + len(read_jsonl(removed))
    # identity.json answers are templated near-copies of each other: many go, none as "invalid".
    assert all(r["reason"] == "duplicate" for r in read_jsonl(removed)) and result["removed_total"] > 10


def test_against_when_every_input_is_contaminated(tmp_path):
    rows = [{"text": EN}, {"text": ZH[0]}, {"text": EN.upper()}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    stats = dedup([str(path)], str(tmp_path / "out.jsonl"), against=[str(path)])
    assert stats["kept"] == 0 and stats["duplicates"] == {"exact": 3, "near": 0, "against": 3}
    removed = read_jsonl(tmp_path / "out.removed.jsonl")
    assert [r["detail"]["duplicate_of_source"] for r in removed] == [f"{path}:1", f"{path}:2", f"{path}:1"]
