"""Batches: length-grouped by default, or packed rows without cross-record attention.

Length grouping (the default) sorts examples by length inside shuffled
"mega-batches" of 64 batches, so each batch holds similar lengths and
padding stays small while the order is still random from epoch to epoch.

Packing (``--packing``) fills each row with several whole examples up to
``max_len`` (first-fit decreasing). Position ids restart at 0 for every
example and no attention mask is passed: transformers (>= 4.56, and 5.x) then
derives a block-diagonal causal mask from the restarting position ids for
eager and SDPA attention, and flash-attention uses them as varlen boundaries,
so no token attends across records. The first token of each packed example
carries no label (in an unpacked row it is never predicted either), which
makes the packed loss equal to the unpacked one.
``tests/test_train.py::test_packed_matches_unpacked`` checks both properties.

Batches are built per epoch from (seed, epoch) only, so a resumed run
rebuilds exactly the order it was interrupted in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from thresher.train.data import IGNORE, Example

MEGABATCH = 64


def length_grouped(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Index batches of similar lengths, in a random order determined by ``seed``."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * MEGABATCH
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        mega = sorted(order[start : start + span], key=lambda i: -lengths[i])
        batches += [mega[i : i + batch_size] for i in range(0, len(mega), batch_size)]
    rng.shuffle(batches)
    return batches


def naive_batches(count: int, batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches with no regard to length (the benchmark's baseline)."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, count, batch_size)]


def pack(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Group example indices into rows of at most ``max_len`` tokens (first-fit decreasing)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for row, free in enumerate(room):
            if lengths[index] <= free:
                rows[row].append(index)
                room[row] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(max_len - lengths[index])
    return rows


def pad_batch(examples: Sequence[Example], pad_id: int, pad_to: int | None = None) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    import torch

    width = pad_to or max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def packed_batch(rows: Sequence[Sequence[Example]], pad_id: int) -> dict[str, Any]:
    """Rows of concatenated examples with restarting ``position_ids`` and no attention mask.

    Padding at the end of a row is its own segment (positions restart at 0),
    so it neither attends to nor is attended by a real example.
    """
    import torch

    width = max(sum(len(e.input_ids) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for example in row:
            n = len(example.input_ids)
            ids[r, start : start + n] = torch.tensor(example.input_ids)
            labels[r, start : start + n] = torch.tensor(example.labels)
            labels[r, start] = IGNORE
            positions[r, start : start + n] = torch.arange(n)
            start += n
        positions[r, start:] = torch.arange(width - start)
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


class Batches(Sequence):
    """A lazily collated list of batches: index groups in, tensor dicts out."""

    def __init__(self, groups: list[list[int]], collate: Callable[[list[int]], dict[str, Any]]) -> None:
        self.groups = groups
        self.collate = collate

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        return self.collate(self.groups[index])


def sft_batches(
    examples: Sequence[Example], batch_size: int, pad_id: int, packing: bool, max_len: int
) -> Callable[[int], Batches]:
    """``epoch -> Batches`` for SFT, reproducible from ``seed + epoch``; the loop's batch source."""
    lengths = [len(e.input_ids) for e in examples]
    rows = pack(lengths, max_len) if packing else None

    def for_epoch(seed: int) -> Batches:
        if rows is not None:
            order = naive_batches(len(rows), batch_size, seed)
            return Batches(order, lambda g: packed_batch([[examples[i] for i in rows[j]] for j in g], pad_id))
        return Batches(length_grouped(lengths, batch_size, seed), lambda g: pad_batch([examples[i] for i in g], pad_id))

    return for_epoch
