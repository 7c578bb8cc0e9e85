"""Supervised fine-tuning: the SFT objective, model setup (full, LoRA, QLoRA) and the run.

``run_sft(config)`` is ``thresher train sft``: check the method can run here,
load the tokenizer and settle the chat template, tokenize and report the data,
build the model, then hand everything to ``loop.train``. The output folder is
a plain Hugging Face model (full) or PEFT adapter, with the tokenizer, the
chat template and a ``generation_config.json`` whose EOS includes the
template's end-of-turn token, so ``transformers`` and vLLM stop where
training taught the model to stop.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from thresher.curate.errors import ThresherError
from thresher.curate.io.writers import write_json
from thresher.train.collate import Batches, length_grouped, pad_batch, sft_batches
from thresher.train.config import TrainConfig
from thresher.train.data import IGNORE, DataReport, Example, end_of_turn_ids, load_examples, split_eval
from thresher.train.checkpoint import LoopState
from thresher.train.loop import Artifacts, start_run, train
from thresher.train.metrics import print_run_summary
from thresher.train.template import apply_template

RUN_INFO = "thresher_run.json"


def trained_logits(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, targets, rows) at the labelled positions only: one row per trained token, in batch order.

    Most positions (prompts, system prompts, padding) carry no label, and the
    vocabulary projection is a large share of a small model's compute (a
    fifth of SmolLM2-135M's weights), so the boolean ``logits_to_keep`` mask
    (transformers >= 5) projects only the positions whose next token is
    trained. A model that ignores the argument returns every position, and
    the same mask then picks the same rows. ``rows`` is each token's batch row.
    """
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE  # position p predicts token p + 1
    output = model(
        input_ids=batch["input_ids"],
        attention_mask=batch.get("attention_mask"),
        position_ids=batch.get("position_ids"),
        use_cache=False,
        logits_to_keep=keep,
    )
    logits = output.logits if output.logits.dim() == 2 else output.logits[keep]
    return logits.float(), labels[:, 1:][keep[:, :-1]], keep.nonzero(as_tuple=True)[0]


