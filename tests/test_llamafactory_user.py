"""The first hour of a LLaMA-Factory user: folders read as LLaMA-Factory reads them, its YAML, clear model errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thresher.cli.main import build_parser
from thresher.curate.errors import ThresherError
from thresher.curate.io.readers import read_rows
from thresher.train.config import DPOConfig, TrainConfig, resolve
from thresher.train.model_path import resolve_model
from thresher.train.tiny import build_tiny_model


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """A LLaMA-Factory data folder with renamed columns and tags, a ranking set and a hub-only entry."""
    data = tmp_path / "data"
    data.mkdir()
    write_json(data / "qa.json", [{"q": "Who are you?", "a": "I am Thresh.", "sys": "Be kind."}])
    write_json(data / "chat.json", [{"msgs": [{"speaker": "me", "text": "hi"}, {"speaker": "bot", "text": "hello"}]}])
    write_json(data / "pairs.json", [{"conversations": [{"from": "human", "value": "pick"}],
                                      "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}}])
    write_json(data / "dataset_info.json", {
        "qa": {"file_name": "qa.json", "columns": {"prompt": "q", "response": "a", "system": "sys"}},
        "chat": {"file_name": "chat.json", "formatting": "sharegpt", "columns": {"messages": "msgs"},
                 "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"}},
        "pairs": {"file_name": "pairs.json", "formatting": "sharegpt", "ranking": True,
                  "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
        "remote": {"hf_hub_url": "someone/remote-data"},
    })
    return data


def test_folder_is_read_with_its_column_mappings(folder, thresher, tmp_path):
    out = tmp_path / "out.jsonl"
    result = thresher("convert", f"{folder}:qa,chat,pairs", "-o", out, "--to", "messages", "--strict")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["messages"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Who are you?"},
                                   {"role": "assistant", "content": "I am Thresh."}]
    assert rows[1]["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert rows[2]["chosen"] == [{"role": "assistant", "content": "good"}]
    assert [row.source for row in read_rows(f"{folder}:pairs")] == [str(folder / "pairs.json")]  # errors point at the file


def test_whole_folder_skips_remote_entries_and_names_are_checked(folder, thresher):
    result = thresher("validate", folder)
    assert result.returncode == 0
    assert "skipping dataset remote: hf_hub_url names remote data" in result.stderr
    total = next(line for line in result.stdout.splitlines() if "total" in line)
    assert total.split("│")[2:5] == ["       3 ", "     3 ", "       0 "] or total.split()[3:8:2] == ["3", "3", "0"], total
    result = thresher("validate", f"{folder}:chatt")
    assert result.returncode == 2 and "no dataset named 'chatt'; did you mean chat?" in result.stdout
    result = thresher("convert", f"{folder}:remote", "-o", folder.parent / "x.jsonl", "--to", "qa")
    assert result.returncode == 2
    assert "dataset remote: hf_hub_url names remote data; download it and register it with file_name" in result.stderr


def test_thresher_reads_what_it_writes(peer_data, thresher, tmp_path):
    out = tmp_path / "lf"
    thresher("convert", peer_data / "dpo_en_demo.json", "-o", out, "--to", "llamafactory", "--name", "dpo", check=True)
    thresher("convert", peer_data / "glaive_toolcall_en_demo.json", "-o", out, "--to", "llamafactory", "--name",
             "tools", check=True)
    result = thresher("validate", out, check=True)
    assert "600" in result.stdout
    back = tmp_path / "tools.jsonl"
    thresher("convert", f"{out}:tools", "-o", back, "--to", "sharegpt", "--strict", check=True)
    original = json.loads((peer_data / "glaive_toolcall_en_demo.json").read_text(encoding="utf-8"))
    assert [json.loads(line)["conversations"] for line in back.read_text().splitlines()] == \
        [row["conversations"] for row in original]


LF_YAML = """\
model_name_or_path: {model}
stage: {stage}
do_train: true
finetuning_type: lora
lora_rank: 4
lora_target: all
dataset: qa,chat
dataset_dir: {data}
template: qwen
cutoff_len: 256
overwrite_cache: true
preprocessing_num_workers: 16
output_dir: {out}
logging_steps: 10
plot_loss: true
per_device_train_batch_size: 2
gradient_accumulation_steps: 1
learning_rate: 1.0e-3
num_train_epochs: 2.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
"""


def lf_config(tmp_path, cls=TrainConfig, command="sft", **keys) -> TrainConfig:
    text = LF_YAML.format(model=tmp_path, stage=keys.pop("stage", command), data=tmp_path / "data", out=tmp_path / "o")
    text += "".join(f"{key}: {value}\n" for key, value in keys.items())
    config = tmp_path / "lf.yaml"
    config.write_text(text)
    args = build_parser("train").parse_args(["train", command, "--config", str(config)])
    return resolve(cls, args)


def test_llamafactory_yaml_keys_are_translated(tmp_path, capsys):
    config = lf_config(tmp_path)
    assert config.model == str(tmp_path) and config.output == str(tmp_path / "o")
    assert config.data == [f"{tmp_path / 'data'}:qa,chat"] and config.chat_template == "qwen"
    assert (config.method, config.lora_r, config.lora_target, config.max_len) == ("lora", 4, "all-linear", 256)
    assert (config.batch_size, config.grad_accum, config.lr, config.epochs) == (2, 1, 1e-3, 2.0)
    assert (config.scheduler, config.warmup_ratio) == ("cosine", 0.1)
    assert "no effect in thresher: do_train" in capsys.readouterr().err
    assert lf_config(tmp_path, quantization_bit=4).method == "qlora"
    assert lf_config(tmp_path, DPOConfig, "dpo", pref_beta=0.2).beta == 0.2


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"max_samples": 100}, "max_samples: not supported; take a sample first: thresher mix DATA:RATE"),
        ({"finetuning_type": "freeze"}, "finetuning_type: 'freeze': thresher trains lora, qlora or full"),
        ({"template": "baichuan"}, "template: 'baichuan' is not shipped (qwen, llama3, chatml, glm4, mistral, default)"),
        ({"stage": "dpo"}, "stage: 'dpo' is trained by thresher train dpo, not train sft"),
        ({"quantization_bit": 8}, "thresher quantizes to 4 bits with LoRA only"),
        ({"lora_rnk": 8}, "lora_rnk: not a thresher option or a LLaMA-Factory key it translates; did you mean lora_rank?"),
    ],
)
def test_llamafactory_yaml_refuses_by_name_with_what_to_do(tmp_path, thresher, keys, message):
    text = LF_YAML.format(model=tmp_path, stage=keys.pop("stage", "sft"), data=tmp_path, out=tmp_path / "o")
    config = tmp_path / "lf.yaml"
    config.write_text(text.replace("finetuning_type: lora\n", "") + "".join(f"{k}: {v}\n" for k, v in keys.items()))
    result = thresher("train", "sft", "--config", config)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_piped_llamafactory_run_logs_progress_and_ends_with_a_summary(folder, tmp_path):
    model = build_tiny_model(tmp_path / "tiny", texts=["Who are you? I am Thresh. hi hello Be kind."], vocab_size=300)
    config = tmp_path / "lf.yaml"
    config.write_text(LF_YAML.format(model=model, stage="sft", data=folder, out=tmp_path / "out") + "max_steps: 2\n")
    exe = Path(sys.executable).with_name("thresher")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run([str(exe), "train", "sft", "--config", str(config)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "chat template: shipped:qwen" in result.stdout
    assert "train: 1/2 loss" in result.stdout  # a plain progress line, not a redrawn bar
    assert "final metrics (step 2)" in result.stdout and "loss" in result.stdout
    assert f"loss plot: {tmp_path / 'out' / 'loss.png'}" in result.stdout
    assert (tmp_path / "out" / "loss.png").stat().st_size > 1000


def test_model_paths_fail_at_once_without_a_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for value in ("tinyy", "./nomodel", "models/qwen", "../x/y"):
        with pytest.raises(ThresherError, match=f"^{value}: no such model folder$"):
            resolve_model(value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"  # a hub id: left to transformers
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ThresherError, match="no such model folder .HF_HUB_OFFLINE is set"):
        resolve_model("Qwen/Qwen2.5-0.5B-Instruct")
    assert resolve_model("models") == str(tmp_path / "models")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "sft", "--model", "tinyy", "--data", "x.jsonl", "-o", "out"],
        ["train", "dpo", "--model", "tinyy", "--data", "x.jsonl", "-o", "out"],
        ["chat", "--model", "tinyy", "--prompt", "hi"],
        ["eval", "identity", "--model", "tinyy", "--name", "n", "--author", "a"],
        ["score", "--model", "tinyy", "x.jsonl", "-o", "y.jsonl"],
        ["export", "merge", "--adapter", "tinyy", "-o", "merged"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_every_command_that_loads_a_model_says_no_such_model_folder(thresher, tmp_path, argv):
    result = thresher(*argv, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("error: tinyy: no such model folder"), result.stderr
    assert "internet" not in result.stderr
