"""Detection of unreplaced template placeholders.

Self-cognition templates such as LLaMA-Factory's ``identity.json`` ship with
``{{name}}`` / ``{{author}}`` markers; training on them unreplaced teaches a
model to call itself "{{name}}". This is the most common identity-data bug, so
the data contract rejects such text by default.

The vocabulary is deliberately limited to identity-style words: a generic
``{{ ... }}`` rule would flag every Jinja or Vue snippet in coding data.
"""

from __future__ import annotations

import re

#: Words that name an identity slot in the wild (English and Chinese spellings).
PLACEHOLDER_WORDS: tuple[str, ...] = (
    "name", "author", "model_name", "model", "bot_name", "assistant_name", "ai_name",
    "company", "company_name", "organization", "organisation", "org", "creator",
    "developer", "owner", "your_name", "brand", "名字", "名称", "作者", "公司", "开发者",
)

_words = "|".join(sorted((re.escape(w) for w in PLACEHOLDER_WORDS), key=len, reverse=True))
_upper = "|".join(
    sorted((re.escape(w.upper()) for w in PLACEHOLDER_WORDS if w.isascii()), key=len, reverse=True)
)

#: ``{{name}}`` / ``{{ NAME }}`` in any case; ``<NAME>``, ``[NAME]``, ``{NAME}`` and
#: ``<<NAME>>`` only in upper case, because ``<name>`` is markup and ``{name}`` an
#: f-string field in coding data.
PLACEHOLDER_RE = re.compile(
    rf"\{{\{{\s*(?i:{_words})\s*\}}\}}"
    rf"|\{{\s*(?:{_upper})\s*\}}"
    rf"|<<?\s*(?:{_upper})\s*>>?"
    rf"|\[\s*(?:{_upper})\s*\]"
)


def find_placeholder(text: str) -> str | None:
    """Return the first unreplaced placeholder in ``text``, or None.

    Every placeholder opens with a bracket, so text without one skips the
    regex: most records are plain prose and this check runs on every string.
    """
    if "{" not in text and "<" not in text and "[" not in text:
        return None
    match = PLACEHOLDER_RE.search(text)
    return match.group(0) if match else None
