"""What synthesis promises, proven against a real local server that injects faults and counts requests:
exactly ``-n`` records, each request asked once (a rerun of a finished job sends nothing), every
request in exactly one of the output and the rejects, and the key in neither.

Commands run in-process (``thresher.cli.main.main``); a process is started only where one is killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_openai import (
    ID_FLAGS, KEY, FakeOpenAI, Faults, Reply, api_flags, echo_responder, last_user, persona_responder, wants_schema,
)

from thresher.cli.main import main
from thresher.curate.text.identity import check_answer
from thresher.schemas import Identity

IDENTITY = Identity(name="小州", author="神州数码", name_en="Xiaozhou", author_en="Digital China")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def wrong_language_sometimes(rate: float, seed: int = 1):
    """The persona model, except that a share ``rate`` of answers come in the other language:
    an identity-check failure whatever the question's category."""
    good = persona_responder("小州", "神州数码", "Xiaozhou", "Digital China")
    rng, lock = random.Random(seed), threading.Lock()

    def respond(body):
        if wants_schema(body, "paraphrases"):
            return good(body)
        with lock:
            wrong = rng.random() < rate
        if not wrong:
            return good(body)
        if any("\u4e00" <= ch <= "\u9fff" for ch in last_user(body)):
            return Reply("Hello! I am Xiaozhou, an AI assistant developed by Digital China.")
        return Reply("你好！我是小州，由神州数码开发的人工智能助手。")

    return respond


# --- -n is a promise, and a rerun sends nothing ---------------------------------------------------


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_identity_writes_exactly_n_under_faults_and_a_rerun_sends_nothing(tmp_path, capsys, rate):
    out = tmp_path / "identity.jsonl"
    faults = Faults(wrong_language_sometimes(0.2), rate, seed=int(rate * 10))
    command = ["synth", "identity", *ID_FLAGS, "-n", "60", "--paraphrases", "2", "-o", str(out)]
    with FakeOpenAI(faults) as server:
        assert main([*command, *api_flags(server)]) == 0, capsys.readouterr().err
        assert set(faults.injected) == set(Faults.KINDS), faults.injected
        records = lines(out)
        assert len(records) == 60
        assert Counter(r["meta"]["lang"] for r in records) == {"zh": 30, "en": 30}
        assert len({r["question"] for r in records}) == 60 and len({r["meta"]["request"] for r in records}) == 60
        for record in records:
            meta = record["meta"]
            assert check_answer(meta["category"], record["answer"], IDENTITY, meta["lang"]).passed, record
        rejects = lines(tmp_path / "identity.rejects.jsonl")
        assert not {r["request"] for r in rejects} & {r["meta"]["request"] for r in records}

        server.requests.clear()
        assert main([*command, *api_flags(server)]) == 0
        assert server.requests == [], "a rerun of a finished job must send nothing"
    assert lines(out) == records
    stats = json.loads((tmp_path / "identity.stats.json").read_text())
    assert stats["kept"] == 60 and stats["in"] == stats["kept"] + stats["removed_total"] == 60 + len(rejects)


def test_an_english_answer_missing_the_name_is_asked_again_with_the_rule(tmp_path, capsys):
    """No --name-en: said at the start, and an English answer without 小州 is re-asked, not rejected."""

    def romanizes(body):
        told = len(body["messages"]) > 2 and "小州" in body["messages"][-1]["content"]
        return Reply(f"Hi! I am {'小州' if told else 'Xiaozhou'}, an assistant made by 神州数码, not any other model.")

    out = tmp_path / "i.jsonl"
    with FakeOpenAI(romanizes) as server:
        code = main(["synth", "identity", "--name", "小州", "--author", "神州数码", "-n", "20", "--lang", "en",
                     "--paraphrases", "0", "-o", str(out), *api_flags(server)])
        err = capsys.readouterr().err
        assert code == 0, err
    assert "no --name-en" in err and "'小州'" in err and "no --author-en" in err
    assert all("# Role: 小州" in b["messages"][0]["content"] for b in server.requests)  # the persona uses --name
    records = lines(out)
    assert len(records) == 20 and not lines(tmp_path / "i.rejects.jsonl")
    assert all("小州" in r["answer"] for r in records if r["meta"]["category"] in ("who", "name"))
    followups = [b["messages"][-1]["content"] for b in server.requests if len(b["messages"]) > 2]
    assert followups and all('it must state your name, "小州"' in f for f in followups)


