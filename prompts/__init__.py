"""Structured prompt templates and question banks, shipped as data files.

Files are read with ``importlib.resources`` so they work from a wheel, a zip
or an editable checkout alike.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable


def resource(name: str) -> Traversable:
    """The packaged data file ``name`` (a path relative to ``prompts/``)."""
    path = files(__name__).joinpath(*name.split("/"))
    if not path.is_file():
        raise FileNotFoundError(f"no prompt resource {name!r} in thresher.prompts")
    return path


@lru_cache(maxsize=None)
def read_text(name: str) -> str:
    """The text of the packaged data file ``name`` (read once: the files ship with the package)."""
    return resource(name).read_text(encoding="utf-8")
