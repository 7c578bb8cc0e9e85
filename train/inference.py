"""Load a trained output (full model, or adapter + its base) and know where its replies end.

Shared by ``thresher chat``, the evals and ``thresher export merge``: all must
see the same tokenizer, chat template and end-of-turn tokens that training
used, so all read them from the trained folder, never from the base model.
Generation itself is ``thresher.train.generate.generate_batch``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).exists()


def adapter_base(adapter: str | Path) -> str:
    """The base model an adapter was trained on, as peft recorded it."""
    config = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise ThresherError(f"{adapter}/{ADAPTER_CONFIG} names no base model; pass --base")
    return base


def load_trained(model: str | Path, adapter: str | Path | None = None, base: str | None = None,
                 dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for a trained output.

    ``model`` may itself be an adapter folder (its base is read from
    ``adapter_config.json``, or ``base``). The tokenizer comes from the
    adapter folder when there is one, since that is where training saved the
    chat template it used; the base's embeddings are resized to match it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as hf_logging

    from thresher.train.model_path import resolve_model

    hf_logging.disable_progress_bar()
    model = resolve_model(model)
    adapter = resolve_model(adapter) if adapter is not None else None
    if adapter is None and is_adapter(model):
        model, adapter = resolve_model(base or adapter_base(model)), model
    trained = Path(adapter) if adapter is not None else Path(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(trained)
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype or torch.float32)
    except (OSError, ValueError) as exc:
        raise ThresherError(f"cannot load {trained}: {exc}") from None
    if lm.get_input_embeddings().num_embeddings < len(tokenizer):
        lm.resize_token_embeddings(len(tokenizer))
    if (trained / "generation_config.json").exists():
        lm.generation_config = GenerationConfig.from_pretrained(trained)
    if adapter is not None:
        from peft import PeftModel

        with warnings.catch_warnings():  # peft 0.21 calls a transformers API that 5.x deprecates
            warnings.simplefilter("ignore", FutureWarning)
            lm = PeftModel.from_pretrained(lm, str(adapter))
    lm.eval()
    return lm, tokenizer


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends a reply: the generation config's EOS plus the template's end-of-turn."""
    from thresher.train.data import end_of_turn_ids

    configured = model.generation_config.eos_token_id
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    template_ends = end_of_turn_ids(tokenizer) if getattr(tokenizer, "chat_template", None) else []
    return ids + [i for i in template_ends if i not in ids]
