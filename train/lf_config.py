"""LLaMA-Factory training YAML, read by ``thresher train sft|rm|dpo|ppo --config``.

A LLaMA-Factory user brings ``llama3_lora_sft.yaml``; its keys are
translated one by one to thresher's options (``model_name_or_path`` ->
``model``, ``cutoff_len`` -> ``max_len``, ``dataset`` + ``dataset_dir`` ->
``data: [DIR:name1,name2]`` read as LLaMA-Factory reads that folder,
``template: qwen`` -> the shipped ``prompts/templates/qwen.jinja`` ...).
Keys that change nothing here (``plot_loss``, ``overwrite_cache``,
``logging_steps`` ...) are accepted and listed; every other key is refused
by name with what to do instead. Settings the YAML does not give take
thresher's defaults, not LLaMA-Factory's (see README). Imports nothing
heavy: it runs before torch is loaded.
"""

from __future__ import annotations

import sys
from difflib import get_close_matches
from typing import Any

from thresher.curate.errors import ThresherError
from thresher.train.template import SHIPPED_TEMPLATES

#: LLaMA-Factory key -> thresher option, same meaning and value.
RENAMED = {
    "model_name_or_path": "model", "cutoff_len": "max_len", "lora_rank": "lora_r",
    "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
    "learning_rate": "lr", "num_train_epochs": "epochs", "output_dir": "output", "default_system": "system",
    "neat_packing": "packing", "pref_beta": "beta", "ppo_whiten_rewards": "whiten_rewards",
}

#: Keys whose effect thresher already has (or that only tune LLaMA-Factory's own machinery).
NO_EFFECT = {
    "do_train": "thresher train always trains",
    "plot_loss": "loss.png is always written",
    "overwrite_cache": "thresher keeps no tokenized cache",
    "preprocessing_num_workers": "tokenizing runs in the training process",
    "dataloader_num_workers": "batches are built in the training process",
    "logging_steps": "every step goes to metrics.jsonl",
    "save_only_model": "checkpoints hold what exact resume needs",
    "report_to": "metrics go to metrics.jsonl and loss.png",
    "bf16": "bf16 is used on GPUs that support it (fp16 otherwise, fp32 on CPU)",
    "fp16": "bf16 is used on GPUs that support it (fp16 otherwise, fp32 on CPU)",
    "ddp_timeout": "multi-GPU runs through accelerate or torchrun",
    "per_device_eval_batch_size": "evaluation uses batch_size",
    "eval_strategy": "evaluation runs every eval_steps (default: each epoch)",
    "save_strategy": "checkpoints are saved every save_steps (default: each epoch)",
    "flash_attn": "transformers picks the attention implementation",
    "run_name": "the run is named by its output folder",
    "do_eval": "evaluation runs when eval data or val_size is given",
    "trust_remote_code": "thresher loads models transformers supports natively",
    "overwrite_output_dir": "a fresh run writes over the output folder (one holding checkpoints needs resume: true)",
}

#: Keys refused, with what to do instead.
REFUSED = {
    "max_samples": "take a sample first: thresher mix DATA:RATE -o sample.jsonl",
    "warmup_steps": "give warmup_ratio (warmup steps / total steps)",
    "deepspeed": "thresher runs multi-GPU through accelerate launch or torchrun, no DeepSpeed config",
    "resume_from_checkpoint": "rerun with resume: true (thresher resumes from the newest checkpoint in output)",
    "train_on_prompt": "thresher trains assistant turns only",
    "mask_history": "thresher trains every assistant turn",
    "streaming": "thresher streams record files as it reads them; remove the key",
    "tokenized_path": "thresher tokenizes at the start of each run; remove the key",
    "mix_strategy": "mix sources first: thresher mix A:RATE B:RATE -o mixed.jsonl",
    "interleave_probs": "mix sources first: thresher mix A:RATE B:RATE -o mixed.jsonl",
    "max_grad_norm": "thresher clips gradients at 1.0",
    "optim": "thresher uses AdamW",
    "use_dora": "thresher trains plain LoRA",
    "use_rslora": "thresher trains plain LoRA",
    "additional_target": "thresher trains LoRA adapters (plus new special tokens' rows) only",
    "resize_vocab": "thresher adds tokens its chat template needs by itself",
    "do_predict": "evaluate with thresher eval identity, chat with thresher chat",
    "predict_with_generate": "evaluate with thresher eval identity, chat with thresher chat",
}

