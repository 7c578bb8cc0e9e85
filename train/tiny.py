"""Tiny random causal LMs with a freshly trained tokenizer: smoke tests without downloads.

``build_tiny_model`` writes a complete Hugging Face model folder (config,
weights, byte-level BPE tokenizer trained with ``tokenizers`` on the given
text, ChatML chat template, generation config whose EOS is the end-of-turn
token). Tests, the offline demo and users checking a pipeline before
spending GPU hours all load it like any hub checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from thresher.train.template import CHATML_TEMPLATE
from thresher.curate.io.claims import InputPath, OutputPath
from thresher.curate.io.writers import new_file_mode

#: Special tokens of the tiny tokenizer: document end (padding), ChatML turn markers.
PAD_TOKEN = "<|endoftext|>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"

ARCHITECTURES = ("llama", "qwen2")

#: Used when no text is given: enough variety for a BPE vocabulary of a few hundred tokens.
BUILTIN_TEXT = """\
The quick brown fox jumps over the lazy dog. A tiny model is a smoke test, not a product.
Who are you? I am a helpful assistant. What can you do? I can answer questions and write text.
Hello! How are you today? I am fine, thank you. What is the capital of France? Paris.
One, two, three, four, five, six, seven, eight, nine, ten. 0123456789 + - * / = ( ) [ ] { }
system user assistant tool: the conversation alternates between the user and the assistant.
你好！我是一个人工智能助手。我可以回答问题、写作和翻译。谢谢你的提问。
"""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000):
    """A byte-level BPE tokenizer (GPT-2/Qwen style) trained on ``texts``; returns a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD_TOKEN, TURN_START, TURN_END]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown tokens
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=TURN_END,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[TURN_START],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _texts_from(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Every string value of every record of ``paths`` (any file thresher reads)."""
    from thresher.curate.io.readers import read_rows

    texts: list[str] = []

    def collect(value: object) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for path in paths:
        for row in read_rows(path):
            collect(row.data if row.data is not None else row.raw)
    return texts


def build_tiny_model(
    out: str | os.PathLike[str],
    data: Iterable[str | os.PathLike[str]] = (),
    texts: Iterable[str] = (),
    vocab_size: int = 2000,
    layers: int = 2,
    hidden: int = 64,
    arch: str = "llama",
    seed: int = 0,
) -> Path:
    """Write a random ``arch`` causal LM and its tokenizer to ``out``; return the folder.

    The tokenizer is trained on the strings of the ``data`` files plus
    ``texts`` (the built-in text when both are empty), so the tiny model can
    actually represent the data it will be trained on.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Qwen2Config
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    corpus = _texts_from(data) + list(texts)
    tokenizer = train_tokenizer(corpus or [BUILTIN_TEXT], vocab_size)
    heads = max(1, hidden // 16)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    config = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    new_file_mode(target.glob("*.safetensors"))
    tokenizer.save_pretrained(target)
    return target


def configure(parser) -> None:  # noqa: ANN001 - argparse parser
    """``thresher model tiny`` (listed in ``train/model_command.py``)."""
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="DIR", help="folder to write the model to")
    parser.add_argument("--data", nargs="+", default=[], type=InputPath, metavar="FILE", help="record files whose text trains the tokenizer")
    parser.add_argument("--vocab", type=int, default=2000, help="tokenizer vocabulary size (default 2000)")
    parser.add_argument("--layers", type=int, default=2, help="transformer layers (default 2)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size, a multiple of 16 (default 64)")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="llama", help="architecture (default llama)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed")


def run(args) -> int:  # noqa: ANN001 - argparse namespace
    from rich.console import Console

    from thresher.curate.errors import ThresherError

    if args.hidden % 16 or args.hidden <= 0:
        raise ThresherError(f"--hidden must be a positive multiple of 16, got {args.hidden}")
    out = build_tiny_model(args.output, args.data, vocab_size=args.vocab, layers=args.layers,
                           hidden=args.hidden, arch=args.arch, seed=args.seed)
    Console().print(f"wrote tiny {args.arch} model ({args.layers} layers, hidden {args.hidden}) to {out}")
    return 0
