"""The one training loop: SFT, reward models, DPO, PPO and GRPO all run through ``train``.

Read it top to bottom: build the schedule, (maybe) restore a checkpoint, then
for every optimizer step take a *window* of ``grad_accum`` micro-batches,
back-propagate each micro-batch's summed loss divided by the number of units
(trained tokens, pairs) in the whole window, clip at 1.0, step, log, evaluate,
checkpoint. Dividing by the window's count (summed over all processes) makes
accumulation exactly a larger batch, however the tokens fall across
micro-batches.

What is trained is an ``Objective``: it counts the units of a batch and
returns the summed loss plus summed metrics. SFT is one objective
(``sft.SFTObjective``); a reward model or DPO is another, with its own
batches; the loop does not change.

Devices, mixed precision and multi-GPU come from ``accelerate``: the same
script runs under ``python``, ``accelerate launch`` and ``torchrun``. Batches
are sharded by process (process ``i`` takes micro-batches ``i, i+n, ...``).

Adding an objective (reward model, DPO): write a class with ``unit``,
``count(batch)``, ``loss(model, batch) -> (loss_sum, metric_sums)`` and
``finalize(means)``; build ``batches(epoch) -> Sequence[dict[str, Tensor]]``
(deterministic per epoch, e.g. ``collate.Batches``); subclass ``TrainConfig``
for extra flags; call ``start_run(config)`` first (it checks OUT and returns
the accelerator), then ``train(config, model, objective, batches,
eval_batches, accelerator, Artifacts(save_extras))``. Checkpointing, resume, logging and the plot come
with it.

Online RL (PPO, GRPO) passes ``Rollouts`` instead of a batch source: each
loop epoch is then one *round*, whose micro-batches the model being trained
samples itself (``collect``) once the previous round's updates are done; the
round is trained ``passes`` times (PPO epochs) and no window spans two
passes. A checkpoint also keeps the round's micro-batches, so a resumed run
continues the very round it was interrupted in.

Checkpoints (``checkpoint.py``) hold the model or adapter, optimizer,
scheduler, per-process RNG states and the data position; ``resume`` restores
all of it and continues with the same loss curve as an uninterrupted run.
``metrics.py`` writes ``metrics.jsonl``, ``loss.png`` and the progress bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from thresher.train.checkpoint import (
    CHECKPOINTS, LoopState, check_output, checkpoints, load_checkpoint, load_rollouts, save_checkpoint, save_weights,
)
from thresher.train.config import TrainConfig
from thresher.train.metrics import MetricsLog, progress_bar



class Objective(Protocol):
    """What the loop optimises; one implementation per training kind.

    ``unit`` names what ``count`` counts ("tokens", "pairs"): the loss of a
    window is ``sum(loss_sum) / sum(count)`` over its micro-batches, and
    every metric is reported as ``sum(metric_sum) / sum(count)``.
    """

    unit: str

    def count(self, batch: dict[str, Any]) -> int:
        """Units in ``batch`` that carry loss (computed before the forward pass)."""
        ...

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(summed loss over the batch's units, summed metrics over the same units)."""
        ...

    def finalize(self, means: dict[str, float]) -> dict[str, float]:
        """Derived metrics from the means (e.g. perplexity from the loss)."""
        ...


#: ``epoch -> batches for that epoch``; must depend only on the epoch (and a seed) for exact resume.
BatchSource = Callable[[int], Sequence[dict[str, Any]]]


@dataclass
class Rollouts:
    """An online batch source (RL): every round's micro-batches are made by the model being trained.

    ``collect(model, round)`` gets the unwrapped model and returns this
    process's micro-batches of the round keyed by their global position
    (``0 .. batches_per_round - 1``; process ``i`` holds positions ``i, i+n,
    ...``, as with offline batches), plus round metrics that every step of the
    round logs. ``rounds_per_epoch`` rounds make one pass over the prompts
    (what ``--epochs`` counts).
    """

    collect: Callable[[Any, int], tuple[dict[int, dict[str, Any]], dict[str, float]]]
    batches_per_round: int
    passes: int = 1
    rounds_per_epoch: int = 1


@dataclass
class Artifacts:
    """How to write a usable model folder: weights, plus tokenizer/template/generation config."""

    save_extras: Callable[[Path], None] = lambda folder: None


def build_accelerator(seed: int) -> Any:
    """bf16 autocast where the GPU supports it, fp16 on older GPUs, fp32 on CPU."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if torch.cuda.is_available():
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        precision = "no"
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())  # cpu: gloo for torchrun on CPU
    set_seed(seed)
    return accelerator


def start_run(config: TrainConfig) -> Any:
    """What every trainer does before loading anything: OUT exists and holds no other run
    (``check_output``), transformers' download bars are off, and the seeded accelerator is set up."""
    from transformers.utils import logging as hf_logging

    Path(config.output).mkdir(parents=True, exist_ok=True)
    check_output(config)
    hf_logging.disable_progress_bar()
    return build_accelerator(config.seed)


