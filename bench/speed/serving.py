"""Serving latency and throughput of the registered model behind `mlflow models serve`.

Starts `mlflow models serve -m MODEL --env-manager local` on a free loopback port, then sends
sequential POST /invocations requests, one user per request: history requests (the generator
writes a profile, then the catalogue is ranked) and profile requests (ranking only). Prints p50 /
p95 latency and requests per second for each. The loop is bounded by --requests and --max-seconds.

    .venv/bin/python bench/speed/serving.py --tracking-uri sqlite:///.lpt/mlflow/mlflow.db --requests 20

Figures on a shared CPU are noisy; the history/profile ratio is the steadier number.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lpt_core.serving import local_model_server, post_json
from lpt_core.tracking import default_tracking_uri

PROFILE = "Loves dark psychological thrillers and crime dramas with strong characters; dislikes musicals."


def timed_requests(url: str, payload: dict, count: int, max_seconds: float) -> list[float]:
    """Seconds per request for up to `count` sequential requests, stopping after `max_seconds`."""
    seconds: list[float] = []
    started = time.perf_counter()
    while len(seconds) < count and time.perf_counter() - started < max_seconds:
        begin = time.perf_counter()
        status, body = post_json(url, payload)
        if status != 200:
            raise RuntimeError(f"request failed with HTTP {status}: {body.get('message', body)}")
        seconds.append(time.perf_counter() - begin)
    return seconds


def summary(name: str, seconds: list[float]) -> str:
    p50, p95 = np.percentile(seconds, [50, 95]) * 1000
    return f"{name:<8} n={len(seconds):>3}  p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  {len(seconds) / sum(seconds):7.2f} req/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models:/langptune@champion")
    parser.add_argument("--tracking-uri", default=None, help="default: the work folder's sqlite store")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per kind")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=45, help="time cap per kind")
    parser.add_argument("--history-len", type=int, default=10)
    args = parser.parse_args()
    tracking_uri = args.tracking_uri or default_tracking_uri()

    started = time.perf_counter()
    with local_model_server(args.model, tracking_uri) as base:
        print(f"server up in {time.perf_counter() - started:.1f} s ({args.model})")
        url = f"{base}/invocations"
        # A plausible history: the catalogue items the model itself ranks first for a profile.
        _, answer = post_json(url, {"dataframe_records": [{"profile": PROFILE, "k": args.history_len}]})
        history = answer["predictions"][0]["item_ids"]
        payloads = {
            "history": {"dataframe_records": [{"history_item_ids": history, "k": 10}]},
            "profile": {"dataframe_records": [{"profile": PROFILE, "history_item_ids": history, "k": 10}]},
        }
        results = {}
        for name, payload in payloads.items():
            timed_requests(url, payload, args.warmup, args.max_seconds)
            results[name] = timed_requests(url, payload, args.requests, args.max_seconds)
            print(summary(name, results[name]))
        ratio = np.median(results["history"]) / np.median(results["profile"])
        print(f"history / profile median latency: {ratio:.0f}x (profile generation dominates)")


if __name__ == "__main__":
    main()
