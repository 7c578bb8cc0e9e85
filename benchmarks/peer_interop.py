"""Peer interop: TRL's and LLaMA-Factory's own code on thresher's outputs, as a table.

    python benchmarks/peer_interop.py            # every check whose peer package is installed
    python benchmarks/peer_interop.py --only trl

Each check writes data with ``thresher convert`` and hands the file to the
peer exactly as a user would: TRL 1.x ``SFTTrainer`` / ``DPOTrainer`` /
``RewardTrainer`` through ``datasets.load_dataset("json")``, LLaMA-Factory's
``get_dataset`` on a ``--to llamafactory`` folder. The checks:

* TRL SFT labels equal thresher's assistant-only masking (multi-turn, system
  prompts, tool calls), and TRL's SFT loss equals thresher's to 5 decimals over
  a few steps on the same tiny model and settings;
* TRL's SFT, DPO and reward trainers train on ``--to messages`` and
  ``--to prompt-completion`` outputs that mix single-turn, multi-turn and
  tool-call records;
* LLaMA-Factory tokenizes thresher's folders exactly as it tokenizes its own
  demo files (``../shared/peer-data/llamafactory``), in nine dataset styles.

``tests/test_peers.py`` runs the same functions (skipping, with the reason,
when a peer is not importable). LLaMA-Factory 0.9.5 pins transformers <= 5.6;
its own switch ``DISABLE_VERSION_CHECK=1`` is set here to load it beside newer
ones. Nothing is downloaded: the model is a tiny one built on the spot.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
PEER_DATA = ROOT.parent / "shared" / "peer-data" / "llamafactory"

#: Multi-turn, system prompt, tool calls (with a tool result) and a plain QA: what trainers must take together.
SFT_ROWS = [
    {"question": "Who are you?", "answer": "I am Thresh, made by Acme."},
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"},
                  {"role": "user", "content": "and now?"}, {"role": "assistant", "content": "still here"}]},
    {"messages": [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                  {"role": "tool", "content": "sunny"},
                  {"role": "assistant", "content": "It is sunny in Paris."}],
     "tools": json.dumps([{"type": "function", "function": {"name": "weather", "parameters": {
         "type": "object", "properties": {"city": {"type": "string"}}}}}])},
    {"instruction": "Name a colour.", "input": "", "output": "Blue.", "history": [["hello", "hi!"]]},
]

PREFERENCE_ROWS = [
    {"instruction": "Which is better?", "input": "", "chosen": "This one, clearly.", "rejected": "No idea."},
    {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                       {"from": "human", "value": "tell me a fact"}],
     "chosen": {"from": "gpt", "value": "Water boils at 100 C at sea level."},
     "rejected": {"from": "gpt", "value": "Facts are boring."}},
    {"prompt": [{"role": "user", "content": "Weather in Rome?"}],
     "chosen": [{"role": "assistant", "content": "", "tool_calls": [
         {"type": "function", "function": {"name": "weather", "arguments": {"city": "Rome"}}}]}],
     "rejected": [{"role": "assistant", "content": "Sunny, probably."}]},
]

#: thresher's ChatML with TRL's generation markers around each assistant turn (through its end-of-turn token).
GENERATION_CHATML = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}"
    "{%- for call in message.get('tool_calls') or [] %}"
    "{{ '\\n<tool_call>\\n' + (call['function'] | tojson) + '\\n</tool_call>' }}{%- endfor %}"
    "{{ '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else %}{{ message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


def missing(package: str) -> str | None:
    """Why ``package`` cannot be used here, or None when it can."""
    if package == "llamafactory":
        os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
        if not PEER_DATA.is_dir():
            return f"LLaMA-Factory's demo data is not at {PEER_DATA}"
        module = "llamafactory.data"
    else:
        module = package
    try:
        __import__(module)
    except Exception as exc:  # ImportError, or a compiled dependency that does not load (torchaudio)
        return f"{package} not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return None


def thresher(*argv: Any) -> None:
    from thresher.cli.main import main

    code = main([str(a) for a in argv])
    if code != 0:
        raise AssertionError(f"thresher {' '.join(map(str, argv))} exited {code}")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_model(work: Path) -> Path:
    """A tiny Llama and tokenizer (pad distinct from the end-of-turn token), built once per work folder."""
    from thresher.train.tiny import build_tiny_model

    folder = work / "tiny"
    if not (folder / "config.json").exists():
        texts = [json.dumps(r, ensure_ascii=False) for r in SFT_ROWS + PREFERENCE_ROWS]
        build_tiny_model(folder, texts=texts, vocab_size=500, hidden=64, layers=2)
    return folder


def converted(work: Path, rows: list[dict[str, Any]], to: str, name: str, *extra: str) -> Path:
    out = work / f"{name}.{to}.jsonl"
    thresher("convert", write_jsonl(work / f"{name}.jsonl", rows), "-o", out, "--to", to, "--strict", *extra)
    return out


def trl_args(config_cls: Any, work: Path, **extra: Any) -> Any:
    """TRL settings in fp32 on the CPU, every step logged; a fresh accelerate state (thresher's runs share the process)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return config_cls(output_dir=str(work / "trl-out"), report_to=[], save_strategy="no", logging_steps=1,
                      use_cpu=True, bf16=False, fp16=False, seed=0, disable_tqdm=True, **extra)


