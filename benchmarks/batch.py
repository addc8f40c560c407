"""Batch synthesis against the stub batch server, next to the same run sent interactively.

The stub (``tests/batch_server.py``) answers by request content and completes each batch
``--turnaround`` seconds after it was created (a provider takes minutes to hours). Each
record takes 4 to 10 model calls.

Figures printed, for the interactive run and the batch run over the same records:

* model requests per record (the stub's count: chat calls, or requests in batches): the
  batch run must make as many as the interactive one;
* rounds and batches, and wall time (about rounds x turnaround for the batch run);
* tokens, and the cost at ``--price-in`` / ``--price-out`` per million tokens: interactive,
  and at batch prices (``--discount``), with their ratio (at most 0.55 of interactive);
* whether both runs wrote the same lines.

Example:
    python benchmarks/batch.py --records 200 --turnaround 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_openai import ChatOpenAI  # noqa: E402

from spri_graph.synthesis import synthesize  # noqa: E402
from spri_graph.synthesis.batch import BatchSettings  # noqa: E402
from tests.batch_server import BatchServer  # noqa: E402


def lines(path: Path) -> dict[str, Any]:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--turnaround", type=float, default=0.5, help="seconds per batch")
    parser.add_argument("--price-in", type=float, default=0.15, help="USD per 1M input tokens")
    parser.add_argument("--price-out", type=float, default=0.60, help="USD per 1M output tokens")
    parser.add_argument("--discount", type=float, default=0.5)
    args = parser.parse_args()

    records = [{"id": i, "instruction": f"question {i}"} for i in range(1, args.records + 1)]
    settings = BatchSettings(
        poll_interval=min(1.0, args.turnaround / 5),
        price_in=args.price_in,
        price_out=args.price_out,
        discount=args.discount,
    )
    work = Path(tempfile.mkdtemp(prefix="spri-batch-bench-"))
    with BatchServer(turnaround=args.turnaround) as server:
        model = ChatOpenAI(model="stub-model", base_url=server.url, api_key="bench")
        start = time.perf_counter()
        interactive = synthesize(records, model=model, output=work / "interactive.jsonl")
        interactive_time = time.perf_counter() - start
        interactive_requests = server.chat_calls

        start = time.perf_counter()
        batched = synthesize(
            records,
            model=model,
            output=work / "batch.jsonl",
            batch=settings,
            concurrency=len(records),
        )
        batch_time = time.perf_counter() - start
        batch_requests = sum(server.submitted.values())

    report = batched.batch
    assert report is not None
    tokens_in, tokens_out = interactive.input_tokens, interactive.output_tokens
    interactive_cost = (tokens_in * args.price_in + tokens_out * args.price_out) / 1e6
    same = lines(work / "interactive.jsonl") == lines(work / "batch.jsonl")
    ratio = report.cost / interactive_cost if interactive_cost else float("nan")
    n = len(records)
    print(f"records: {n}; batch turnaround {args.turnaround:.2f}s")
    print(
        f"interactive: {interactive_requests / n:.2f} requests/record, "
        f"{interactive_time:.1f}s, tokens {tokens_in} in / {tokens_out} out, "
        f"cost ${interactive_cost:.6f}"
    )
    print(
        f"batch:       {batch_requests / n:.2f} requests/record, {batch_time:.1f}s, "
        f"{report.rounds} rounds, {len(report.batch_ids)} batches, tokens "
        f"{report.input_tokens} in / {report.output_tokens} out, cost ${report.cost:.6f} "
        f"(interactive prices: ${report.interactive_cost:.6f})"
    )
    print(f"batch cost / interactive cost: {ratio:.3f}")
    print(f"same requests per record: {batch_requests == interactive_requests}")
    print(f"same lines: {same}")


if __name__ == "__main__":
    main()
