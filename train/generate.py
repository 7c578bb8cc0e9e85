"""Batched generation: every eval and the chat one-shot mode generate through here; RL rollouts pad the same way.

One ``generate`` call per batch of conversations, left-padded so every row's
prompt ends where its answer starts, with the KV cache on, stopping each row
at the first end-of-turn token (``stop_ids``: the generation config's EOS plus
the chat template's end of turn). Conversations are sorted by prompt length
before batching so rows of a batch pad little; results come back in the
order given. A row that ends early keeps being padded by ``generate`` until
the longest row of its batch is done; the pad tokens are cut off here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Generation:
    """One answer: its text, whether it ended at an end-of-turn token, and its token ids."""

    text: str
    stopped: bool
    prompt_ids: list[int] = field(repr=False)
    completion_ids: list[int] = field(repr=False)  # through the end-of-turn token when ``stopped``


def prompt_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Token ids of ``messages`` rendered with the chat template and the generation prompt."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def left_padded(rows: Sequence[list[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) with every row right-aligned."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            ids[index, width - len(row):] = torch.tensor(row)
            mask[index, width - len(row):] = 1
    return ids, mask


def generate_batch(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, Any]]],
    max_new_tokens: int = 256,
    batch_size: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
    progress: Callable[[int], None] | None = None,
    streamer: Any = None,
) -> list[Generation]:
    """The assistant's next turn for every conversation (greedy when ``temperature`` is 0).

    ``progress(n)`` is called after each batch with the number of conversations it finished.
    ``streamer`` (a transformers streamer, e.g. ``TextStreamer``) shows tokens as they come;
    streaming is for one conversation at a time, as ``thresher chat`` has it.
    """
    import torch

    from thresher.train.inference import stop_ids

    if streamer is not None and len(conversations) != 1:
        raise ValueError("a streamer shows one conversation; got %d" % len(conversations))

    stops = stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    prompts = [prompt_ids(tokenizer, messages) for messages in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    results: list[Generation | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        ids, mask = left_padded([prompts[i] for i in batch], pad_id)
        with torch.no_grad():
            output = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                    eos_token_id=stops, pad_token_id=pad_id, use_cache=True, streamer=streamer,
                                    **sampling)
        for row, index in enumerate(batch):
            new = output[row, ids.shape[1]:].tolist()
            end = next((position for position, token in enumerate(new) if token in stops), None)
            completion = new if end is None else new[:end + 1]
            results[index] = Generation(
                text=tokenizer.decode(completion, skip_special_tokens=True),
                stopped=end is not None,
                prompt_ids=prompts[index],
                completion_ids=completion,
            )
        if progress is not None:
            progress(len(batch))
    return [result for result in results if result is not None]