def check_trl_sft_labels(work: Path) -> str:
    """TRL's assistant-only masks on ``--to messages`` equal thresher's labels, token for token."""
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from thresher.schemas import Dialogue
    from thresher.train.data import IGNORE, tokenize_dialogue

    model = tiny_model(work)
    data = converted(work, SFT_ROWS, "messages", "sft")
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = GENERATION_CHATML
    dataset = load_dataset("json", data_files=str(data), split="train")
    trainer = SFTTrainer(model=str(model), processing_class=tokenizer, train_dataset=dataset,
                         args=trl_args(SFTConfig, work, assistant_only_loss=True, max_steps=1))
    processed = trainer.train_dataset
    for index, row in enumerate(dataset):
        dialogue = Dialogue.model_validate({"messages": _canonical_messages(row["messages"]), "tools": row.get("tools")})
        ours = tokenize_dialogue(tokenizer, dialogue, max_len=4096)
        theirs = processed[index]
        assert ours.input_ids == theirs["input_ids"], f"record {index}: token ids differ"
        assert ours.labels == theirs["labels"], f"record {index}: labels differ"
        assert any(label != IGNORE for label in ours.labels)
    return f"{len(dataset)} records (multi-turn, system, tool calls): input ids and labels identical"


def _canonical_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as read back by datasets (absent keys come back as None)."""
    from thresher.curate.io.formats.messages import message

    return [message({k: v for k, v in m.items() if v is not None}, "m")[0] for m in messages]


def check_trl_sft_loss(work: Path, steps: int = 4) -> str:
    """Same tiny model, data and settings: TRL's SFT loss per step equals thresher's to 5 decimals."""
    from accelerate.state import AcceleratorState
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from thresher.train.config import TrainConfig
    from thresher.train.sft import run_sft

    model = tiny_model(work)
    template = work / "generation_chatml.jinja"
    template.write_text(GENERATION_CHATML, encoding="utf-8")
    data = converted(work, SFT_ROWS, "messages", "loss")
    settings = {"lr": 1e-3, "batch_size": len(SFT_ROWS), "grad_accum": 1}  # one batch per step: order cannot differ
    AcceleratorState._reset_state(reset_partial_state=True)
    state = run_sft(TrainConfig(model=str(model), data=[str(data)], output=str(work / "thresher-sft"), method="full",
                                max_steps=steps, warmup_ratio=0.0, scheduler="constant", chat_template=str(template),
                                seed=0, **settings))
    ours = [record["loss"] for record in state.log]
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = GENERATION_CHATML
    trainer = SFTTrainer(model=str(model), processing_class=tokenizer,
                         train_dataset=load_dataset("json", data_files=str(data), split="train"),
                         args=trl_args(SFTConfig, work, assistant_only_loss=True, max_steps=steps,
                                       learning_rate=settings["lr"], per_device_train_batch_size=settings["batch_size"],
                                       lr_scheduler_type="constant", optim="adamw_torch", weight_decay=0.0))
    trainer.train()
    theirs = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(ours) == len(theirs) == steps and all(abs(a - b) < 5e-6 for a, b in zip(ours, theirs)), (ours, theirs)
    return f"{steps} steps, loss {ours[0]:.5f} -> {ours[-1]:.5f} in both"


def check_trl_trainer(work: Path, trainer_name: str, to: str) -> str:
    """TRL's SFT, DPO or reward trainer takes a ``--to messages`` / ``--to prompt-completion`` file and trains."""
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    import trl

    model = tiny_model(work)
    rows = SFT_ROWS if trainer_name == "sft" else PREFERENCE_ROWS
    data = converted(work, rows, to, f"{trainer_name}-{to}")
    dataset = load_dataset("json", data_files=str(data), split="train")
    tokenizer = AutoTokenizer.from_pretrained(model)
    config_cls, trainer_cls = {"sft": (trl.SFTConfig, trl.SFTTrainer), "dpo": (trl.DPOConfig, trl.DPOTrainer),
                               "reward": (trl.RewardConfig, trl.RewardTrainer)}[trainer_name]
    net: Any = str(model)
    if trainer_name == "reward":
        net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1)
        net.config.pad_token_id = tokenizer.pad_token_id
    trainer = trainer_cls(model=net, processing_class=tokenizer, train_dataset=dataset,
                          args=trl_args(config_cls, work, max_steps=2, per_device_train_batch_size=len(rows)))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(loss == loss for loss in losses), losses  # trained, no NaN
    return f"{len(dataset)} records (single-turn, multi-turn, tool calls), loss {losses[0]:.4f}"


#: (LLaMA-Factory dataset, stage, convert --style): nine dataset styles.
LLAMAFACTORY_CASES = [
    ("identity", "sft", "sharegpt"), ("identity", "sft", "alpaca"), ("alpaca_en_demo", "sft", "sharegpt"),
    ("alpaca_zh_demo", "sft", "alpaca"), ("glaive_toolcall_en_demo", "sft", "sharegpt"),
    ("dpo_en_demo", "rm", "sharegpt"), ("dpo_en_demo", "rm", "alpaca"), ("kto_en_demo", "kto", "sharegpt"),
    ("c4_demo", "pt", "sharegpt"),
]