class SFTObjective:
    """Next-token cross-entropy on labelled (assistant) tokens; metric: token accuracy."""

    unit = "tokens"

    def count(self, batch: dict[str, Any]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, targets, _ = trained_logits(model, batch)
        loss_sum = F.cross_entropy(logits, targets, reduction="sum")
        correct = (logits.argmax(-1) == targets).sum()
        return loss_sum, {"accuracy": correct}

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        import math

        return {**means, "perplexity": math.exp(min(means["loss"], 50.0))}


def check_method(config: TrainConfig) -> None:
    """Fail before loading anything when the method cannot run on this machine."""
    if config.method != "qlora":
        return
    if not torch.cuda.is_available():
        raise ThresherError("--method qlora needs a CUDA GPU (bitsandbytes 4-bit); use --method lora on this machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ThresherError("--method qlora needs bitsandbytes: pip install bitsandbytes") from None


def load_tokenizer(config: TrainConfig) -> tuple[Any, str, list[str]]:
    """The model's tokenizer with the chat template settled (see ``template``) and a pad token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model)
    except (OSError, ValueError) as exc:
        raise ThresherError(f"--model {config.model}: cannot load its tokenizer: {exc}") from None
    source, added = apply_template(tokenizer, config.chat_template)
    if tokenizer.pad_token is None:
        # Padding positions carry no label and are masked out, so reusing EOS as pad is harmless.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, source, added


def load_model(config: TrainConfig, tokenizer: Any, added_tokens: list[str]) -> Any:
    """The causal LM ready to train: full, LoRA on a (half-precision on GPU) base, or QLoRA on 4-bit."""
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    half = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if config.method == "lora" and cuda:
        kwargs["dtype"] = half  # frozen base in half precision; LoRA weights stay fp32
    if config.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["dtype"] = half
        kwargs["device_map"] = {"": torch.cuda.current_device()}  # this process's GPU (accelerate set it)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=half
        )
    model = AutoModelForCausalLM.from_pretrained(config.model, **kwargs)
    if added_tokens:
        model.resize_token_embeddings(len(tokenizer))
    eot = end_of_turn_ids(tokenizer)
    model.generation_config.eos_token_id = eot if len(eot) > 1 else eot[0]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if config.method == "full":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_targets(),
        task_type="CAUSAL_LM",
        # New ChatML markers start random: train just their embedding rows, not the whole matrix.
        trainable_token_indices=tokenizer.convert_tokens_to_ids(added_tokens) if added_tokens else None,
    )
    with warnings.catch_warnings():  # peft 0.21 calls a transformers API that 5.x deprecates
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, lora)


def print_report(report: DataReport, eval_report: DataReport | None, console: Any) -> None:
    """The data report printed before the first step."""
    from rich.table import Table

    table = Table(title="training data")
    for column in ("", "records", "examples", "tokens", "trained tokens", "truncated", "removed"):
        table.add_column(column, justify="left" if not column else "right")
    for name, item in (("train", report), ("eval", eval_report)):
        if item is None:
            continue
        removed = ", ".join(f"{k} {v}" for k, v in sorted(item.removed.items())) or "0"
        table.add_row(name, str(item.records), str(item.examples), str(item.tokens), str(item.trained_tokens),
                      str(item.truncated), removed)
    console.print(table)


def eval_batches(examples: list[Example], batch_size: int, pad_id: int) -> Batches:
    """Length-grouped, fixed-order eval batches."""
    lengths = [len(e.input_ids) for e in examples]
    return Batches(length_grouped(lengths, batch_size, seed=0), lambda g: pad_batch([examples[i] for i in g], pad_id))


def run_sft(config: TrainConfig, console: Any = None) -> LoopState:
    """``thresher train sft``: data report, model, loop; returns the loop's final state."""
    from rich.console import Console

    console = console or Console()
    check_method(config)
    out = Path(config.output)
    accelerator = start_run(config)
    main = accelerator.is_main_process

    tokenizer, template_source, added = load_tokenizer(config)
    examples, report = load_examples(config.data, tokenizer, config.max_len, out, "data", config.system)
    eval_report = None
    if config.eval_data:
        held, eval_report = load_examples(config.eval_data, tokenizer, config.max_len, out, "eval", config.system)
    else:
        examples, held = split_eval(examples, config.val_size, config.seed)
    if not examples:
        raise ThresherError(f"no trainable records in {', '.join(config.data)} (see {out / 'data.removed.jsonl'})")
    if main:
        print_report(report, eval_report, console)
        if held and eval_report is None:
            console.print(f"held out {len(held)} of {report.examples} examples for evaluation")
        console.print(f"chat template: {template_source}" + (f" (added {', '.join(added)})" if added else ""))
        config.save(out)
        write_json(out / RUN_INFO, {
            "template_source": template_source, "added_tokens": added,
            "end_of_turn_ids": end_of_turn_ids(tokenizer), "data": report.as_dict(),
            "eval_data": eval_report.as_dict() if eval_report else {"held_out": len(held)},
        })

    model = load_model(config, tokenizer, added)
    if config.packing:
        check_packing(model)
    source = sft_batches(examples, config.batch_size, tokenizer.pad_token_id, config.packing, config.max_len)

    def save_extras(folder: Path) -> None:
        tokenizer.save_pretrained(folder)
        model.generation_config.save_pretrained(folder)  # beside an adapter too: export and chat read it

    state = train(
        config, model, SFTObjective(), lambda epoch: source(config.seed + epoch),
        eval_batches(held, config.batch_size, tokenizer.pad_token_id) if held else (),
        accelerator, Artifacts(save_extras),
    )
    if main:
        print_run_summary(console, state.log, out, "model" if config.method == "full" else "adapter")
    return state


@torch.no_grad()
def check_packing(model: Any) -> None:
    """Refuse ``--packing`` for a model that attends across packed records.

    transformers turns restarting ``position_ids`` into a block-diagonal mask
    only for architectures built on its mask utilities; this runs two short
    records packed and apart and compares the logits of the second.
    """
    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().num_embeddings
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(0, vocab, (1, 6), generator=generator).to(device)
    second = torch.randint(0, vocab, (1, 5), generator=generator).to(device)
    was_training = model.training
    model.eval()
    alone = model(input_ids=second, use_cache=False).logits.float()
    packed = model(
        input_ids=torch.cat([first, second], dim=1),
        position_ids=torch.cat([torch.arange(6), torch.arange(5)]).unsqueeze(0).to(device),
        use_cache=False,
    ).logits[:, 6:].float()
    model.train(was_training)
    scale = alone.abs().max().item() or 1.0
    tolerance = 1e-3 if next(model.parameters()).dtype == torch.float32 else 3e-2
    if (alone - packed).abs().max().item() > tolerance * scale:
        raise ThresherError(
            f"--packing: {type(model).__name__} lets packed records attend to each other "
            "(its attention ignores restarting position ids); train without --packing"
        )
