"""``thresher export merge``: fold a LoRA adapter into its base, ready for vLLM or plain transformers.

The merged folder holds the full model, the tokenizer with the chat template
training used, and a ``generation_config.json`` whose EOS includes the
template's end-of-turn token; no adapter files. The merge runs in float32
(so the LoRA delta is not rounded away twice) and is saved in ``--dtype``
(default: the base model's own dtype). The folder appears complete or not at
all (written beside it, then renamed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thresher.curate.io.claims import InputPath, OutputPath

DTYPES = ("auto", "float32", "bfloat16", "float16")


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="export_command", metavar="SUBCOMMAND", required=True)
    merge = commands.add_parser("merge", help="merge a LoRA adapter into its base model")
    merge.add_argument("--adapter", required=True, type=InputPath, metavar="OUT", help="adapter folder written by thresher train")
    merge.add_argument("-o", "--output", required=True, type=OutputPath, metavar="MERGED", help="folder for the merged model")
    merge.add_argument("--base", type=InputPath, help="base model (default: the one recorded in the adapter)")
    merge.add_argument("--dtype", choices=DTYPES, default="auto", help="saved dtype (default: the base's)")


def merge(adapter: str | Path, output: str | Path, base: str | None = None, dtype: str = "auto") -> Path:
    """Merge ``adapter`` into its base and write the merged model to ``output``."""
    import torch

    from thresher.curate.errors import ThresherError
    from thresher.curate.io.writers import atomic_folder, new_file_mode, require_new_folder
    from thresher.train.inference import is_adapter, load_trained, stop_ids
    from thresher.train.model_path import resolve_model

    adapter = resolve_model(adapter)
    if not is_adapter(adapter):
        raise ThresherError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    target = require_new_folder(output)
    model, tokenizer = load_trained(adapter, base=base)
    saved_dtype = model.get_base_model().config.dtype if dtype == "auto" else getattr(torch, dtype)
    eos = stop_ids(model, tokenizer)
    merged = model.merge_and_unload()
    merged.generation_config.eos_token_id = eos if len(eos) > 1 else eos[0]
    merged.to(saved_dtype or torch.float32)
    with atomic_folder(target) as staging:
        merged.save_pretrained(staging, safe_serialization=True)
        new_file_mode(staging.glob("*.safetensors"))
        tokenizer.save_pretrained(staging)
    return target


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    target = merge(args.adapter, args.output, args.base, args.dtype)
    Console().print(f"merged {args.adapter} into its base: {target}")
    return 0
