"""fastText quality classifier (train, guards, filter) and fastText language ID, on real models."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from thresher.curate.errors import ThresherError
from thresher.curate.filter.quality import QualityModel, prepare, read_texts, train

TOPICS_EN = ["rivers", "volcanoes", "bread", "libraries", "bicycles", "tides", "bees", "glaciers", "violins", "maps"]
TOPICS_ZH = ["河流", "火山", "面包", "图书馆", "自行车", "潮汐", "蜜蜂", "冰川", "小提琴", "地图"]
SPAM_EN = ["buy", "now", "cheap", "click", "free", "winner", "casino", "pills", "deal", "crypto", "bonus", "$$$"]
SPAM_ZH = ["点击", "免费", "领取", "优惠", "中奖", "加微信", "秒杀", "代购", "返利", "低价"]


def good_record(rng: random.Random) -> dict:
    if rng.random() < 0.5:
        topic = rng.choice(TOPICS_EN)
        answer = (f"{topic.capitalize()} are a fascinating subject. Scientists study {topic} to understand how "
                  f"the world works, and many people enjoy learning about the history of {topic} and their role "
                  f"in {rng.choice(['daily life', 'nature', 'culture', 'science'])}.")
        return {"instruction": f"Tell me about {topic}.", "input": "", "output": answer}
    topic = rng.choice(TOPICS_ZH)
    answer = (f"{topic}是一个很有意思的话题。科学家通过研究{topic}来了解世界的运行规律，"
              f"很多人也喜欢了解{topic}的历史以及它在{rng.choice(['日常生活', '自然', '文化', '科学'])}中的作用。")
    return {"instruction": f"介绍一下{topic}。", "input": "", "output": answer}


def bad_record(rng: random.Random) -> dict:
    if rng.random() < 0.5:
        words = " ".join(rng.choice(SPAM_EN) for _ in range(rng.randint(12, 30)))
        return {"instruction": f"Tell me about {rng.choice(TOPICS_EN)}.", "input": "", "output": words.upper() + "!!!"}
    words = "".join(rng.choice(SPAM_ZH) for _ in range(rng.randint(8, 20)))
    return {"instruction": f"介绍一下{rng.choice(TOPICS_ZH)}。", "input": "", "output": words + "！！！"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    rng = random.Random(1)
    folder = tmp_path_factory.mktemp("quality")
    return (write_jsonl(folder / "good.jsonl", [good_record(rng) for _ in range(300)]),
            write_jsonl(folder / "bad.jsonl", [bad_record(rng) for _ in range(300)]))


@pytest.fixture(scope="module")
def model_path(corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "quality.bin"
    metrics = train(read_texts(str(corpus[0])), read_texts(str(corpus[1])), path)
    assert metrics.f1 > 0.9
    return path


def test_prepare_segments_chinese_into_characters():
    assert prepare("你好World，\n再见 OK") == "你 好 world， 再 见 ok"


def test_train_cli_reports_held_out_f1(corpus, tmp_path, thresher):
    out = tmp_path / "q.bin"
    result = thresher("quality", "train", "--good", corpus[0], "--bad", corpus[1], "-o", out)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["heldout_good"] == 30 and metrics["heldout_bad"] == 30  # the 10% split, per class
    assert metrics["train_good"] == 270
    assert metrics["f1"] > 0.9 and metrics["precision"] > 0.9 and metrics["recall"] > 0.9
    assert "F1" in result.stdout


def test_quality_model_scores_and_filters(corpus, model_path, tmp_path, thresher):
    rng = random.Random(99)  # fresh records the model never saw
    fresh = [good_record(rng) for _ in range(20)] + [bad_record(rng) for _ in range(20)]
    scores = QualityModel(model_path).score([f"{r['instruction']}\n{r['output']}" for r in fresh])
    assert sum(s >= 0.5 for s in scores[:20]) >= 18 and sum(s < 0.5 for s in scores[20:]) >= 18
    data = write_jsonl(tmp_path / "in.jsonl", fresh)
    out = tmp_path / "out.jsonl"
    result = thresher("filter", data, "-o", out, "--quality-model", model_path, "--min-quality", "0.5")
    assert result.returncode == 0, result.stderr
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    removed = [json.loads(line) for line in (tmp_path / "out.removed.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(kept) + len(removed) == 40
    assert all(r["meta"]["filter"]["scores"]["quality"] >= 0.5 for r in kept)
    # Spam that loops a few words fails the repetition rule first; the quality model flags it too (`also`).
    quality_removed = [r for r in removed if r["reason"] == "quality"]
    assert len(quality_removed) + sum("quality" in r["detail"].get("also", []) for r in removed) >= 18
    assert all(r["detail"]["value"] < 0.5 and r["detail"]["min"] == 0.5 for r in quality_removed)


def test_too_few_records_is_a_clear_error(corpus, tmp_path):
    good = read_texts(str(corpus[0]))
    with pytest.raises(ThresherError, match="--bad has 5 usable records"):
        train(good, good[:5], tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists()


def test_unbalanced_classes_need_balance(corpus, tmp_path):
    good, bad = read_texts(str(corpus[0])), read_texts(str(corpus[1]))[:25]
    with pytest.raises(ThresherError, match="unbalanced .*--balance"):
        train(good, bad, tmp_path / "m.bin")
    metrics = train(good, bad, tmp_path / "m.bin", balance=True)
    assert metrics.train_good == metrics.train_bad == 23 and metrics.heldout_good == metrics.heldout_bad == 2


def test_nan_divergence_is_a_clear_error(corpus, tmp_path, thresher):
    result = thresher("quality", "train", "--good", corpus[0], "--bad", corpus[1], "-o", tmp_path / "m.bin",
                      "--lr", "1000")
    assert result.returncode == 2
    assert "NaN" in result.stderr and "lower --lr" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.bin").exists()


def test_invalid_training_record_names_file_and_line(corpus, tmp_path, thresher):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "input": "", "output": "fine"}\n{"instruction": "y", "output": 5}\n', encoding="utf-8")
    result = thresher("quality", "train", "--good", corpus[0], "--bad", bad, "-o", tmp_path / "m.bin")
    assert result.returncode == 2
    assert f"{bad}:2: output: must be a string, got number" in result.stderr


# --- language ID with a real fastText model ------------------------------------------------

SENTENCES = {
    "en": ["the weather is nice today", "we walked along the river", "she reads a book every week",
           "this road leads to the old town", "they cooked dinner for their friends"],
    "fr": ["le temps est beau aujourd'hui", "nous avons marché le long de la rivière", "elle lit un livre chaque semaine",
           "cette route mène à la vieille ville", "ils ont préparé le dîner pour leurs amis"],
    "zh": ["今天天气很好", "我们沿着河边散步", "她每周读一本书", "这条路通往老城", "他们为朋友做了晚饭"],
}


@pytest.fixture(scope="module")
def lid_model(tmp_path_factory) -> Path:
    import fasttext

    rng = random.Random(3)
    folder = tmp_path_factory.mktemp("lid")
    lines = []
    for _ in range(400):
        lang = rng.choice(sorted(SENTENCES))
        lines.append(f"__label__{lang} " + " ".join(rng.sample(SENTENCES[lang], 2)))
    (folder / "lid.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = fasttext.train_supervised(input=str(folder / "lid.txt"), epoch=20, lr=0.5, minn=1, maxn=3, verbose=0)
    model.save_model(str(folder / "lid.bin"))
    return folder / "lid.bin"


def test_lid_model_filters_by_language_and_confidence(lid_model, tmp_path, thresher):
    rows = [
        {"instruction": "the weather is nice today", "input": "", "output": "we walked along the river"},
        {"instruction": "le temps est beau aujourd'hui", "input": "", "output": "elle lit un livre chaque semaine"},
        {"instruction": "今天天气很好", "input": "", "output": "我们沿着河边散步"},
    ]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = thresher("filter", data, "-o", out, "--lid-model", lid_model, "--languages", "en,zh",
                      "--min-lang-confidence", "0.6")
    assert result.returncode == 0, result.stderr
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["meta"]["filter"]["scores"]["language"]["lang"] for r in kept] == ["en", "zh"]
    assert all(r["meta"]["filter"]["scores"]["language"]["confidence"] >= 0.6 for r in kept)
    removed = json.loads((tmp_path / "out.removed.jsonl").read_text(encoding="utf-8"))
    assert removed["reason"] == "language" and removed["detail"]["value"] == "fr"


def test_wrong_model_files_are_clear_errors(lid_model, tmp_path, thresher):
    data = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "hi", "input": "", "output": "hello"}])
    result = thresher("filter", data, "-o", tmp_path / "o.jsonl", "--quality-model", lid_model)
    assert result.returncode == 2 and "thresher quality train" in result.stderr
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    result = thresher("filter", data, "-o", tmp_path / "o.jsonl", "--lid-model", junk)
    assert result.returncode == 2 and "not a fastText model" in result.stderr and "Traceback" not in result.stderr
    result = thresher("filter", data, "-o", tmp_path / "o.jsonl", "--lid-model", tmp_path / "missing.ftz")
    assert result.returncode == 2 and "no such model file" in result.stderr
