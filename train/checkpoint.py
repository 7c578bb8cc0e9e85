"""Checkpoints that resume exactly: weights, optimizer, scheduler, RNG states and the data position.

``OUT/checkpoints/step-N`` holds the model or adapter as plain Hugging Face
files, ``optimizer.pt``, ``scheduler.pt``, one ``rng_<rank>.pt`` per process and
``trainer_state.json`` (the ``LoopState``); online RL adds ``rollouts_<rank>.pt``,
each process's micro-batches of the current round and the round's metrics. A
checkpoint is written as ``step-N.partial`` and renamed when complete, so it
is either whole or absent.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from thresher.curate.errors import ThresherError
from thresher.curate.io.writers import new_file_mode
from thresher.train.config import CONFIG_FILE, TrainConfig, read_yaml

if TYPE_CHECKING:
    from thresher.train.loop import Artifacts

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"


@dataclass
class LoopState:
    """Where training is: saved in every checkpoint as ``trainer_state.json``."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0  # next global micro-batch of ``epoch``
    units_seen: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)


def save_weights(model: Any, folder: Path) -> None:
    """The model (full) or adapter (PEFT) as plain Hugging Face files, readable as the umask allows."""
    model.save_pretrained(folder, safe_serialization=True)
    new_file_mode(Path(folder).glob("*.safetensors"))


def load_weights(model: Any, folder: Path) -> None:
    """Restore what ``save_weights`` wrote into an already built model.

    A model that saves more than one Hugging Face model's files (RL's policy
    plus value head) restores them itself, through its ``load_checkpoint_weights``.
    """
    from safetensors.torch import load_file

    if hasattr(model, "load_checkpoint_weights"):
        model.load_checkpoint_weights(folder)
        return
    if hasattr(model, "peft_config"):
        from peft import load_peft_weights, set_peft_model_state_dict

        set_peft_model_state_dict(model, load_peft_weights(str(folder), device="cpu"))
        return
    state: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("model*.safetensors")):
        state.update(load_file(file))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"checkpoint {folder} does not fit the model: missing {missing}, unexpected {unexpected}")


def rng_state() -> dict[str, Any]:
    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out: Path, state: LoopState, model: Any, optimizer: Any, scheduler: Any, accelerator: Any,
    artifacts: Artifacts, keep: int, rollouts: Any = None,
) -> Path:
    """Write ``checkpoints/step-N`` (complete or absent) and keep only the newest ``keep``.

    ``rollouts`` (online RL: this process's micro-batches of the round and the
    round's metrics) is saved per process, since each process sampled its own.
    """
    folder = out / CHECKPOINTS / f"step-{state.step}"
    partial = folder.with_name(folder.name + ".partial")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        save_weights(accelerator.unwrap_model(model), partial)
        artifacts.save_extras(partial)
        torch.save(optimizer.state_dict(), partial / "optimizer.pt")
        torch.save(scheduler.state_dict(), partial / "scheduler.pt")
        position = {key: value for key, value in state.__dict__.items() if key != "log"}
        (partial / STATE_FILE).write_text(json.dumps(position, indent=1), encoding="utf-8")
    accelerator.wait_for_everyone()
    torch.save(rng_state(), partial / f"rng_{accelerator.process_index}.pt")
    if rollouts is not None:
        torch.save(rollouts, partial / f"rollouts_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        for old in checkpoints(out)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return folder


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints of ``out``, oldest first."""
    folder = out / CHECKPOINTS
    found = [p for p in folder.glob("step-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def load_checkpoint(folder: Path, model: Any, optimizer: Any, scheduler: Any, accelerator: Any) -> LoopState:
    """Restore everything ``save_checkpoint`` wrote; returns the data position to continue from."""
    load_weights(accelerator.unwrap_model(model), folder)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(folder / f"rng_{accelerator.process_index}.pt", weights_only=False))
    return LoopState(**json.loads((folder / STATE_FILE).read_text(encoding="utf-8")))


def load_rollouts(folder: Path, accelerator: Any) -> tuple[dict[int, dict[str, Any]], dict[str, float]]:
    """This process's micro-batches of the checkpoint's round, and the round's metrics."""
    batches, metrics = torch.load(folder / f"rollouts_{accelerator.process_index}.pt", map_location="cpu",
                                  weights_only=True)
    return batches, metrics


def check_output(config: TrainConfig) -> None:
    """Call before loading anything: a fresh run must not silently mix with an old one in OUT,
    and a resumed run must use the settings it started with (else its curve is not a continuation)."""
    out = Path(config.output)
    saved = out / CONFIG_FILE
    if not config.resume:
        if checkpoints(out):
            raise ThresherError(f"{out} already holds checkpoints: pass --resume to continue, or choose a new -o")
        return
    if not saved.exists():
        raise ThresherError(f"--resume: {out} has no {CONFIG_FILE}; nothing to resume")
    before = {**read_yaml(saved), "resume": True}
    now = config.model_dump(mode="json")
    changed = sorted(k for k in now if before.get(k) != now[k])
    if changed:
        raise ThresherError(f"--resume with different settings ({', '.join(changed)}); use the settings of {saved}")