#: LLaMA-Factory keys handled below, beyond a rename.
SPECIAL = ("stage", "dataset", "eval_dataset", "dataset_dir", "template", "finetuning_type", "quantization_bit",
           "lora_target", "lr_scheduler_type", "max_steps", "pref_loss")

STAGES = {"sft": "sft", "rm": "rm", "dpo": "dpo", "ppo": "ppo"}


def is_llamafactory(data: dict[str, Any]) -> bool:
    """Whether a config speaks LLaMA-Factory (any of its keys that thresher spells differently)."""
    shared = ("max_steps", "lora_target")  # spelled alike in thresher's own YAML
    return any(key in data for key in (*RENAMED, *NO_EFFECT, *REFUSED, *SPECIAL) if key not in shared)


def translate(data: dict[str, Any], command: str, fields: set[str], source: str) -> dict[str, Any]:
    """``data`` (a YAML config's keys) in thresher's spelling; ``ThresherError`` naming every key refused."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    ignored: list[str] = []
    for key, value in data.items():
        if key in RENAMED and RENAMED[key] in fields:
            out[RENAMED[key]] = value
        elif key in NO_EFFECT:
            ignored.append(f"{key}: {NO_EFFECT[key]}")
        elif key in REFUSED:
            problems.append(f"{key}: not supported; {REFUSED[key]}")
        elif key in SPECIAL:
            problem = _special(key, value, data, command, out)
            if problem:
                problems.append(f"{key}: {problem}")
        elif key in fields:
            out[key] = value
        else:
            known = sorted(fields | set(RENAMED) | set(SPECIAL) | set(NO_EFFECT))
            close = get_close_matches(key, known, n=1)
            problems.append(f"{key}: not a thresher option or a LLaMA-Factory key it translates"
                            + (f"; did you mean {close[0]}?" if close else ""))
    if "lora_target" in out and out["lora_target"] == "all":
        out["lora_target"] = "all-linear"
    if problems:
        raise ThresherError(f"{source}: " + "; ".join(problems))
    if ignored:
        print(f"{source}: keys with no effect in thresher: {'; '.join(ignored)}", file=sys.stderr)
    return out


def _special(key: str, value: Any, data: dict[str, Any], command: str, out: dict[str, Any]) -> str | None:
    """Translate one key that needs more than a rename into ``out``; return the problem, if any."""
    if key == "stage":
        if value not in STAGES:
            return f"{value!r}: thresher trains sft, rm, dpo and ppo (and grpo)"
        if STAGES[value] != command:
            return f"{value!r} is trained by thresher train {STAGES[value]}, not train {command}"
    elif key in ("dataset", "eval_dataset"):
        names = value if isinstance(value, str) else ",".join(map(str, value))
        folder = data.get("dataset_dir", "data")  # LLaMA-Factory's default, relative to where it runs
        out["data" if key == "dataset" else "eval_data"] = [f"{folder}:{names}"]
    elif key == "template":
        if value not in SHIPPED_TEMPLATES:
            return (f"{value!r} is not shipped ({', '.join(SHIPPED_TEMPLATES)}); leave it out to use the "
                    "tokenizer's own template, or give chat_template: FILE.jinja")
        out["chat_template"] = value
    elif key == "finetuning_type":
        if value not in ("lora", "full"):
            return f"{value!r}: thresher trains lora, qlora or full"
        quantized = data.get("quantization_bit") == 4
        out["method"] = "qlora" if value == "lora" and quantized else value
    elif key == "quantization_bit":
        if value != 4 or data.get("finetuning_type", "lora") != "lora":
            return "thresher quantizes to 4 bits with LoRA only (finetuning_type: lora, quantization_bit: 4)"
    elif key == "lora_target":
        out["lora_target"] = value if isinstance(value, str) else ",".join(map(str, value))
    elif key == "lr_scheduler_type":
        schedulers = {"cosine": "cosine", "linear": "linear", "constant": "constant", "constant_with_warmup": "constant"}
        if value not in schedulers:
            return f"{value!r}: thresher schedules cosine, linear or constant (after warmup)"
        out["scheduler"] = schedulers[value]
    elif key == "max_steps":
        if value not in (None, -1):
            out["max_steps"] = value
    elif key == "pref_loss":
        if value != "sigmoid":
            return f"{value!r}: thresher trains sigmoid DPO"
    return None
