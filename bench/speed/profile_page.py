"""Speed of the profile page on the registry's champion: how long an edit takes to re-rank, and
how long the model takes to write a profile from a history.

Serves the page's app (lpt_core.serving.profile_page) with uvicorn on a free loopback port, as
`lpt profile-page` does, and times POST /api/recommend as the page sends it, one request at a
time, for test-split users of the work folder's pipeline run:
- edits: a free-text edit ("Loves horror movies." appended) and the three quick edits (add a
  genre, remove one the profile names, add a dislike), each with the previous list to compare;
- writes: no profile, so the model writes one from the user's history, then ranks.
The page's target is an edit re-ranked in at most 200 ms on a 2-core CPU. Writes the table to
bench/results/profile_page.md (or --out).

    .venv/bin/python bench/speed/profile_page.py --edits 40 --writes 8
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

from lpt_core import paths, tracking
from lpt_core.serving import free_port, post_json, registry
from lpt_core.serving.profile_page.app import create_app
from lpt_core.serving.profile_page.workbench import PageTables, ProfileWorkbench, load_registered

RESULTS = Path(__file__).resolve().parents[1] / "results" / "profile_page.md"


def start_page(workbench: ProfileWorkbench) -> str:
    """The page's app on a free port in a thread of this process; its base URL once it answers."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: workbench), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, _ = post_json(f"{base}/api/recommend", {"profile": "comedy"}, timeout_s=5)
            if status == 200:
                return base
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the page at {base} did not answer within 60 s")


def edit_requests(workbench: ProfileWorkbench, users: list[str], count: int) -> list[dict]:
    """`count` edit requests, round the users with a stored profile: free text, add a genre,
    remove a genre the profile names, add a dislike."""
    rng = np.random.default_rng(0)
    profiles = {}
    for user in users:
        person = workbench.person(user)
        if person.trained_profile or person.zero_shot_profile:
            profiles[user] = person.trained_profile or person.zero_shot_profile
    if not profiles:
        raise SystemExit("no stored profiles of the offered users: run the pipeline (`make demo`) first")
    requests = []
    for user, profile in itertools.cycle(profiles.items()):
        named = [g for g in workbench.genres if g.lower() in profile.lower()] or workbench.genres
        requests += [
            {"user_id": user, "profile": f"{profile} Loves horror movies."},
            {"user_id": user, "profile": profile, "edit": {"kind": "add_genre", "genre": str(rng.choice(workbench.genres))}},
            {"user_id": user, "profile": profile, "edit": {"kind": "remove_genre", "genre": str(rng.choice(named))}},
            {"user_id": user, "profile": profile, "edit": {"kind": "add_dislike", "genre": str(rng.choice(workbench.genres))}},
        ]
        if len(requests) >= count:
            return requests[:count]


def timed(url: str, bodies: list[dict], previous: list[str] | None = None) -> tuple[list[float], int]:
    """Seconds per request (as the page waits for it) and how many the model refused."""
    seconds, refused = [], 0
    for body in bodies:
        started = time.perf_counter()
        status, answer = post_json(url, {**body, "previous_item_ids": previous})
        seconds.append(time.perf_counter() - started)
        if status != 200:
            refused += 1
        else:
            previous = [entry["item"]["item_id"] for entry in answer["items"]]
    return seconds, refused


def row(name: str, seconds: list[float], refused: int) -> str:
    p50, p95 = np.percentile(seconds, [50, 95]) * 1000
    return f"| {name} | {len(seconds)} | {p50:.0f} | {p95:.0f} | {max(seconds) * 1000:.0f} | {refused} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracking-uri", default=None, help="default: the work folder's sqlite store")
    parser.add_argument("--alias", default=registry.CHAMPION)
    parser.add_argument("--version", default=None)
    parser.add_argument("--edits", type=int, default=40)
    parser.add_argument("--writes", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a paragraph appended to the results (what the model is, ...)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    served = load_registered(tracking.resolve_tracking_uri(args.tracking_uri), alias=args.alias, version=args.version)
    workbench = ProfileWorkbench(served, PageTables.load(paths.Outputs.default(), served.variant))
    loaded_s = time.perf_counter() - started
    base = start_page(workbench)
    url = f"{base}/api/recommend"
    users = workbench.offered_users()
    edits = edit_requests(workbench, users, args.edits)
    timed(url, edits[:4])  # warm-up
    edit_seconds, edit_refused = timed(url, edits)
    write_seconds, write_refused = timed(url, [{"user_id": u, "profile": None} for u in users[: args.writes]])

    lines = [
        "# Profile page speed",
        "",
        f"Command: `python bench/speed/profile_page.py --edits {args.edits} --writes {args.writes}` on {served.description} "
        f"({served.uri}, variant {served.variant}); {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"{time.strftime('%Y-%m-%d')}. Model and tables loaded in {loaded_s:.1f} s. Load average (1 min) "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after: other processes shared the CPUs.",
        "Each figure is one POST /api/recommend as the page sends it (HTTP over loopback, JSON, the served model's "
        "predict, the comparison with the previous list), one request at a time.",
        "",
        "| request | n | p50 ms | p95 ms | max ms | refused |",
        "|---|---|---|---|---|---|",
        row("edit -> re-rank (free text and quick edits)", edit_seconds, edit_refused),
        row("write a profile from the history, then rank", write_seconds, write_refused),
        "",
        "Target: an edit re-ranks in at most 200 ms on a 2-core CPU. Refused: the model's own refusal "
        "(e.g. a removal that leaves no profile), timed as the page sees it.",
        *(["", args.note] if args.note else []),
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.write_text(table, encoding="utf-8")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
