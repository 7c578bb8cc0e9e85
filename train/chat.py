"""``thresher chat``: talk to a trained model in the terminal, replies streamed as they are generated.

Each reply ends at the chat template's end-of-turn token (read from the
trained folder, as training saw it). Typed lines are user turns; ``/reset``
clears the history, ``/exit`` (or end of input) quits. Input may be piped:
``echo "Who are you?" | thresher chat --model OUT`` answers and exits, and
each piped question is echoed (``you> ...``) so a log reads as a conversation.
``--prompt TEXT`` asks one question and prints only the answer.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="OUT_OR_MERGED", help="trained output, merged model or model id")
    parser.add_argument("--adapter", metavar="DIR", help="LoRA adapter to apply to --model")
    parser.add_argument("--system", metavar="TEXT", help="system prompt for the conversation")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="longest reply in tokens (default 512)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 is greedy (default)")
    parser.add_argument("--prompt", metavar="TEXT", help="ask this one question, print only the answer and exit")


def user_turns(stream=sys.stdin):  # noqa: ANN001, ANN201 - a text stream in, strings out
    """Lines typed (with a prompt on a terminal) or piped in (echoed), without their newline."""
    interactive = stream.isatty()
    while True:
        if interactive:
            try:
                line = input("you> ")
            except EOFError:
                return
        else:
            line = stream.readline()
            if not line:
                return
            if line.strip() and not line.strip().startswith("/"):
                print(f"you> {line.rstrip()}", flush=True)
        yield line.rstrip("\n")


def run(args: argparse.Namespace) -> int:
    from transformers import TextStreamer

    from thresher.train.generate import generate_batch
    from thresher.train.inference import load_trained

    model, tokenizer = load_trained(args.model, args.adapter)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict[str, str]] = []
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    if args.prompt is not None:
        [reply] = generate_batch(model, tokenizer, [system + [{"role": "user", "content": args.prompt}]],
                                 args.max_new_tokens, temperature=args.temperature, streamer=streamer)
        if not reply.stopped:
            print(f"[reply cut at --max-new-tokens {args.max_new_tokens}]", file=sys.stderr)
        return 0
    for line in user_turns():
        if line.strip() == "/exit":
            break
        if line.strip() == "/reset":
            history = []
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        sys.stdout.write("assistant> ")
        sys.stdout.flush()
        [reply] = generate_batch(model, tokenizer, [system + history], args.max_new_tokens,
                                 temperature=args.temperature, streamer=streamer)
        if not reply.stopped:
            print(f"[reply cut at --max-new-tokens {args.max_new_tokens}]", file=sys.stderr)
        history.append({"role": "assistant", "content": reply.text})
    return 0
