"""One typed training config for flags and YAML alike.

Precedence: field defaults < ``--config FILE.yaml`` < flags given on the
command line. The resolved config is written to ``OUT/train_config.yaml``;
that file is itself a valid ``--config``, so any run can be repeated.
``TrainConfig`` holds the flags every objective shares (SFT, reward model,
DPO); an objective with extra knobs subclasses it and adds its own flags.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from thresher.curate.errors import ThresherError

CONFIG_FILE = "train_config.yaml"


class TrainConfig(BaseModel):
    """Every knob of a training run; ``lr`` defaults by method (1e-4 LoRA/QLoRA, 1e-5 full)."""

    model_config = ConfigDict(extra="forbid")
    #: The ``thresher train`` subcommand this config is for (a LLaMA-Factory YAML's ``stage`` must match it).
    command: ClassVar[str] = "sft"

    model: str = Field(description="model folder or hub id")
    data: list[str] = Field(min_length=1, description="training record files")
    output: str = Field(description="output folder")
    method: Literal["lora", "full", "qlora"] = "lora"
    eval_data: list[str] = Field(default_factory=list, description="evaluation record files")
    val_size: float = Field(0.0, ge=0, description="held-out fraction (<1) or count (>=1) of the training data")
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="optimizer steps; overrides epochs")
    lr: float | None = Field(None, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(4, gt=0, description="rows per device per micro-batch")
    grad_accum: int = Field(2, gt=0, description="micro-batches per optimizer step")
    max_len: int = Field(2048, gt=1)
    packing: bool = False
    lora_r: int = Field(8, gt=0)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target: str = Field("all-linear", description="'all-linear' or comma-separated module names")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    seed: int = 42
    save_steps: int | None = Field(None, gt=0, description="checkpoint every N steps (default: each epoch end)")
    save_total_limit: int = Field(2, gt=0, description="checkpoints kept (newest)")
    eval_steps: int | None = Field(None, gt=0, description="evaluate every N steps (default: each epoch end)")
    resume: bool = False
    system: str | None = Field(None, description="system prompt for dialogues that have none")
    chat_template: str | None = Field(None, description="Jinja chat template file, or a shipped template's name")

    @field_validator("model")
    @classmethod
    def _absolute_local_model(cls, value: str) -> str:
        """A local base folder is recorded absolute: adapters save it as their base, and a relative
        path would break loading them from any other working directory."""
        path = Path(value).expanduser()
        return str(path.resolve()) if path.exists() else value

    @field_validator("data", "eval_data", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        """YAML may name a single file without a list."""
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _defaults(self) -> TrainConfig:
        if self.lr is None:
            self.lr = 1e-5 if self.method == "full" else 1e-4
        if self.eval_data and self.val_size:
            raise ValueError("give --eval-data or --val-size, not both")
        return self

    def resolve_models(self) -> TrainConfig:
        """Every model the run will load, checked before anything is (see ``model_path``); configs
        naming more models (a reference, a reward model) check theirs too."""
        from thresher.train.model_path import resolve_model

        self.model = resolve_model(self.model)
        return self

    def lora_targets(self) -> str | list[str]:
        """peft's ``target_modules``: the string ``all-linear`` or a list of names."""
        if self.lora_target == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.lora_target.split(",") if name.strip()]

    def save(self, folder: str | Path) -> Path:
        """Write the resolved config as YAML (atomically); returns the path."""
        import yaml

        from thresher.curate.io.writers import atomic_open

        path = Path(folder) / CONFIG_FILE
        with atomic_open(path) as handle:
            yaml.safe_dump(self.model_dump(mode="json"), handle, sort_keys=False, allow_unicode=True)
        return path


class RMConfig(TrainConfig):
    """``TrainConfig`` plus the reward model's own knobs."""

    command: ClassVar[str] = "rm"
    loss: Literal["pairwise", "regression"] = "pairwise"
    margin_field: str | None = Field(None, description="pair field (meta or top level) holding a required margin")
    center_coef: float = Field(0.0, ge=0, description="weight of the reward-centering term (r_c + r_r)^2")


