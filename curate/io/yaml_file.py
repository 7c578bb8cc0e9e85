"""The one loader for the YAML files a user hands thresher: recipes, filter rules, training configs, profiles.

Each is short and hand-written, so anything odd about the file (missing, a
folder, not UTF-8, megabytes long, nested a thousand levels deep, not YAML)
is the user's mistake and gets one line naming the file, never PyYAML's
traceback or minutes of parsing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thresher.curate.errors import InputError
from thresher.curate.io.readers import MAX_DEPTH, TOO_DEEP

#: YAML files thresher reads are short, hand-written; PyYAML would take minutes over a bigger one.
MAX_YAML_BYTES = 1 << 20


def load_yaml_file(path: str | os.PathLike[str], what: str = "YAML file") -> Any:
    """Parse a small YAML file; every way it can fail (missing, a folder, not UTF-8, too big, nested
    deeper than ``MAX_DEPTH``, not YAML) is one ``InputError`` naming the file."""
    import yaml

    source, p = str(path), Path(path)
    try:
        if p.is_dir():
            raise InputError(source, f"is a folder, not a {what}")
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:
            raise InputError(source, f"{size:,} bytes is too big for a {what} (the limit is {MAX_YAML_BYTES:,})")
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(source, f"no such {what}") from None
    except UnicodeDecodeError as exc:
        raise InputError(source, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(source, f"cannot read: {exc.strerror}") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and _flow_depth(text) > MAX_DEPTH:
        raise InputError(source, TOO_DEEP)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(source, f"not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:  # block-style nesting: YAML's parser recursed too deep
        raise InputError(source, TOO_DEEP) from None


def _flow_depth(text: str) -> int:
    """The deepest nesting of YAML flow collections (``[...]``, ``{...}``) in ``text``."""
    depth = deepest = 0
    for char in text:
        depth += (char in "[{") - (char in "]}")
        deepest = max(deepest, depth)
    return deepest