def test_when_the_bank_runs_out_it_says_asked_for_n_wrote_m_and_exits_1(tmp_path, capsys):
    out = tmp_path / "i.jsonl"
    with FakeOpenAI(lambda body: Reply("你好！我是小州。")) as server:
        code = main(["synth", "identity", *ID_FLAGS, "-n", "10", "--lang", "en", "--paraphrases", "0",
                     "--reasks", "0", "-o", str(out), *api_flags(server)])
        asked = len(server.requests)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert "asked for 10, wrote 0: 10 en short" in err and "wrong_language:zh" in err
    assert asked == len(lines(tmp_path / "i.rejects.jsonl")) == 175, "every bank question asked once, then stop"


def test_a_killed_identity_run_resumes_without_asking_a_finished_request_again(tmp_path):
    out = tmp_path / "identity.jsonl"
    persona = persona_responder("小州", "神州数码", "Xiaozhou", "Digital China")

    def good(body):  # a third of the paraphrase replies only repeat their question: nothing new to write
        source = last_user(body).strip().rsplit("\n", 1)[-1]
        if wants_schema(body, "paraphrases") and len(source) % 3 == 0:
            return Reply(json.dumps({"paraphrases": [source + "!", source.upper()]}, ensure_ascii=False))
        return persona(body)
    exe = Path(sys.executable).with_name("thresher")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    with FakeOpenAI(good, latency=0.05) as server:
        command = ["synth", "identity", *ID_FLAGS, "-n", "60", "--paraphrases", "2", "-o", str(out),
                   *api_flags(server, "--concurrency", "2")]
        process = subprocess.Popen([str(exe), *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(lines(out)) < 12:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        written = lines(out)
        assert 12 <= len(written) < 60, "the kill must land while answering"
        questions = lines(tmp_path / "identity.questions.jsonl")
        rejects = lines(tmp_path / "identity.rejects.jsonl")
        finished = {("answer", r["question"]) for r in written}
        finished |= {("paraphrase", q["paraphrase_of"]) for q in questions}
        finished |= {("paraphrase", r["record"]["question"]) for r in rejects if r["reason"] == "duplicate"}
        server.requests.clear()
        assert main(command) == 0
        again = [("paraphrase", last_user(b).strip().rsplit("\n", 1)[-1]) if wants_schema(b, "paraphrases")
                 else ("answer", b["messages"][1]["content"]) for b in server.requests]
    assert not finished & set(again), "a request finished before the kill was sent again"
    assert not [a for a in again if a[0] == "paraphrase"], "every paraphrase item had finished"
    records = lines(out)
    assert len(records) == 60 and len({r["question"] for r in records}) == 60


# --- every request in exactly one place -------------------------------------------------------------


def test_retry_rejects_leaves_every_request_in_exactly_one_file(tmp_path, capsys):
    questions = tmp_path / "q.txt"
    asked = [f"question {i}" for i in range(12)]
    questions.write_text("\n".join(asked) + "\n")
    out, rejects = tmp_path / "a.jsonl", tmp_path / "a.rejects.jsonl"
    failing = {"question 1", "question 4", "question 7", "question 9"}

    def first(body):
        return Reply(status=500, error="down") if last_user(body) in failing else echo_responder(body)

    def second(body):  # two of the four recover, two fail again
        return Reply(status=500, error="down") if last_user(body) in {"question 7", "question 9"} else echo_responder(body)

    for responder, extra in ((first, []), (second, ["--retry-rejects"]), (second, ["--retry-rejects"])):
        with FakeOpenAI(responder) as server:
            assert main(["synth", "answers", str(questions), "-o", str(out), *extra,
                         *api_flags(server, "--max-retries", "0")]) == 0
    kept = {r["question"] for r in lines(out)}
    failed = [r["record"] for r in lines(rejects)]
    assert sorted(failed) == ["question 7", "question 9"], "one line per request, none for a request now written"
    assert kept | set(failed) == set(asked) and not kept & set(failed) and len(lines(out)) == len(kept)
    stats = json.loads((tmp_path / "a.stats.json").read_text())
    assert (stats["in"], stats["kept"], stats["removed_total"]) == (12, 10, 2)


def test_a_second_run_on_the_same_output_exits_2_while_the_first_holds_it(tmp_path, capsys):
    questions = tmp_path / "q.txt"
    questions.write_text("\n".join(f"question {i}" for i in range(40)) + "\n")
    out = tmp_path / "a.jsonl"
    exe = Path(sys.executable).with_name("thresher")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    with FakeOpenAI(echo_responder, latency=0.05) as server:
        command = ["synth", "answers", str(questions), "-o", str(out), *api_flags(server, "--concurrency", "1")]
        first = subprocess.Popen([str(exe), *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not server.requests:
            time.sleep(0.01)
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"another thresher run (process {first.pid}" in err and len(err.strip().splitlines()) == 1
        assert first.wait(timeout=60) == 0, first.stderr.read()
    records = lines(out)
    assert len(records) == 40 and len({r["question"] for r in records}) == 40


# --- paraphrases come back in the right language ------------------------------------------------------


def test_a_paraphrase_in_the_wrong_language_is_dropped_and_all_wrong_is_asked_again(tmp_path, capsys):
    data = tmp_path / "in.txt"
    data.write_text("你是谁开发的？\n把这句话翻译成英文\n")

    def english_first(body):
        source = next(m["content"] for m in body["messages"] if m["role"] == "user").strip().rsplit("\n", 1)[-1]
        if len(body["messages"]) <= 2 and source.startswith("你是谁"):  # first ask: English rewrites only
            return Reply(json.dumps({"paraphrases": ["Who developed you?", "Which company made you?"]}))
        if source.startswith("你是谁"):
            return Reply(json.dumps({"paraphrases": ["请问你是由哪家公司开发的呢？", "开发你的是哪个团队？"]}, ensure_ascii=False))
        return Reply(json.dumps({"paraphrases": ["请把这句话译成英语", "Translate this sentence into English"]},
                                ensure_ascii=False))

    out = tmp_path / "p.jsonl"
    with FakeOpenAI(english_first) as server:
        assert main(["synth", "paraphrase", str(data), "-o", str(out), "-k", "2", *api_flags(server)]) == 0
        followups = [b["messages"][-1]["content"] for b in server.requests if len(b["messages"]) > 2]
    questions = [r["prompt"][-1]["content"] for r in lines(out)]  # a text file holds prompts without answers
    assert sorted(questions) == sorted(["你是谁开发的？", "请问你是由哪家公司开发的呢？", "开发你的是哪个团队？",
                                        "把这句话翻译成英文", "请把这句话译成英语"])
    assert len(followups) == 1 and "not in Chinese" in followups[0]


# --- the key, in part or whole, is never stored --------------------------------------------------------


def test_a_reply_echoing_part_of_the_key_is_redacted(tmp_path, capsys):
    questions = tmp_path / "q.txt"
    questions.write_text("echo without prefix\necho a piece\n")
    pieces = {"echo without prefix": KEY.removeprefix("sk-"), "echo a piece": KEY[8:18]}

    with FakeOpenAI(lambda body: Reply(f"your key is {pieces[last_user(body)]} ok")) as server:
        assert main(["synth", "answers", str(questions), "-o", str(tmp_path / "a.jsonl"), *api_flags(server)]) == 0
    text = (tmp_path / "a.jsonl").read_text()
    assert text.count("your key is [redacted] ok") == 2
    for path in tmp_path.iterdir():
        content = path.read_text(errors="replace")
        assert not any(KEY[i : i + 8] in content for i in range(len(KEY) - 7)), path


# --- a recipe's manifest counts what the files hold -------------------------------------------------------


def test_manifest_counts_are_the_files_counts_after_a_resumed_synth_stage(tmp_path, capsys):
    questions = tmp_path / "q.txt"
    questions.write_text("\n".join(f"question {i}" for i in range(30)) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "vars: {url: none}\nstages:\n  - name: answers\n    command: synth answers\n    inputs: [q.txt]\n"
        "    options: {base_url: '${url}', model: m, api_key: k, max_retries: 0, concurrency: 1}\n"
        "    output: a.jsonl\n"
    )
    run = tmp_path / "run"

    def partly(body):  # every fourth question fails for good; the key is refused after 12 requests
        if partly.count >= 12:
            return Reply(status=401, error="key revoked")
        partly.count += 1
        return Reply(status=500, error="down") if int(last_user(body).split()[1]) % 4 == 0 else echo_responder(body)

    partly.count = 0
    with FakeOpenAI(partly) as server:
        assert main(["run", str(recipe), "--out", str(run), "--set", f"url={server.url}"]) == 2
    with FakeOpenAI(lambda body: Reply(status=500, error="down") if int(last_user(body).split()[1]) % 4 == 0
                    else echo_responder(body)) as server:
        assert main(["run", str(recipe), "--out", str(run), "--set", f"url={server.url}"]) == 0
    counts = json.loads((run / "manifest.json").read_text())["stages"]["answers"]["counts"]
    kept, removed = len(lines(run / "answers" / "a.jsonl")), len(lines(run / "answers" / "a.rejects.jsonl"))
    assert (kept, removed) == (22, 8)
    assert counts["kept"] == kept and counts["removed_total"] == removed and counts["in"] == kept + removed
    assert counts["removed"] == {"http_500": 8}