class DPOConfig(TrainConfig):
    """``TrainConfig`` plus DPO's own knobs."""

    command: ClassVar[str] = "dpo"
    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference")
    ref_model: str | None = Field(None, description="reference model (default: the starting weights)")

    def resolve_models(self) -> DPOConfig:
        from thresher.train.model_path import resolve_model

        super().resolve_models()
        if self.ref_model:
            self.ref_model = resolve_model(self.ref_model)
        return self


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config as a dict with ``-`` in keys read as ``_`` (flags and keys spell alike)."""
    from thresher.curate.io.yaml_file import load_yaml_file

    data = load_yaml_file(path, "training config") or {}
    if not isinstance(data, dict):
        raise ThresherError(f"{path}: a config must be a mapping of option: value")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def resolve(cls: type[TrainConfig], args: argparse.Namespace) -> TrainConfig:
    """Build ``cls`` from ``--config`` and the flags actually given (flags win).

    A LLaMA-Factory YAML is translated key by key (``lf_config``)."""
    from thresher.train.lf_config import is_llamafactory, translate

    given = {k: v for k, v in vars(args).items() if k in cls.model_fields}
    config = read_yaml(args.config) if getattr(args, "config", None) else {}
    if is_llamafactory(config):
        config = translate(config, cls.command, set(cls.model_fields), str(args.config))
    merged = {**config, **given}
    try:
        config = cls.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(map(str, e['loc'])).replace('_', '-') or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ThresherError(problems) from None
    return config.resolve_models()


def add_training_flags(parser: argparse.ArgumentParser, data_flag: str = "--data", omit: tuple[str, ...] = (),
                       helps: dict[str, str] | None = None) -> None:
    """The flags every ``thresher train`` command shares; unset flags stay unset (YAML may fill them).

    ``data_flag`` names the data flag (RL reads ``--prompts``); ``omit`` drops the flags (by
    field name) a command has no use for; ``helps`` replaces help texts (by field name) where a
    command's defaults or meaning differ.
    """
    S = argparse.SUPPRESS
    flags: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("--model",), dict(help="model folder or hub id")),
        (("--config",), dict(default=None, metavar="FILE.yaml",
                             help="YAML config (thresher's keys, or a LLaMA-Factory training YAML); flags given here "
                                  "override it")),
        ((data_flag,), dict(dest="data", nargs="+", metavar="FILE", help="training record files")),
        (("-o", "--output"), dict(metavar="OUT", help="output folder")),
        (("--method",), dict(choices=("lora", "full", "qlora"), help="lora (default), full or qlora (CUDA only)")),
        (("--eval-data",), dict(nargs="+", metavar="FILE", help="evaluation record files")),
        (("--val-size",), dict(type=float, help="hold out this fraction (<1) or count (>=1) for evaluation")),
        (("--epochs",), dict(type=float, help="epochs (default 3)")),
        (("--max-steps",), dict(type=int, help="optimizer steps; overrides --epochs")),
        (("--lr",), dict(type=float, help="peak learning rate (default 1e-4 LoRA, 1e-5 full)")),
        (("--weight-decay",), dict(type=float, help="AdamW weight decay (default 0)")),
        (("--batch-size",), dict(type=int, help="rows per device per micro-batch (default 4)")),
        (("--grad-accum",), dict(type=int, help="micro-batches per optimizer step (default 2)")),
        (("--max-len",), dict(type=int, help="max tokens per record (default 2048)")),
        (("--packing",), dict(action="store_true", help="pack several records per row")),
        (("--lora-r",), dict(type=int, help="LoRA rank (default 8)")),
        (("--lora-alpha",), dict(type=float, help="LoRA alpha (default 16)")),
        (("--lora-dropout",), dict(type=float, help="LoRA dropout (default 0.05)")),
        (("--lora-target",), dict(help="'all-linear' (default) or comma-separated module names")),
        (("--warmup-ratio",), dict(type=float, help="warmup fraction of steps (default 0.03)")),
        (("--scheduler",), dict(choices=("cosine", "linear", "constant"), help="decay after warmup (default cosine)")),
        (("--seed",), dict(type=int, help="seed for init, data order and dropout (default 42)")),
        (("--save-steps",), dict(type=int, help="checkpoint every N steps (default: each epoch)")),
        (("--save-total-limit",), dict(type=int, help="checkpoints kept, newest first (default 2)")),
        (("--eval-steps",), dict(type=int, help="evaluate every N steps (default: each epoch)")),
        (("--resume",), dict(action="store_true", help="continue from the newest checkpoint in OUT")),
        (("--system",), dict(metavar="TEXT", help="system prompt for records without one")),
        (("--chat-template",), dict(metavar="FILE|NAME", help="Jinja chat template file, or a shipped one: qwen, llama3, "
                                                             "chatml, glm4, mistral, default (default: the tokenizer's, "
                                                             "else ChatML)")),
    ]
    for names, options in flags:
        field = options.get("dest") or names[-1].lstrip("-").replace("-", "_")
        if field in omit:
            continue
        if helps and field in helps:
            options = {**options, "help": helps[field]}
        parser.add_argument(*names, **{"default": S, **options})
