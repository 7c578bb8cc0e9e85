"""What a reward model reads: its tokenizer, a pad token distinct from every end of turn, the input layout.

Decoders read the dialogue rendered with the chat template (``chat``
layout), encoders a sentence pair (``pair``). ``input_layout`` writes the
exact recipe into ``reward_model.json``, so plain transformers code (or any
other) can score exactly what ``thresher score`` scores.
"""

from __future__ import annotations

from typing import Any

from thresher.curate.errors import ThresherError
from thresher.train.data import end_of_turn_ids
from thresher.train.template import apply_template


def is_encoder(model_path: str) -> bool:
    """Encoder checkpoints (BERT, RoBERTa, DeBERTa, ModernBERT...) are the ones with a masked-LM head class."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise ThresherError(f"cannot load {model_path}: {exc}") from None
    return config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def load_rm_tokenizer(model_path: str, chat_template: str | None = None) -> tuple[Any, str, list[str]]:
    """(tokenizer, layout, added special tokens): chat layout for decoders, sentence pairs for encoders."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    layout, added = "pair", []
    if not is_encoder(model_path):
        layout = "chat"
        _, added = apply_template(tokenizer, chat_template)
        added += distinct_pad(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # encoders without a pad token: their pooling ignores it
    return tokenizer, layout, added


#: The pad token added when a decoder's pad would be its EOS or end-of-turn token.
PAD_TOKEN = "<|pad|>"


def distinct_pad(tokenizer: Any) -> list[str]:
    """Make the pad token differ from every token that ends a turn; return the tokens added.

    Stock ``AutoModelForSequenceClassification`` scores "the rightmost token
    that is not ``pad_token_id``". When pad is EOS or end-of-turn, that is one
    token before the reply's real end, and a plain transformers user would
    read a different score than ``thresher score`` (the ranking of a pair
    can flip). With a pad that never occurs in an input, both read the same token.
    """
    ends = set(end_of_turn_ids(tokenizer)) | {tokenizer.eos_token_id}
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in ends:
        return []
    known = PAD_TOKEN in tokenizer.get_vocab()
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return [] if known else [PAD_TOKEN]


def input_layout(tokenizer: Any, layout: str, system: str | None) -> dict[str, Any]:
    """``reward_model.json``'s account of the exact input, so any code can score as ``thresher score`` does."""
    if layout == "pair":
        return {"text": "prompt and reply as a sentence pair: tokenizer(prompt_text, reply); prompt_text is the user "
                        "message, or 'role: content' lines joined by newlines when there are several turns",
                "score": "the model's own pooling (BERT-style: the first token)"}
    return {
        "template": "chat_template.jinja in this folder (the tokenizer's chat_template)",
        "text": "tokenizer.apply_chat_template(prompt + [{'role': 'assistant', 'content': reply}], tokenize=False), "
                "trailing whitespace removed, so the text ends with the end-of-turn token",
        "tokenize": "tokenizer(prompt_text, add_special_tokens=False).input_ids + tokenizer(rest, add_special_tokens="
                    "False).input_ids, where prompt_text is apply_chat_template(prompt, add_generation_prompt=True, "
                    "tokenize=False) and rest the text after it (for most tokenizers the same as tokenizing the text whole)",
        "system": "prepended as the first message when the prompt has none" if system else None,
        "end_of_turn": tokenizer.convert_ids_to_tokens(end_of_turn_ids(tokenizer)[0]),
        "score": "the score head's output at the last token; pad_token_id occurs in no input, so "
                 "AutoModelForSequenceClassification pools at that same token",
        "pad_token": tokenizer.pad_token, "pad_token_id": tokenizer.pad_token_id,
    }
