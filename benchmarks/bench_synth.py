"""Throughput of thresher's synthesis client against a server with fixed latency.

The server is tests/fake_openai.py in its own process, answering every Chat
Completions request after exactly ``--latency`` seconds (200 ms by default).
With ``c`` requests in flight the ideal throughput is ``c / latency``; the
ratio to it shows what the client itself costs (HTTP, JSON, validation,
writing the append-only output, progress). The client's CPU time per request
is printed too: at high concurrency the client is CPU-bound, and on a shared
machine that column explains a low ratio better than the wall clock does. Each request goes through the
full path of ``thresher synth answers``: ``run_jobs`` -> ``LLMClient.complete``
-> output line, flushed.

    python benchmarks/bench_synth.py                     # 1000 requests at 16 and 64, 50 at 1
    python benchmarks/bench_synth.py --requests-at-1 1000  # the full run (about 200 s at c=1)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from thresher.curate.synth.client import ClientConfig, LLMClient
from thresher.curate.synth.wire import Request
from thresher.curate.synth.jobs import Job, run_jobs

ROOT = Path(__file__).resolve().parents[1]


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/v1"


def make_job(client: LLMClient, index: int) -> Job:
    request = Request.chat([("user", f"benchmark question {index}")], temperature=0.0, max_tokens=64)

    async def run(client: LLMClient) -> list[dict]:
        reply = await client.complete(request)
        return [{"question": f"benchmark question {index}", "answer": reply.value}]

    return Job(client.key(request), {"record": index}, run)


async def measure(url: str, concurrency: int, requests: int, workdir: Path) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) to run ``requests`` jobs at ``concurrency`` into a fresh output."""
    config = ClientConfig(base_url=url, api_key="bench", model="bench", concurrency=concurrency)
    run_dir = Path(tempfile.mkdtemp(dir=workdir))  # a fresh output: a rerun would resume and skip everything
    output = run_dir / "out.jsonl"
    async with LLMClient(config) as client:
        jobs = [make_job(client, i) for i in range(requests)]
        start, cpu = time.perf_counter(), time.process_time()
        summary = await run_jobs("bench", jobs, client, output, run_dir / "out.rejects.jsonl",
                                 console=Console(file=io.StringIO()))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert summary.succeeded == requests, summary
    assert sum(1 for _ in output.open()) == requests
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests at concurrency 16 and 64 (default 1000)")
    parser.add_argument("--requests-at-1", type=int, default=50, help="requests at concurrency 1 (default 50; 1000 takes ~200 s)")
    parser.add_argument("--latency", type=float, default=0.2, help="server latency in seconds (default 0.2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    process, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"server latency {args.latency * 1000:.0f} ms; ideal throughput = concurrency / latency")
            print(f"{'concurrency':>11} {'requests':>9} {'seconds':>8} {'req/s':>8} {'ideal':>8} {'ratio':>6} {'client CPU ms/req':>18}")
            for concurrency in args.concurrency:
                count = args.requests_at_1 if concurrency == 1 else args.requests
                seconds, cpu = asyncio.run(measure(url, concurrency, count, Path(tmp)))
                throughput = count / seconds
                ideal = concurrency / args.latency
                print(f"{concurrency:>11} {count:>9} {seconds:>8.2f} {throughput:>8.1f} {ideal:>8.1f} "
                      f"{throughput / ideal:>6.1%} {cpu / count * 1000:>18.2f}", flush=True)
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