def local_windows(num_batches: int, grad_accum: int, processes: int, rank: int) -> list[list[int]]:
    """Global micro-batch indices this process runs, grouped by optimizer step.

    An epoch uses a multiple of ``processes`` micro-batches (at most
    ``processes - 1`` are skipped, never on one GPU) so every process joins
    every gradient all-reduce; the last window may be short.
    """
    usable = num_batches - num_batches % processes
    per_window = grad_accum * processes
    return [
        [i for i in range(start, min(start + per_window, usable)) if i % processes == rank]
        for start in range(0, usable, per_window)
    ]


def run_window(
    model: Any, objective: Objective, window: Sequence[dict[str, Any]], accelerator: Any
) -> tuple[float, dict[str, float], int]:
    """Forward and backward one accumulation window; return (mean loss, metric means, units).

    Gradients accumulate in ``.grad``; the caller steps the optimizer.
    """
    device = accelerator.device
    local = sum(objective.count(batch) for batch in window)
    total = int(accelerator.reduce(torch.tensor(local, device=device), reduction="sum"))
    if total == 0:
        raise RuntimeError("an accumulation window has no units to train on")
    # DDP averages gradients over processes; scale so the result is the sum over all units / total.
    scale = accelerator.num_processes / total
    loss_sum = torch.zeros((), device=device)
    metric_sums: dict[str, torch.Tensor] = {}
    for index, batch in enumerate(window):
        batch = {key: value.to(device) for key, value in batch.items()}
        sync = index == len(window) - 1
        with nullcontext() if sync else accelerator.no_sync(model):
            batch_loss, metrics = objective.loss(model, batch)
            accelerator.backward(batch_loss * scale)
        loss_sum += batch_loss.detach().float()
        for key, value in metrics.items():
            metric_sums[key] = metric_sums.get(key, 0) + value.detach().float()
    loss = float(accelerator.reduce(loss_sum, reduction="sum")) / total
    means = {key: float(accelerator.reduce(value, reduction="sum")) / total for key, value in metric_sums.items()}
    return loss, means, total


@torch.no_grad()
def evaluate(model: Any, objective: Objective, batches: Sequence[dict[str, Any]], accelerator: Any) -> dict[str, float]:
    """Mean loss and metrics over every eval batch (all processes), prefixed ``eval_``.

    Processes may hold different numbers of eval batches, so the forward runs
    on the unwrapped model: a DDP forward would wait for the other processes.
    """
    from accelerate.utils import gather_object

    model = accelerator.unwrap_model(model)
    model.eval()
    sums: dict[str, float] = {"loss": 0.0, "units": 0.0}
    for index in range(accelerator.process_index, len(batches), accelerator.num_processes):
        batch = {key: value.to(accelerator.device) for key, value in batches[index].items()}
        batch_loss, metrics = objective.loss(model, batch)
        sums["loss"] += float(batch_loss)
        sums["units"] += objective.count(batch)
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value)
    model.train()
    # One gather of plain dicts: a process without eval batches has no metric keys to reduce.
    totals: dict[str, float] = {}
    for part in gather_object([sums]) if accelerator.num_processes > 1 else [sums]:
        for key, value in part.items():
            totals[key] = totals.get(key, 0.0) + value
    units = totals.pop("units")
    if units == 0:
        return {}
    means = {key: value / units for key, value in totals.items()}
    return {f"eval_{key}": value for key, value in objective.finalize(means).items()}


