"""The policy RL trains, its reference, and PPO's value head.

``--model`` is what SFT wrote: a full model folder, or a LoRA adapter whose
base is read from ``adapter_config.json``. The reference is always those
SFT weights (``reference.py`` runs it):

* full model, ``--method lora``: a new adapter; the reference is the policy
  with the adapter switched off;
* LoRA adapter, ``--method lora``: the SFT adapter is trained further (same
  base, rank and targets, so the output loads wherever the SFT output did);
  the reference is the SFT adapter loaded a second time, frozen;
* ``--method full``: the model (an adapter merged into its base first) is
  trained in full; the reference is a frozen copy.

``RLModel`` is the module the loop trains: the policy, plus for PPO a value
head (one linear layer, zero-initialised, on the hidden state the LM head
reads). Its ``save_pretrained`` writes the policy as plain Hugging Face
files (``value_head.safetensors`` beside them), so the output is used like
any SFT output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from thresher.curate.errors import ThresherError
from thresher.train.config import TrainConfig
from thresher.train.reference import REFERENCE_ADAPTER, frozen_copy

VALUE_HEAD_FILE = "value_head.safetensors"


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only attended tokens, as ``generate`` numbers left-padded rows."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def lm_logits(lm: Any, batch: dict[str, Any], keep: int) -> torch.Tensor:
    """The causal LM's logits at the last ``keep`` positions of the batch's rows."""
    mask = batch["attention_mask"]
    return lm(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions(mask),
              use_cache=False, logits_to_keep=keep).logits


class RLModel(torch.nn.Module):
    """The policy and (PPO) its value head, trained together as one module."""

    def __init__(self, policy: Any, value_head: bool) -> None:
        super().__init__()
        self.policy = policy
        self.value_head: torch.nn.Linear | None = None
        if value_head:
            hidden = policy.get_output_embeddings().in_features
            device = policy.get_output_embeddings().weight.device
            self.value_head = torch.nn.Linear(hidden, 1, device=device, dtype=torch.float32)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, batch: dict[str, Any], keep: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, values) at the last ``keep`` positions; values is None without a value head.

        The value head reads what the LM head reads (captured by a forward
        hook), so it works for any architecture and under peft.
        """
        if self.value_head is None:
            return lm_logits(self.policy, batch, keep), None
        captured: list[torch.Tensor] = []
        hook = self.policy.get_output_embeddings().register_forward_hook(
            lambda module, args, output: captured.append(args[0]))
        try:
            logits = lm_logits(self.policy, batch, keep)
        finally:
            hook.remove()
        return logits, self.value_head(captured[-1].float()).squeeze(-1)

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> None:
        """The policy as plain HF files (the trained adapter only, never the reference copy), and the value head."""
        if hasattr(self.policy, "peft_config"):
            kwargs["selected_adapters"] = ["default"]
        self.policy.save_pretrained(folder, **kwargs)
        if self.value_head is not None:
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()},
                      str(Path(folder) / VALUE_HEAD_FILE))

    def load_checkpoint_weights(self, folder: str | Path) -> None:
        """Restore what ``save_pretrained`` wrote (checkpoint resume)."""
        from safetensors.torch import load_file

        from thresher.train.checkpoint import load_weights

        load_weights(self.policy, Path(folder))
        if self.value_head is not None:
            self.value_head.load_state_dict(load_file(str(Path(folder) / VALUE_HEAD_FILE)))


def load_policy(config: TrainConfig, tokenizer: Any, added: list[str], device: Any) -> tuple[Any, Any]:
    """(policy, reference) as the module docstring says; the reference is None when it lives in the policy."""
    from thresher.train.inference import is_adapter, load_trained
    from thresher.train.sft import load_model

    if not is_adapter(config.model):
        policy = load_model(config, tokenizer, added)
        return policy, (frozen_copy(policy, device) if config.method == "full" else None)
    if config.method == "qlora":
        raise ThresherError(f"--method qlora on the adapter {config.model}: merge it first (thresher export merge) "
                            "or use --method lora, which continues the adapter")
    lora_on_gpu = config.method == "lora" and torch.cuda.is_available()
    half = torch.bfloat16 if lora_on_gpu and torch.cuda.is_bf16_supported() else torch.float16
    model, _ = load_trained(config.model, dtype=half if lora_on_gpu else torch.float32)
    if config.method == "full":
        policy = model.merge_and_unload()
        return policy, frozen_copy(policy, device)
    model.set_adapter("default")  # loaded for inference: make the SFT adapter trainable again
    model.load_adapter(str(config.model), adapter_name=REFERENCE_ADAPTER)  # frozen: the reference
    for name, param in model.named_parameters():
        if param.requires_grad and param.dtype != torch.float32:  # train the adapter in fp32 on a half base
            param.data = param.data.float()
    return model, None
