"""Direct preference optimisation: ``thresher train dpo``.

Sigmoid DPO (Rafailov et al. 2023) on summed reply log-probabilities:

    loss = -logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

where ``pi_*`` / ``ref_*`` are the summed log-probabilities of the chosen
and rejected reply tokens under the policy and the reference. The prompt is
rendered with the chat template's generation prompt and shared by both
replies (``pairs.PairEncoder``); the reply runs through the end-of-turn token.
Chosen and rejected rows share one forward pass.

The reference (``reference.py``): with LoRA it is the same weights with the
adapter switched off (peft's ``disable_adapter()``), so no second copy sits in
memory; with full training it is a frozen copy of the starting weights, or
``--ref-model``. Reference log-probs are computed in eval mode (no dropout),
under no_grad.

Everything else (model loading, tokenizer and chat template, checkpoints,
resume, logs, the saved output) is SFT's, through the one loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from thresher.curate.errors import ThresherError
from thresher.train.config import DPOConfig
from thresher.train.checkpoint import LoopState
from thresher.train.loop import Artifacts, start_run, train
from thresher.train.metrics import print_run_summary
from thresher.train.pairs import PairEncoder, grouped_batches, load_pairs, pair_batch
from thresher.train.reference import frozen_copy, reference_mode
from thresher.train.sft import trained_logits


def reply_logps(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Summed log-probability of each row's labelled (reply) tokens."""
    logits, targets, rows = trained_logits(model, batch)
    token_logps = -F.cross_entropy(logits, targets, reduction="none")
    return token_logps.new_zeros(len(batch["labels"])).index_add(0, rows, token_logps)


class DPOObjective:
    """Sigmoid DPO against a reference; unit: pairs.

    ``reference`` is a separate frozen model, or None to use the policy with
    its LoRA adapter disabled.
    """

    unit = "pairs"

    def __init__(self, beta: float, reference: Any = None) -> None:
        self.beta = beta
        self.reference = reference

    def count(self, batch: dict[str, Any]) -> int:
        return int(batch["margin"].numel())

    @torch.no_grad()
    def reference_logps(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        with reference_mode(model, self.reference) as target:
            return reply_logps(target, batch)

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reference = self.reference_logps(model, batch)
        policy = reply_logps(model, batch)
        chosen, rejected = policy.chunk(2)
        ref_chosen, ref_rejected = reference.chunk(2)
        reward_chosen = self.beta * (chosen - ref_chosen)
        reward_rejected = self.beta * (rejected - ref_rejected)
        losses = -F.logsigmoid(reward_chosen - reward_rejected)
        chosen, rejected = chosen.detach(), rejected.detach()
        reward_chosen, reward_rejected = reward_chosen.detach(), reward_rejected.detach()
        return losses.sum(), {
            "rewards/chosen": reward_chosen.sum(),
            "rewards/rejected": reward_rejected.sum(),
            "rewards/margins": (reward_chosen - reward_rejected).sum(),
            "rewards/accuracies": (reward_chosen > reward_rejected).float().sum(),
            "logps/chosen": chosen.sum(),
            "logps/rejected": rejected.sum(),
        }

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        return means


def load_reference(config: DPOConfig, model: Any, tokenizer: Any, device: Any) -> Any:
    """None for LoRA without ``--ref-model`` (the adapter is switched off instead), else a frozen model."""
    if config.ref_model is None and config.method != "full":
        return None
    if config.ref_model is None:
        return frozen_copy(model, device)
    from transformers import AutoModelForCausalLM

    try:
        reference = AutoModelForCausalLM.from_pretrained(config.ref_model, dtype=next(model.parameters()).dtype)
    except (OSError, ValueError) as exc:
        raise ThresherError(f"--ref-model: cannot load {config.ref_model}: {exc}") from None
    if reference.get_input_embeddings().num_embeddings < len(tokenizer):
        reference.resize_token_embeddings(len(tokenizer))
    reference.requires_grad_(False)
    return reference.to(device).eval()


def run_dpo(config: DPOConfig, console: Any = None) -> LoopState:
    """``thresher train dpo``: data report, policy and reference, loop; returns the loop's final state."""
    from rich.console import Console

    from thresher.train.data import split_eval
    from thresher.train.rm import print_report
    from thresher.train.sft import check_method, load_model, load_tokenizer

    console = console or Console()
    check_method(config)
    if config.packing:
        raise ThresherError("--packing is for SFT; DPO batches are length-grouped instead")
    out = Path(config.output)
    accelerator = start_run(config)

    tokenizer, template_source, added = load_tokenizer(config)
    encoder = PairEncoder(tokenizer, config.max_len, "chat", config.system)
    examples, report = load_pairs(config.data, encoder, out, "data")
    eval_report = None
    if config.eval_data:
        held, eval_report = load_pairs(config.eval_data, encoder, out, "eval")
    else:
        examples, held = split_eval(examples, config.val_size, config.seed)
    if not examples:
        raise ThresherError(f"no usable preference records in {', '.join(config.data)} (see {out / 'data.removed.jsonl'})")
    if accelerator.is_main_process:
        print_report("DPO", report, eval_report, len(held) if eval_report is None else 0, console)
        console.print(f"chat template: {template_source}" + (f" (added {', '.join(added)})" if added else ""))
        config.save(out)

    model = load_model(config, tokenizer, added)
    reference = load_reference(config, model, tokenizer, accelerator.device)

    def collate(items: list[Any]) -> dict[str, Any]:
        return pair_batch(items, encoder, tokenizer.pad_token_id)

    def save_extras(folder: Path) -> None:
        tokenizer.save_pretrained(folder)
        model.generation_config.save_pretrained(folder)

    state = train(
        config, model, DPOObjective(config.beta, reference),
        lambda epoch: grouped_batches(examples, config.batch_size, config.seed + epoch, collate),
        grouped_batches(held, config.batch_size, 0, collate) if held else (),
        accelerator, Artifacts(save_extras),
    )
    if accelerator.is_main_process:
        print_run_summary(console, state.log, out, "model" if config.method == "full" else "adapter")
    return state
