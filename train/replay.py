"""``thresher generate``: a local model answers every record's prompt: replay data.

Fine-tuning a model on a new identity pulls it away from what it used to say
about everything else. Mixing in general data written by someone else pulls
it too, towards that writer's style. Mixing in the model's *own* greedy
answers to general prompts (self-distillation replay) anchors it where it
was: on SmolLM2-135M, 60 identity records trained with 60 such answers left
the NLL of its held-out general answers flat (1.106 -> 1.096), while the
same identity training with half that replay moved it by 7%
(``README.md``, "Choosing the defaults").

Each QA or dialogue record's conversation up to its last user turn is asked
(system prompt kept), greedy, in left-padded batches (``generate_batch``),
and written as a QA record (a single exchange) or a ``messages`` dialogue
whose last assistant turn is the model's answer. An answer that runs out of
``--max-new-tokens`` before the end-of-turn token is removed
(``not_stopped``): trained with an end-of-turn token it never produced, it
would teach the model to stop mid-sentence. ``--keep-cut`` keeps it instead,
marked ``meta.stopped: false``, which ``thresher train sft`` honours by
training the answer's text without its end-of-turn token; a small model that
rambles past any affordable limit (SmolLM2 stops within 96 tokens on about a
third of general prompts) then still gives one replay record per prompt. Records without a user turn to
answer, or with tool calls, are removed (``no_prompt``). records in == written + removed.
"""

from __future__ import annotations

import argparse
from typing import Any

from thresher.curate.io.claims import InputPath, OutputPath


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="+", type=InputPath, metavar="IN", help="record files whose prompts are answered (QA, dialogues)")
    parser.add_argument("--model", required=True, type=InputPath, metavar="PATH", help="model folder, or an adapter folder (its base is read from it)")
    parser.add_argument("--adapter", type=InputPath, metavar="DIR", help="a LoRA adapter folder to apply to --model")
    parser.add_argument("-o", "--output", required=True, type=OutputPath, metavar="OUT", help="answered records (.jsonl/.json, +.gz)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="longest answer; longer ones are removed (default 128)")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per generate call (default 32)")
    parser.add_argument("--keep-cut", action="store_true",
                        help="keep answers cut at --max-new-tokens, marked meta.stopped=false: "
                             "thresher train sft then trains their text but no end-of-turn token")


def conversation(record: Any) -> list[dict[str, str]] | None:
    """The messages a model should answer next: everything before the last assistant turn."""
    from thresher.schemas import QA, Dialogue

    if isinstance(record, QA):
        record = record.to_dialogue()
    if not isinstance(record, Dialogue) or record.tools or any(m.tool_calls for m in record.messages):
        return None  # tool use needs the tools' results, which a replay cannot produce
    messages = [{"role": m.role, "content": m.content} for m in record.messages]
    while messages and messages[-1]["role"] != "user":
        messages.pop()
    return messages or None


def answered(messages: list[dict[str, str]], answer: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A QA record for a single exchange, else a ``messages`` dialogue ending in ``answer``."""
    turns = [m for m in messages if m["role"] != "system"]
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    if len(turns) == 1:
        return {**({"system": system} if system else {}), "question": turns[0]["content"], "answer": answer, "meta": meta}
    return {"messages": [*messages, {"role": "assistant", "content": answer}], "meta": meta}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from thresher.curate.io.writers import RecordWriter
    from thresher.curate.stage import Stage, default_sidecar
    from thresher.train.generate import generate_batch
    from thresher.train.inference import load_trained
    from thresher.train.metrics import counting

    removed, stats = default_sidecar(args.output, "removed"), default_sidecar(args.output, "stats")
    with Stage("generate", removed, stats) as stage:
        asked: list[tuple[list[dict[str, str]], Any]] = []
        for record, row in stage.records(args.input):
            messages = conversation(record)
            if messages is None:
                stage.remove(row, "no_prompt", kind=record.kind)
            else:
                asked.append((messages, row))
        model, tokenizer = load_trained(args.model, args.adapter)
        with counting(f"answering with {args.model}", len(asked)) as progress:
            results = generate_batch(model, tokenizer, [messages for messages, _ in asked], args.max_new_tokens,
                                     args.batch_size, progress=progress)
        with RecordWriter(args.output) as writer:
            for (messages, row), result in zip(asked, results):
                text = result.text.strip()
                if not result.stopped and not args.keep_cut:
                    stage.remove(row, "not_stopped", max_new_tokens=args.max_new_tokens, answer=text)
                elif not text:
                    stage.remove(row, "blank")
                else:
                    meta = {"source": f"{row.source}:{row.line}", "generated_by": str(args.model),
                            **({"adapter": str(args.adapter)} if args.adapter else {}), "stopped": result.stopped}
                    writer.write(answered(messages, text, meta))
                    stage.keep()
    Console().print(f"answered {stage.kept} of {stage.records_in} records -> {args.output}"
                    + (f" ({stage.records_in - stage.kept} removed: {removed})" if stage.kept < stage.records_in else ""))
    return 0
