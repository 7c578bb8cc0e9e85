"""``thresher synth`` end to end: the real console script against a real local server.

The server runs in this process (tests/fake_openai.py) and counts what it
receives, so "never repeats a finished request" is checked server-side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from fake_openai import (
    ID_FLAGS, KEY, FakeOpenAI, Reply, api_flags, echo_responder, last_user, persona_responder, wants_schema,
)

from thresher.curate.text.identity import check_answer
from thresher.prompts.banks import CATEGORIES
from thresher.schemas import QA, Identity, Preference, Scored

IDENTITY = Identity(name="小州", author="神州数码", name_en="Xiaozhou", author_en="Digital China")
COMPETITOR_WORDS = ("ChatGPT", "GPT", "Claude", "Qwen", "通义", "文心", "ERNIE", "GLM", "Llama", "Gemini", "DeepSeek",
                    "Kimi", "豆包", "Doubao", "Mistral", "星火", "OpenAI", "Anthropic", "百度", "Baidu", "阿里", "Alibaba",
                    "Meta", "智谱", "Zhipu")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_key_nowhere(tmp_path: Path, *outputs: str) -> None:
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path
    for text in outputs:
        assert KEY not in text


# --- identity, offline -------------------------------------------------------------------------


def test_offline_is_the_default_and_gives_300_distinct_valid_records_per_language(tmp_path, thresher):
    out = tmp_path / "identity.jsonl"
    result = thresher("synth", "identity", *ID_FLAGS, "-n", "700", "-o", out, check=True)
    records = lines(out)
    assert len(records) == 700
    by_lang = Counter(r["meta"]["lang"] for r in records)
    assert by_lang == {"zh": 350, "en": 350}
    for lang in ("zh", "en"):
        mine = [r for r in records if r["meta"]["lang"] == lang]
        assert len({(r["question"], r["answer"]) for r in mine}) >= 300
        assert {r["meta"]["category"] for r in mine} == set(CATEGORIES)
    for record in records:
        QA.model_validate(record)  # canonical shape, no placeholder left
        assert "system" not in record  # identity must hold without a system prompt
        assert record["meta"]["backend"] == "offline" and record["meta"]["template_hash"]
        category, lang, answer = record["meta"]["category"], record["meta"]["lang"], record["answer"]
        assert check_answer(category, answer, IDENTITY, lang).passed, record
        name, author = ("小州", "神州数码") if lang == "zh" else ("Xiaozhou", "Digital China")
        if category in ("who", "name", "author", "competitor"):
            assert name in answer
        if category == "author":
            assert author in answer
        if category == "competitor":
            assert "不" in answer if lang == "zh" else ("not" in answer or "No" in answer)
    assert "offline" in result.stderr
    assert thresher("validate", out).returncode == 0


def test_offline_system_flag_and_languages(tmp_path, thresher):
    out = tmp_path / "zh.jsonl"
    thresher("synth", "identity", "--name", "Nova", "--author", "Acme Labs", "-n", "20", "--lang", "en",
             "--system", "-o", out, check=True)
    records = lines(out)
    assert len(records) == 20 and {r["meta"]["lang"] for r in records} == {"en"}
    assert all("## Rules" in r["system"] and "Nova" in r["system"] and "Acme Labs" in r["system"] for r in records)
    custom = tmp_path / "custom.jsonl"
    thresher("synth", "identity", "--name", "Nova", "--author", "Acme Labs", "-n", "4", "--system", "Be brief.",
             "-o", custom, check=True)
    assert {r["system"] for r in lines(custom)} == {"Be brief."}


def test_identity_usage_errors_are_one_line(tmp_path, thresher):
    result = thresher("synth", "identity", "--name", "X", "-o", tmp_path / "o.jsonl")
    assert result.returncode == 2 and "--author" in result.stderr and "Traceback" not in result.stderr
    result = thresher("synth", "identity", *ID_FLAGS, "--lang", "fr", "-o", tmp_path / "o.jsonl")
    assert result.returncode == 2 and "fr" in result.stderr


# --- identity, API -----------------------------------------------------------------------------


def test_identity_through_the_api_checks_every_answer(tmp_path, thresher):
    good = persona_responder("小州", "神州数码", "Xiaozhou", "Digital China")

    def sometimes_wrong(body):
        question = last_user(body)
        if not wants_schema(body, "paraphrases") and any(c in question for c in COMPETITOR_WORDS):
            return Reply("Yes, I am GPT-4, made by OpenAI.")  # must be caught and rejected
        return good(body)

    out = tmp_path / "identity.jsonl"
    with FakeOpenAI(sometimes_wrong, reject_json_schema=True) as server:
        result = thresher("synth", "identity", *ID_FLAGS, "-n", "80", "--paraphrases", "2", "-o", out,
                          *api_flags(server), check=True)
        sent = len(server.requests)
    records = lines(out)
    rejects = lines(tmp_path / "identity.rejects.jsonl")
    questions = lines(tmp_path / "identity.questions.jsonl")
    assert questions and all(q["paraphrase_of"] for q in questions)  # the LLM's paraphrases of bank questions
    assert len(records) == 80, "-n is a promise: failed answers are replaced by further questions"
    assert Counter(r["meta"]["lang"] for r in records) == {"zh": 40, "en": 40}
    rejects = [r for r in rejects if r["reason"] != "duplicate"]  # paraphrase jobs whose rewrites were all known
    for record in records:
        meta = record["meta"]
        assert check_answer(meta["category"], record["answer"], IDENTITY, meta["lang"]).passed
        assert meta["backend"] == "openai-compatible" and meta["model"] == "fake-model"
        assert meta["template"] == f"identity/system.{meta['lang']}.md" and meta["template_hash"]
        assert meta["temperature"] == 0.7 and meta["created"] and meta["request"]
    assert len(rejects) >= 8  # the balanced pick holds 4+ competitor questions per language
    for reject in rejects:
        assert reject["reason"] == "identity_check"
        assert any(c.startswith("claims_competitor") for c in reject["detail"]["checks"])
        assert reject["detail"]["raw"] == "Yes, I am GPT-4, made by OpenAI."
    # Each failing answer was asked again (--reasks 2) with the rule it broke, in the question's language.
    followups = [b["messages"][-1]["content"] for b in server.requests if len(b["messages"]) > 2]
    assert len(followups) == 2 * len(rejects)  # --reasks 2: two more requests per failed question
    assert any("你不是GPT-4" in f for f in followups) and any("you are not GPT-4" in f for f in followups)
    stats = json.loads((tmp_path / "identity.stats.json").read_text())
    assert stats["client"]["structured_mode"] == "json_object"
    assert stats["client"]["requests_sent"] == sent
    assert stats["client"]["usage"]["prompt_tokens"] > 0
    assert_key_nowhere(tmp_path, result.stdout, result.stderr)

    # Rerunning the same command sends nothing: every request is finished (written or rejected).
    with FakeOpenAI(sometimes_wrong, reject_json_schema=True) as server:
        thresher("synth", "identity", *ID_FLAGS, "-n", "80", "--paraphrases", "2", "-o", out, *api_flags(server), check=True)
        assert server.requests == []
    assert lines(out) == records


# --- answers: resume, rejects, redaction ------------------------------------------------------


def test_answers_resume_after_kill_without_duplicates_or_repeats(tmp_path):
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(f"question number {i}" for i in range(60)) + "\n", encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    exe = Path(sys.executable).with_name("thresher")
    with FakeOpenAI(echo_responder, latency=0.1) as server:
        command = [str(exe), "synth", "answers", str(questions), "-o", str(out), *api_flags(server, "--concurrency", "2")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if out.exists() and out.read_text(encoding="utf-8").count("\n") >= 12:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        first_run = [last_user(body) for body in server.requests]
        done = {r["question"] for r in lines(out)}
        assert 12 <= len(done) < 60, "the kill must land mid-run"
        server.requests.clear()
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
        second_run = [last_user(body) for body in server.requests]
    records = lines(out)
    assert len(records) == 60 and len({r["question"] for r in records}) == 60, "no duplicates"
    assert {r["question"] for r in records} == {f"question number {i}" for i in range(60)}
    assert not done & set(second_run), "a finished request was sent again"
    assert len(second_run) == len(set(second_run)) == 60 - len(done)
    assert set(first_run) | set(second_run) == {f"question number {i}" for i in range(60)}
    assert all(r["answer"] == f"answer to: {r['question']}" for r in records)


def test_failed_requests_go_to_rejects_and_are_not_resent(tmp_path, thresher):
    questions = tmp_path / "q.txt"
    questions.write_text("fine one\nplease refuse\ncut me off\nfine two\nblank please\nbroken server\n", encoding="utf-8")

    def responder(body):
        question = last_user(body)
        return {
            "please refuse": Reply(content=None, refusal="I won't."),
            "cut me off": Reply("half an answ", finish_reason="length"),
            "blank please": Reply(""),
            "broken server": Reply(status=500, error="internal failure"),
        }.get(question) or echo_responder(body)

    out = tmp_path / "a.jsonl"
    with FakeOpenAI(responder) as server:
        thresher("synth", "answers", questions, "-o", out, *api_flags(server, "--max-retries", "1"), check=True)
        assert sorted(r["question"] for r in lines(out)) == ["fine one", "fine two"]
        rejects = {r["record"]: r for r in lines(tmp_path / "a.rejects.jsonl")}
        assert {q: r["reason"] for q, r in rejects.items()} == {
            "please refuse": "refusal", "cut me off": "length", "blank please": "blank", "broken server": "http_500",
        }
        assert rejects["cut me off"]["detail"]["raw"] == "half an answ"
        assert rejects["please refuse"]["detail"]["raw"] == "I won't."
        assert rejects["cut me off"]["file"] == str(questions) and rejects["cut me off"]["line"] == 3
        stats = json.loads((tmp_path / "a.stats.json").read_text())["stages"][0]
        assert stats["in"] == 6 and stats["succeeded"] == 2 and stats["failed_total"] == 4

        server.requests.clear()
        thresher("synth", "answers", questions, "-o", out, *api_flags(server), check=True)
        assert server.requests == []  # rejected requests are finished too
        thresher("synth", "answers", questions, "-o", out, "--retry-rejects", *api_flags(server), check=True)
        assert sorted(last_user(b) for b in server.requests if last_user(b) != "broken server") == [
            "blank please", "cut me off", "please refuse"]
    assert len(lines(out)) == 2


def test_api_key_never_appears_in_output_rejects_stats_or_messages(tmp_path, thresher, monkeypatch):
    questions = tmp_path / "q.txt"
    questions.write_text("echo my key\nfail with my key\nanswer normally\n", encoding="utf-8")

    def leaky(body):
        question = last_user(body)
        if question == "echo my key":
            return Reply("your header was {auth}", finish_reason="length")
        if question == "fail with my key":
            return Reply(status=503, error="upstream rejected {auth}")
        return echo_responder(body)

    with FakeOpenAI(leaky) as server:
        result = thresher("synth", "answers", questions, "-o", tmp_path / "a.jsonl", *api_flags(server, "--max-retries", "0"))
        assert all(h["authorization"] == f"Bearer {KEY}" for h in server.headers)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        env_result = thresher("synth", "answers", questions, "-o", tmp_path / "b.jsonl", "--model", "m", "--max-retries", "0")
    assert result.returncode == 0 and env_result.returncode == 0
    rejects = (tmp_path / "a.rejects.jsonl").read_text()
    assert "[redacted]" in rejects
    assert_key_nowhere(tmp_path, result.stdout, result.stderr, env_result.stdout, env_result.stderr)


def test_bad_key_is_a_one_line_error_without_the_key(tmp_path, thresher):
    questions = tmp_path / "q.txt"
    questions.write_text("hello\n", encoding="utf-8")
    with FakeOpenAI(lambda body: Reply(status=401, error="Incorrect API key provided: {auth}")) as server:
        result = thresher("synth", "answers", questions, "-o", tmp_path / "a.jsonl", *api_flags(server))
    assert result.returncode == 2
    assert "401" in result.stderr and "Traceback" not in result.stderr
    assert_key_nowhere(tmp_path, result.stdout, result.stderr)


def test_answers_in_character_from_a_profile_and_record_input(tmp_path, thresher):
    profile = tmp_path / "me.yaml"
    profile.write_text("name: 小州\nauthor: 神州数码\nname_en: Xiaozhou\nauthor_en: Digital China\n", encoding="utf-8")
    data = tmp_path / "in.json"
    data.write_text(json.dumps([{"instruction": "你是谁？", "input": "", "output": "old"},
                                {"instruction": "Who made you?", "input": "", "output": "old"}], ensure_ascii=False))
    out = tmp_path / "a.jsonl"
    with FakeOpenAI(persona_responder("小州", "神州数码", "Xiaozhou", "Digital China")) as server:
        thresher("synth", "answers", data, "--profile", profile, "-o", out, *api_flags(server), check=True)
        systems = [body["messages"][0]["content"] for body in server.requests]
    assert any("# Role: 小州" in s and "## Initialization" in s for s in systems)
    assert any("# Role: Xiaozhou" in s and "Digital China" in s for s in systems)
    records = lines(out)
    assert all("system" not in r for r in records)  # --keep-system not given
    assert {r["question"] for r in records} == {"你是谁？", "Who made you?"}
    assert {r["meta"]["template"] for r in records} == {"identity/system.zh.md", "identity/system.en.md"}


# --- paraphrase and preference ----------------------------------------------------------------


WRAPPERS = {"zh": ("请你帮我完成这个任务，谢谢：", "今天我需要你做的事情是这样的："),
            "en": ("Could you help me with this task, please? ", "Here is what I need you to do today: ")}


def test_paraphrase_writes_distinct_rewrites_and_keeps_answers(tmp_path, thresher):
    data = tmp_path / "in.jsonl"
    data.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in [
            {"instruction": "翻译成英文", "input": "", "output": "Translate into English"},
            {"instruction": "Summarize the text.", "input": "", "output": "A summary."},
        ]) + "\n", encoding="utf-8")

    def rewriter(body):
        text = last_user(body).strip().rsplit("\n", 1)[-1]
        # 1 echo, 1 repeat; the others differ enough to survive near-dedup
        ask, need = WRAPPERS["zh" if "翻译" in text else "en"]
        rewrites = [f"{text}!", ask + text, ask + text, need + text]
        return Reply(json.dumps({"paraphrases": rewrites}, ensure_ascii=False))

    out = tmp_path / "p.jsonl"
    with FakeOpenAI(rewriter) as server:
        thresher("synth", "paraphrase", data, "-o", out, "-k", "4", *api_flags(server), check=True)
        assert len(server.requests) == 2
    records = lines(out)
    questions = [r["question"] for r in records]
    expected = []
    for text, (ask, need) in (("翻译成英文", WRAPPERS["zh"]), ("Summarize the text.", WRAPPERS["en"])):
        expected += [text, ask + text, need + text]
    assert sorted(questions) == sorted(expected)
    assert {r["answer"] for r in records if "翻译" in r["question"]} == {"Translate into English"}
    assert all(r["meta"]["template"] == "synth/paraphrase.md" for r in records)
    stats = json.loads((tmp_path / "p.stats.json").read_text())["stages"][0]
    assert stats["duplicates_dropped"] == 4


def test_preference_scores_samples_and_derives_pairs(tmp_path, thresher):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Explain gravity.\nName a prime number.\n", encoding="utf-8")

    def responder(body):
        if wants_schema(body, "scores"):
            count = last_user(body).count("[response ")
            scores = [{"response": i + 1, "accuracy": 5 - i, "relevance": 5, "fluency": 4, "concision": 4} for i in range(count)]
            return Reply(json.dumps({"scores": scores}))
        return Reply(f"sample {body.get('seed')} for {last_user(body)}")

    out = tmp_path / "scored.jsonl"
    with FakeOpenAI(responder) as server:
        thresher("synth", "preference", prompts, "-o", out, "--samples", "3", "--judge-model", "judge-m",
                 *api_flags(server), check=True)
        judge_models = [b["model"] for b in server.requests if wants_schema(b, "scores")]
        assert len(server.requests) == 2 * 3 + 2 and judge_models == ["judge-m", "judge-m"]
        server.requests.clear()
        thresher("synth", "preference", prompts, "-o", out, "--samples", "3", "--judge-model", "judge-m",
                 *api_flags(server), check=True)
        assert server.requests == []
    scored = [Scored.model_validate(r) for r in lines(out)]
    assert len(scored) == 2 and all(len(s.responses) == 3 for s in scored)
    assert [r.score for r in scored[0].responses] == [4.5, 4.25, 4.0]
    pairs = [Preference.model_validate(p) for p in lines(tmp_path / "scored.pairs.jsonl")]
    assert len(pairs) == 6  # 3 pairs per prompt, written once despite the rerun
    seed = lambda message: int(message.content.split()[1])  # noqa: E731 - lower seed scored higher
    assert all(seed(p.chosen) < seed(p.rejected) for p in pairs)


def test_a_repeated_input_is_asked_and_written_once(tmp_path, thresher):
    questions = tmp_path / "q.txt"
    questions.write_text("same question\nother question\nsame question\n", encoding="utf-8")
    out = tmp_path / "a.jsonl"
    with FakeOpenAI() as server:
        thresher("synth", "answers", questions, "-o", out, *api_flags(server), check=True)
        assert sorted(last_user(b) for b in server.requests) == ["other question", "same question"]
    assert sorted(r["question"] for r in lines(out)) == ["other question", "same question"]
    stats = json.loads((tmp_path / "a.stats.json").read_text())["stages"][0]
    assert stats == {**stats, "in": 3, "skipped": 1, "succeeded": 2}


def test_question_dedup_drops_near_duplicates_of_seen_and_of_each_other():
    from thresher.curate.synth.paraphrase import dedup_questions

    seen = ["你是谁开发的人工智能助手？", "What can you do for me?"]
    fresh = dedup_questions(
        ["你是谁开发的人工智能助手呢？", "你能帮我做哪些事情？", "你能帮我做哪些事情", "Who built you and when?", "what can you do for me"],
        seen,
    )
    assert fresh == ["你能帮我做哪些事情？", "Who built you and when?"]
    assert seen[2:] == fresh
