"""Where a model comes from: a local folder, or a hub id, decided before anything is loaded.

transformers treats any string that is not a folder as a hub id and retries the
network for most of a minute before it fails with "check your internet
connection": a typo in ``--model tinyy`` or ``./nomodel`` costs that minute and
says nothing useful. Every command that loads a model passes the value through
``resolve_model`` first, so a value that names no folder and does not look like
a hub id (``owner/name``), or any value that is not a folder or already in the
local hub cache while ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set,
fails at once with ``X: no such model folder``. A path that looks local never
reaches the hub. Imports nothing heavy: the CLI's help path may load it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from thresher.curate.errors import ThresherError

#: ``owner/name`` as the hub spells repository ids.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_TRUE = {"1", "on", "yes", "true"}


def offline() -> bool:
    """Whether the user has switched the hub off (the variables huggingface_hub and transformers read)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_hub_id(value: str) -> bool:
    """``owner/name`` whose first part is not a local folder (``models/qwen`` with ``models/`` here is a path)."""
    return bool(_HUB_ID.fullmatch(value)) and ".." not in value and not Path(value.split("/")[0]).is_dir()


def in_hub_cache(repo_id: str) -> bool:
    """Whether the hub cache already holds the model's config (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id after all
        return False


def resolve_model(value: str | os.PathLike[str]) -> str:
    """A local model folder as an absolute path, or a hub id left as is; ``ThresherError`` otherwise."""
    text = str(value)
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise ThresherError(f"{text}: not a model folder (a file; a GGUF file is turned into one by thresher model import)")
    if looks_like_hub_id(text):
        if not offline() or in_hub_cache(text):
            return text
        raise ThresherError(f"{text}: no such model folder (HF_HUB_OFFLINE is set and the hub cache does not hold it)")
    raise ThresherError(f"{text}: no such model folder")
