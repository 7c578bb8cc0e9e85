"""``thresher run RECIPE.yaml``: a whole job as an ordered list of CLI stages.

A recipe names each stage's command and options exactly as the CLI has
them, so anything a recipe does can be replayed by hand, and the runner holds
no second copy of any stage's logic. Example::

    vars: {name: 小州, author: 神州数码}
    stages:
      - name: identity
        command: synth identity
        options: {name: "${name}", author: "${author}", n: 300, offline: true}
        output: identity.jsonl
      - name: dedup
        command: dedup
        inputs: ["@identity"]            # "@stage" is that stage's output
        options: {threshold: 0.8}
        output: identity.dedup.jsonl

``inputs`` are relative to the recipe's folder; option values are passed as
written, so name files there with ``${recipe_dir}/...`` (always defined) or
``@stage``. ``engine: ray`` (and ``ray_address: auto``) at the top, or
``--engine ray --ray-address auto`` on the command line, runs every curation
stage (validate, convert, dedup, filter, stats) on Ray; the results are the
same, so the engine is not part of a stage's fingerprint. ``when: "${var}"``
makes a stage optional: it runs only when the value is true (``--set
var=true``), and is shown as ``off`` otherwise. Every stage writes under ``RUN_DIR/<stage name>/``. ``manifest.json`` records
each stage's command line, input hashes, outputs, counts and seconds; a rerun
skips a stage whose command line and input hashes are unchanged and whose
outputs still exist, and ``--from STAGE`` reruns from that stage on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from thresher.cli.manifest import collect_counts, content_hash, masked, read_json
from thresher.cli.recipe_check import check_keys, check_stages, find_recipe, parse_sets, print_recipes
from thresher.curate.errors import ThresherError
from thresher.curate.io.yaml_file import load_yaml_file
from thresher.curate.io.writers import write_json
from thresher.curate.io.claims import InputPath, OutputPath

MANIFEST = "manifest.json"
#: Commands that take --engine/--ray-address (the curation stages that run on Ray).
SCALABLE = frozenset({"validate", "convert", "dedup", "filter", "stats"})
_VAR = re.compile(r"\$\{(\w+)\}")
_REFERENCE = re.compile(r"@([\w.-]+?)(/[^:]+)?(:[\d.]+)?")


class StageSpec(BaseModel):
    """One recipe stage: a thresher command, its inputs, options and output."""

    model_config = ConfigDict(extra="forbid")

    name: str
    command: str
    inputs: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None
    output_flag: str = "-o"
    accept_exit: list[int] = Field(default_factory=lambda: [0], description="exit codes that let the run go on")
    when: bool = Field(True, description="run the stage only when true (e.g. a var switched on with --set)")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not re.fullmatch(r"[\w.-]+", value):
            raise ValueError("use letters, digits, '_', '-' or '.'")
        return value


class Recipe(BaseModel):
    """A whole job: variables, an optional run folder, and stages in order."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    run_dir: str | None = None
    engine: Literal["local", "ray"] | None = None
    ray_address: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    stages: list[StageSpec]

    @field_validator("stages")
    @classmethod
    def _unique(cls, stages: list[StageSpec]) -> list[StageSpec]:
        seen: set[str] = set()
        for stage in stages:
            if stage.name in seen:
                raise ValueError(f"stage name {stage.name!r} is used twice")
            seen.add(stage.name)
        return stages


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe, apply ``--set`` overrides to its vars and substitute ``${var}``."""
    path = Path(path)
    raw = load_yaml_file(path, "recipe")
    if not isinstance(raw, dict):
        raise ThresherError(f"{path}: a recipe is a mapping with a 'stages' list")
    if not isinstance(raw.get("vars") or {}, dict):
        raise ThresherError(f"{path}: vars must be a mapping of name: value")
    if not isinstance(raw.get("stages") or [], list):
        raise ThresherError(f"{path}: stages must be a list of stages")
    check_keys(raw, path)
    variables = {"recipe_dir": str(path.parent.resolve()), **(raw.get("vars") or {}), **(overrides or {})}
    unknown = set(overrides or {}) - set(raw.get("vars") or {})
    if unknown:
        raise ThresherError(f"{path}: --set names unknown vars: {', '.join(sorted(unknown))}")
    raw["vars"] = variables
    raw["stages"] = _substitute(raw.get("stages"), variables, path)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ThresherError(f"{path}: {where}: {error['msg']}") from None


def _substitute(value: Any, variables: dict[str, Any], path: Path) -> Any:
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole:  # "${n}" keeps the variable's type (a number stays a number)
            return _lookup(whole.group(1), variables, path)
        return _VAR.sub(lambda m: str(_lookup(m.group(1), variables, path)), value)
    if isinstance(value, list):
        return [_substitute(v, variables, path) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables, path) for k, v in value.items()}
    return value


def _lookup(name: str, variables: dict[str, Any], path: Path) -> Any:
    if name not in variables:
        raise ThresherError(f"{path}: ${{{name}}} is not defined in vars")
    return variables[name]


@dataclass
class StageRun:
    """What happened to one stage in this run."""

    name: str
    status: str  # "ran" | "skipped" | "off"
    argv: list[str]
    seconds: float = 0.0
    counts: dict[str, Any] = field(default_factory=dict)
    output: str | None = None


class Runner:
    """Resolves stages to argv, runs or skips them, and keeps the manifest."""

    def __init__(self, recipe: Recipe, recipe_path: Path, run_dir: Path) -> None:
        self.recipe, self.path, self.base, self.run_dir = recipe, recipe_path, recipe_path.parent, run_dir
        if recipe.ray_address and recipe.engine != "ray":
            raise ThresherError(f"{recipe_path}: ray_address needs engine: ray")
        self.outputs: dict[str, Path] = {}
        manifest = run_dir / MANIFEST
        self.previous = read_json(manifest) if manifest.exists() else {"stages": {}}
        if not isinstance(self.previous, dict) or not isinstance(self.previous.get("stages"), dict):
            raise ThresherError(f"{manifest} is not a thresher manifest; delete it or choose another --out")
        self.manifest: dict[str, Any] = {"recipe": str(recipe_path), "stages": {}}

    def stage_dir(self, stage: StageSpec) -> Path:
        return self.run_dir / stage.name

    def resolve(self, value: Any, stage: StageSpec) -> Any:
        """``@stage`` -> that stage's output; ``@stage/train.jsonl`` a file inside it; ``@stage:0.5``
        keeps the ``:0.5`` (a ``mix`` rate)."""
        if isinstance(value, list):
            return [self.resolve(v, stage) for v in value]
        reference = _REFERENCE.fullmatch(value) if isinstance(value, str) else None
        if reference is None:
            return value
        name, inside, rate = reference.group(1), reference.group(2) or "", reference.group(3) or ""
        if name not in self.outputs:
            raise ThresherError(f"stage {stage.name}: @{name} names no earlier stage with an output")
        return f"{self.outputs[name]}{inside}{rate}"

    def argv(self, stage: StageSpec) -> list[str]:
        """The exact command line this stage runs (also recorded in the manifest)."""
        args = stage.command.split()
        for item in stage.inputs:
            resolved = self.resolve(item, stage)
            args.append(resolved if item.startswith("@") else str(self._input_path(resolved)))
        for key, value in stage.options.items():
            flag = ("-" if len(key) == 1 else "--") + key.replace("_", "-")
            value = self.resolve(value, stage)
            if value is True:
                args.append(flag)
            elif value is False or value is None:
                continue
            elif isinstance(value, list):
                args.append(flag)
                args.extend(str(v) for v in value)
            else:
                args.extend([flag, str(value)])
        if stage.output is not None:
            args.extend([stage.output_flag, str(self.stage_dir(stage) / stage.output)])
        return args

    def engine_flags(self, stage: StageSpec) -> list[str]:
        """``--engine``/``--ray-address`` for a curation stage, unless its own options choose."""
        if self.recipe.engine is None or stage.command.split()[0] not in SCALABLE or "engine" in stage.options:
            return []
        flags = ["--engine", self.recipe.engine]
        return flags + (["--ray-address", self.recipe.ray_address] if self.recipe.ray_address else [])

    def _input_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else (self.base / path)

    def run(self, start_from: str | None = None) -> list[StageRun]:
        """Run every stage in order; a stage at or after ``start_from`` always runs."""
        from thresher.cli.main import main as thresher_main

        names = [s.name for s in self.recipe.stages]
        if start_from is not None and start_from not in names:
            raise ThresherError(f"--from {start_from}: no such stage (stages: {', '.join(names)})")
        check_stages(self.recipe.stages, self.path)  # the whole recipe, before its first stage
        forced = False
        results = []
        for stage in self.recipe.stages:
            if not stage.when:
                results.append(StageRun(stage.name, "off", []))
                continue
            forced = forced or stage.name == start_from
            argv = self.argv(stage)
            if stage.output is not None:
                self.outputs[stage.name] = self.stage_dir(stage) / stage.output
            fingerprint = self.fingerprint(argv)  # where it runs does not change what it writes
            argv += self.engine_flags(stage)
            previous = self.previous["stages"].get(stage.name)
            if not forced and previous and previous.get("fingerprint") == fingerprint and self._outputs_exist(stage):
                self.manifest["stages"][stage.name] = previous
                results.append(StageRun(stage.name, "skipped", argv, 0.0, previous.get("counts", {}), previous.get("output")))
                continue
            forced = True  # once a stage reruns, everything after it sees new inputs
            self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
            start, cpu = time.perf_counter(), time.process_time()
            try:
                code = thresher_main(argv)
            except SystemExit as exc:  # argparse rejected the stage's options
                code = exc.code if isinstance(exc.code, int) else 2
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            if (code or 0) not in stage.accept_exit:
                self._save()
                raise ThresherError(f"stage {stage.name} failed (exit {code}): thresher {' '.join(masked(argv))}")
            entry = {
                "command": masked(argv),
                "exit": code or 0,
                "fingerprint": fingerprint,
                "inputs": self.input_hashes(argv),
                "output": str(self.outputs.get(stage.name, self.stage_dir(stage))),
                "counts": collect_counts(self.stage_dir(stage)),
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),  # all threads; on a shared machine the figure wall-clock hides
            }
            self.manifest["stages"][stage.name] = entry
            self._save()
            results.append(StageRun(stage.name, "ran", argv, seconds, entry["counts"], entry["output"]))
        self._save()
        return results

    def _outputs_exist(self, stage: StageSpec) -> bool:
        target = self.outputs.get(stage.name, self.stage_dir(stage))
        return target.exists()

    def _save(self) -> None:
        write_json(self.run_dir / MANIFEST, self.manifest)

    def input_hashes(self, argv: list[str]) -> dict[str, str]:
        """Content hashes of every existing file or folder named on the command line (outputs and caches aside:
        a cache the stage itself fills would otherwise make every rerun look like new input)."""
        hashes = {}
        for arg, previous in zip(argv, [""] + argv[:-1]):
            if previous in ("-o", "--out", "--report", "--cache"):
                continue
            path = Path(arg)
            if arg and not arg.startswith("-") and path.exists():
                hashes[arg] = content_hash(path)
        return hashes

    def fingerprint(self, argv: list[str]) -> str:
        payload = json.dumps({"argv": argv, "inputs": self.input_hashes(argv)}, sort_keys=True)
        return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", type=InputPath, metavar="RECIPE.yaml|NAME",
                        help="the recipe file, or the name of a shipped recipe (see --list)")
    parser.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    parser.add_argument("--out", type=OutputPath, metavar="DIR",
                        help="run folder (default: the recipe's run_dir, else ./thresher-run/<recipe name>)")
    parser.add_argument("--from", dest="start_from", metavar="STAGE", help="rerun from this stage on, even if unchanged")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="VAR=VALUE", help="override a recipe var")
    parser.add_argument("--engine", choices=("local", "ray"),
                        help="run the curation stages (validate, convert, dedup, filter, stats) here or on Ray "
                             "(default: the recipe's engine, else local)")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="with --engine ray: the cluster to join (auto: the one `ray start --head` started)")


def run(args: argparse.Namespace) -> int:
    if args.list:
        print_recipes()
        return 0
    if args.recipe is None:
        raise ThresherError("name a recipe file or a shipped recipe (thresher run --list)")
    path = find_recipe(args.recipe)
    recipe = load_recipe(path, parse_sets(args.overrides))
    if args.engine or args.ray_address:
        engine = args.engine or "ray"
        address = (args.ray_address or recipe.ray_address) if engine == "ray" else None
        recipe = recipe.model_copy(update={"engine": engine, "ray_address": address})
    run_dir = Path(args.out or recipe.run_dir or Path("thresher-run") / path.stem).resolve()
    results = Runner(recipe, path, run_dir).run(args.start_from)
    print_summary(results, run_dir)
    return 0


def _results(results: dict[str, Any]) -> str:
    """Training and eval headlines in a few words."""
    if "identity_pass_rate" in results:
        before = results.get("base_identity_pass_rate")
        parrot_before = results.get("base_parrot_rate")
        identity = f"{before:.0%} -> {results['identity_pass_rate']:.0%}" if before is not None else f"{results['identity_pass_rate']:.0%}"
        parrot = f"{parrot_before:.0%} -> {results['parrot_rate']:.0%}" if parrot_before is not None else f"{results['parrot_rate']:.0%}"
        return f"identity {identity}, parrot {parrot}"
    return ", ".join(f"{k} {v:g}" for k, v in results.items())


def print_summary(results: list[StageRun], run_dir: Path) -> None:
    """One rich table: each stage's status, counts, removals by reason, seconds, output."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"thresher run: {run_dir}")
    for column in ("stage", "status", "in", "kept", "removed", "results", "seconds"):
        table.add_column(column, overflow="fold")
    for result in results:
        counts = result.counts
        removed = ", ".join(f"{k}: {v}" for k, v in (counts.get("removed") or {}).items())
        table.add_row(
            result.name, result.status, str(counts.get("in", "")), str(counts.get("kept", counts.get("converted", ""))),
            removed, _results(counts.get("results") or {}), f"{result.seconds:.1f}",
        )
    Console().print(table)
    print(f"outputs under {run_dir}/<stage>/; manifest: {run_dir / MANIFEST}")