def build_scheduler(config: TrainConfig, optimizer: Any, total_steps: int) -> Any:
    """Linear warmup over ``warmup_ratio`` of the steps, then cosine, linear or constant."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
    warmup = math.ceil(config.warmup_ratio * total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


# ---------------------------------------------------------------- the loop


def train(
    config: TrainConfig,
    model: Any,
    objective: Objective,
    batches: BatchSource | Rollouts,
    eval_batches: Sequence[dict[str, Any]] = (),
    accelerator: Any = None,
    artifacts: Artifacts | None = None,
) -> LoopState:
    """Train ``model`` on ``objective`` as ``config`` says; write checkpoints, logs and the final model to OUT.

    ``batches(epoch)`` must return the same batches for the same epoch in
    every run (resume relies on it); ``Rollouts`` sample them round by round.
    Returns the final state (its ``log`` holds every logged record).
    """
    out = Path(config.output)
    accelerator = accelerator or build_accelerator(config.seed)
    artifacts = artifacts or Artifacts()
    main = accelerator.is_main_process
    out.mkdir(parents=True, exist_ok=True)

    online = isinstance(batches, Rollouts)
    round_metrics: dict[str, float] = {}
    first: Any = None if online else batches(0)
    count = batches.batches_per_round if online else len(first)
    windows_per_epoch = len(local_windows(count, config.grad_accum, accelerator.num_processes, 0))
    if windows_per_epoch == 0:
        raise RuntimeError("not enough batches for one optimizer step")
    if online:  # a loop epoch is one round; --epochs counts passes over the prompts
        windows_per_epoch *= batches.passes
        steps_per_epoch = windows_per_epoch * batches.rounds_per_epoch
    else:
        steps_per_epoch = windows_per_epoch
    total_steps = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    save_every = config.save_steps or steps_per_epoch
    eval_every = config.eval_steps or steps_per_epoch

    def epoch_data(epoch: int) -> Any:
        """The epoch's batches; for ``Rollouts`` the round, sampled now by the current model."""
        nonlocal round_metrics
        if not online:
            return first if epoch == 0 else batches(epoch)
        data, round_metrics = batches.collect(accelerator.unwrap_model(model), epoch)
        return data

    def epoch_windows(epoch_batches: Any) -> list[list[int]]:
        count = batches.batches_per_round if online else len(epoch_batches)
        windows = local_windows(count, config.grad_accum, accelerator.num_processes, accelerator.process_index)
        return windows * batches.passes if online else windows

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = build_scheduler(config, optimizer, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    # The scheduler is not passed to prepare(): it steps once per optimizer step, on every process alike.

    state = LoopState()
    log = MetricsLog(out, main)
    found = checkpoints(out) if config.resume else []
    resumed_round = None
    if found:
        state = load_checkpoint(found[-1], model, optimizer, scheduler, accelerator)
        state.log = log.restart_after(state.step)
        if online:
            resumed_round, round_metrics = load_rollouts(found[-1], accelerator)
        if main:
            print(f"resumed from {found[-1]} (step {state.step})")
    elif main:
        if config.resume:
            print(f"no checkpoint in {out / CHECKPOINTS}: starting from step 0")
        log.path.unlink(missing_ok=True)

    model.train()
    started = time.perf_counter()
    units_at_start = state.units_seen
    epoch_batches = resumed_round if resumed_round is not None else epoch_data(state.epoch)
    with progress_bar(main) as bar:
        task = bar.add_task("train", total=total_steps, completed=state.step, stats="")
        while state.step < total_steps:
            windows = epoch_windows(epoch_batches)
            per_window = config.grad_accum * accelerator.num_processes
            position = state.batch_index // per_window
            if position >= len(windows):
                state.epoch, state.batch_index = state.epoch + 1, 0
                epoch_batches = epoch_data(state.epoch)
                continue
            window = [epoch_batches[i] for i in windows[position]]
            loss, metrics, units = run_window(model, objective, window, accelerator)
            grad_norm = accelerator.clip_grad_norm_(trainable, 1.0)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.batch_index += per_window
            state.units_seen += units
            elapsed = time.perf_counter() - started
            if online:  # epochs count passes over the prompts, one round at a time
                epoch = (state.epoch + (position + 1) / len(windows)) / batches.rounds_per_epoch
            else:
                epoch = state.epoch + min(state.batch_index, len(epoch_batches)) / len(epoch_batches)
            record = {
                "step": state.step,
                "epoch": round(epoch, 4),
                "loss": loss,
                **objective.finalize({"loss": loss, **metrics}),
                **round_metrics,
                "lr": lr,
                "grad_norm": float(grad_norm),
                f"{objective.unit}_per_s": (state.units_seen - units_at_start) / max(elapsed, 1e-9),
            }
            if eval_batches and (state.step % eval_every == 0 or state.step == total_steps):
                record.update(evaluate(model, objective, eval_batches, accelerator))
            log.write(record)
            state.log.append(record)
            bar.update(task, completed=state.step, stats=(
                f"loss {loss:.4f} lr {lr:.2e} {record[f'{objective.unit}_per_s']:.0f} {objective.unit}/s"))
            if state.step % save_every == 0 and state.step < total_steps:
                save_checkpoint(out, state, model, optimizer, scheduler, accelerator, artifacts,
                                config.save_total_limit, (epoch_batches, round_metrics) if online else None)
    accelerator.wait_for_everyone()
    if main:
        save_weights(accelerator.unwrap_model(model), out)
        artifacts.save_extras(out)
        log.plot()
    return state