def llamafactory_dataset(folder: Path, name: str, stage: str, model: Path) -> Any:
    """LLaMA-Factory's own ``get_dataset`` (template qwen) on ``folder``'s dataset ``name``."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import AutoTokenizer, Seq2SeqTrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(model)
    data_args = DataArguments(dataset=name, dataset_dir=str(folder), template="qwen", cutoff_len=512,
                              overwrite_cache=True)
    args = Seq2SeqTrainingArguments(output_dir=str(folder / "lf-out"), report_to=[])
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    module = get_dataset(template, ModelArguments(model_name_or_path=str(model)), data_args, args, stage=stage,
                         tokenizer=tokenizer)
    return module["train_dataset"]


def check_llamafactory(work: Path, name: str, stage: str, style: str) -> str:
    """``--to llamafactory`` folders tokenize in LLaMA-Factory exactly like its own demo file."""
    from datasets import disable_caching

    disable_caching()
    model = tiny_model(work)
    folder = work / f"lf-{name}-{style}"
    thresher("convert", PEER_DATA / f"{name}.{'jsonl' if name == 'c4_demo' else 'json'}", "-o", folder,
             "--to", "llamafactory", "--name", name, "--style", style, "--allow-placeholders", "--strict")
    theirs = llamafactory_dataset(PEER_DATA, name, stage, model)
    ours = llamafactory_dataset(folder, name, stage, model)
    columns = [c for c in theirs.column_names if c not in ("images", "videos", "audios")]
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    for column in columns:
        assert ours[column] == theirs[column], f"{column} differs"
    return f"{len(ours)} examples, {', '.join(columns)} identical"


TEMPLATE_DIALOGUES = [
    [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Thresh."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ok"}],
]


def check_llamafactory_template(work: Path, name: str) -> str:
    """thresher's shipped ``template: NAME`` renders dialogues exactly as LLaMA-Factory's template of that name."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    from thresher.train.template import apply_template

    model = tiny_model(work)
    lf_tokenizer = AutoTokenizer.from_pretrained(model)
    template = get_template_and_fix_tokenizer(lf_tokenizer, DataArguments(template=name))
    ours = AutoTokenizer.from_pretrained(model)
    apply_template(ours, name)
    for messages in TEMPLATE_DIALOGUES:
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        turns = messages[1:] if system else messages
        pairs = template.encode_multiturn(lf_tokenizer, turns, system)
        theirs = lf_tokenizer.decode([i for prompt, answer in pairs for i in prompt + answer])
        text = ours.apply_chat_template(messages, tokenize=False)
        if template.efficient_eos:  # LLaMA-Factory appends EOS after the last answer only, when it builds labels
            assert text.endswith(ours.eos_token), text
            text = text.replace(ours.eos_token, "")
        assert text == theirs, f"{name}: {text!r} != {theirs!r}"
    return f"{len(TEMPLATE_DIALOGUES)} dialogues (system, multi-turn) render identically"


def all_checks() -> list[tuple[str, str, Any]]:
    """(name, peer package, function of the work folder) for every check."""
    checks: list[tuple[str, str, Any]] = [
        ("TRL SFT labels = thresher masking", "trl", check_trl_sft_labels),
        ("TRL SFT loss = thresher loss", "trl", check_trl_sft_loss),
    ]
    for trainer_name in ("sft", "dpo", "reward"):
        for to in ("messages", "prompt-completion"):
            checks.append((f"TRL {trainer_name} on --to {to}", "trl",
                           lambda work, t=trainer_name, f=to: check_trl_trainer(work, t, f)))
    from thresher.train.template import SHIPPED_TEMPLATES

    for template in SHIPPED_TEMPLATES:
        checks.append((f"LLaMA-Factory template {template} = thresher's", "llamafactory",
                       lambda work, t=template: check_llamafactory_template(work, t)))
    for name, stage, style in LLAMAFACTORY_CASES:
        checks.append((f"LLaMA-Factory {stage}: {name} ({style})", "llamafactory",
                       lambda work, n=name, s=stage, y=style: check_llamafactory(work, n, s, y)))
    return checks


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("trl", "llamafactory"), help="run one peer's checks")
    args = parser.parse_args()
    table = Table(title="thresher outputs in the peers' own code")
    for column in ("check", "result", "detail", "seconds"):
        table.add_column(column, overflow="fold")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, package, check in all_checks():
            if args.only and package != args.only:
                continue
            reason = missing(package)
            if reason:
                table.add_row(name, "skipped", reason, "")
                continue
            start = time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # the trainers' own logs: the table is the report
                    detail, result = check(Path(tmp)), "ok"
            except AssertionError as exc:
                detail, result = str(exc)[:300], "FAILED"
                failed += 1
            table.add_row(name, result, detail, f"{time.perf_counter() - start:.1f}")
    Console().print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
