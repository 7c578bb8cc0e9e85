"""``thresher schema export -o DIR``: the JSON Schema of every record kind.

Other tools (a labelling UI, a data contract check in another language) can
validate against the same rules without importing thresher.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thresher.schemas import KINDS
from thresher.curate.io.writers import write_json
from thresher.curate.io.claims import OutputPath


def export(directory: str | Path) -> list[Path]:
    """Write ``<kind>.schema.json`` for each kind into ``directory``; return the paths."""
    written = []
    for name, model in KINDS.items():
        path = Path(directory) / f"{name}.schema.json"
        write_json(path, model.model_json_schema(mode="validation"))
        written.append(path)
    return written


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export_parser = actions.add_parser("export", help="write one JSON Schema file per record kind")
    export_parser.add_argument("-o", "--out", required=True, type=OutputPath, metavar="DIR", help="output folder")


def run(args: argparse.Namespace) -> int:
    for path in export(args.out):
        print(path)
    return 0
