"""Eval generation speed: one batched ``generate`` per batch vs one call per prompt, in one run.

The evals used to answer one prompt at a time (``generate`` per prompt, KV
cache on); they now go through ``thresher.train.generate.generate_batch``
(prompts sorted by length, left-padded, one call per batch). Both answer the
same prompts from the shipped held-out general set, greedy, with the same
model and thread count; the table shows answers/s, generated tokens/s, the
ratio, and how many answers are identical (greedy decoding should not depend
on the batch; float rounding in padded attention can flip a near-tie).

    python benchmarks/bench_eval.py                       # a tiny random model, built here
    python benchmarks/bench_eval.py --model DIR --prompts 16 --max-new-tokens 24   # e.g. the imported SmolLM2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: a tiny random Llama built here)")
    parser.add_argument("--prompts", type=int, default=32, help="prompts to answer (default 32)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="answer length limit (default 32)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generate call (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    args = parser.parse_args(argv)

    import torch

    from thresher.prompts.banks import general_heldout
    from thresher.train.generate import generate_batch
    from thresher.train.inference import load_trained

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        path = args.model
        if path is None:
            from thresher.train.tiny import build_tiny_model

            path = str(build_tiny_model(os.path.join(work, "tiny"), hidden=128, layers=2))
        model, tokenizer = load_trained(path)
        items = general_heldout()
        chosen = [items[i * len(items) // args.prompts] for i in range(args.prompts)]  # spread over langs and kinds
        conversations = [[{"role": "user", "content": item["prompt"]}] for item in chosen]
        generate_batch(model, tokenizer, conversations[:2], max_new_tokens=4)  # warm-up
        results = {}
        for name, batch_size in (("one call per prompt", 1), (f"batched ({args.batch_size})", args.batch_size)):
            start = time.perf_counter()
            answers = generate_batch(model, tokenizer, conversations, args.max_new_tokens, batch_size)
            seconds = time.perf_counter() - start
            results[name] = (seconds, answers)
    (base_s, base_answers), (batch_s, batch_answers) = results.values()
    same = sum(a.completion_ids == b.completion_ids for a, b in zip(base_answers, batch_answers))
    print(f"model {args.model or 'tiny (hidden 128, 2 layers)'}; {args.prompts} prompts, <= {args.max_new_tokens} "
          f"new tokens, greedy, {args.threads} torch thread(s)")
    print(f"{'variant':<24}{'seconds':>9}{'answers/s':>11}{'tokens/s':>10}{'speed-up':>10}")
    for name, (seconds, answers) in results.items():
        tokens = sum(len(a.completion_ids) for a in answers)
        print(f"{name:<24}{seconds:>9.1f}{len(answers) / seconds:>11.2f}{tokens / seconds:>10.1f}{base_s / seconds:>9.2f}x")
    print(f"identical answers: {same}/{len(base_answers)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
