"""Which chat template renders the training data, and the ChatML fallback.

Template mismatch between training and inference is the most common way a
fine-tune "forgets" what it learned, so the rule is simple and recorded:

1. ``--chat-template FILE`` (a Jinja file) or ``--chat-template NAME``, a
   template shipped in ``prompts/templates/`` (LLaMA-Factory's ``template:``
   names: qwen, llama3, chatml, glm4, mistral, default) when given;
2. else the tokenizer's own ``chat_template``;
3. else ChatML (below). Its turn markers are added to the tokenizer as special
   tokens when missing, and the template is saved with the output
   (``chat_template.jinja``) so inference renders exactly what training saw.

This module imports nothing heavy: the CLI's ``--help`` path loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: ChatML, as Qwen and many others use it. Tool calls are shown as Qwen-style ``<tool_call>`` JSON.
CHATML_TEMPLATE = (
    "{%- if tools %}{{ '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{ 'Tools:\\n' + (tools | tojson) + '<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (tools and loop.first and message['role'] == 'system') %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] }}"
    "{%- for call in message.get('tool_calls') or [] %}"
    "{{ '\\n<tool_call>\\n' + (call['function'] | tojson) + '\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)

CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")

TEMPLATE_FILE = "chat_template.jinja"

#: Chat templates shipped as data files, by LLaMA-Factory's ``template:`` name.
SHIPPED_TEMPLATES = ("qwen", "llama3", "chatml", "glm4", "mistral", "default")


def template_text(value: str | Path) -> str:
    """The Jinja text of a template file, or of a shipped template named ``value``."""
    from thresher.curate.errors import ThresherError
    from thresher.prompts import read_text

    path = Path(value)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if str(value) in SHIPPED_TEMPLATES:
        return read_text(f"templates/{value}.jinja")
    raise ThresherError(f"--chat-template {value}: no such file, nor a shipped template ({', '.join(SHIPPED_TEMPLATES)})")


def apply_template(tokenizer: Any, template_file: str | Path | None = None) -> tuple[str, list[str]]:
    """Set ``tokenizer.chat_template`` by the rule above; return (source, special tokens added).

    ``source`` is "file", "tokenizer" or "chatml-fallback". Added tokens mean
    the model's embeddings must be resized before training.
    """
    added: list[str] = []
    if template_file is not None:
        tokenizer.chat_template = template_text(template_file)
        return ("file" if Path(template_file).is_file() else f"shipped:{template_file}"), added
    if getattr(tokenizer, "chat_template", None):
        return "tokenizer", added
    vocab = tokenizer.get_vocab()
    added = [token for token in CHATML_TOKENS if token not in vocab]
    if added:
        tokenizer.add_tokens(added, special_tokens=True)
    tokenizer.chat_template = CHATML_TEMPLATE
    return "chatml-fallback", added
