"""Time full-catalogue evaluation: target ranks + top-20 for every user, faiss flat vs plain numpy.

The project path (ItemIndex) computes exact ranks from chunked score matrices and top-20 lists with
a faiss IndexFlatIP search. The numpy path computes both from ONE chunked matmul per user chunk
(argpartition for the top-20). Synthetic 384-d unit vectors (all-MiniLM-L6-v2's width), 4 history
items per user. Figures are wall-clock seconds, best of --repeats; the CPU is shared, so noisy.

    .venv/bin/python bench/speed/retrieval.py            # 1,682 items x 200 users, 100,000 x 2,000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import faiss
import numpy as np

from lpt_core.retrieval import ItemIndex, chunk_rows, rank_targets

TOP_K = 20
HISTORY = 4


def best_time(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def numpy_fused(
    queries: np.ndarray, vectors: np.ndarray, targets: np.ndarray, exclude: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks and top-K from the same chunked score matrix; history pushed to -inf for top-K."""
    ranks = np.empty(len(queries))
    top = np.empty((len(queries), TOP_K), dtype=np.int64)
    step = chunk_rows(len(vectors))
    for start in range(0, len(queries), step):
        rows = slice(start, start + step)
        scores = queries[rows] @ vectors.T
        ranks[rows] = rank_targets(scores, targets[rows], exclude[rows])
        for row, excluded in enumerate(exclude[rows]):
            scores[row, excluded] = -np.inf
        best = np.argpartition(-scores, TOP_K, axis=1)[:, :TOP_K]
        order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1)
        top[rows] = np.take_along_axis(best, order, axis=1)
    return ranks, top


def bench(n_items: int, n_users: int, dim: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    ids = [f"i{j}" for j in range(n_items)]
    queries = rng.normal(size=(n_users, dim)).astype(np.float32)
    faiss.normalize_L2(queries)
    histories = [rng.choice(n_items, HISTORY + 1, replace=False) for _ in range(n_users)]
    targets = np.array([h[0] for h in histories])
    exclude = [h[1:] for h in histories]
    target_ids = [ids[t] for t in targets]
    exclude_ids = [[ids[p] for p in row] for row in exclude]

    build_s, index = best_time(lambda: ItemIndex.build(ids, vectors), 1)
    ranks_s, ranks = best_time(lambda: index.target_ranks(queries, target_ids, exclude_ids), repeats)
    topk_s, (top_ids, _) = best_time(lambda: index.top_k(queries, TOP_K, exclude_ids), repeats)
    numpy_s, (np_ranks, np_top) = best_time(
        lambda: numpy_fused(queries, index.vectors, targets, exclude), repeats
    )
    search_only_s, _ = best_time(lambda: index.index.search(queries, TOP_K + HISTORY), repeats)

    assert np.array_equal(ranks, np_ranks), "the two paths disagree on ranks"
    agree = np.mean([set(a) == set(index.item_ids[b]) for a, b in zip(top_ids.tolist(), np_top)])
    project_s = ranks_s + topk_s
    print(f"\n{n_items:,} items x {n_users:,} users, {dim}-d (faiss threads: {faiss.omp_get_max_threads()})")
    print(f"  build IndexFlatIP                       {build_s:8.3f} s")
    print(f"  ItemIndex.target_ranks (chunked matmul) {ranks_s:8.3f} s")
    print(f"  ItemIndex.top_k (faiss search+filter)   {topk_s:8.3f} s   (raw faiss search {search_only_s:.3f} s)")
    print(f"  project path: ranks + top-{TOP_K}           {project_s:8.3f} s")
    print(f"  numpy fused: one matmul, ranks + top-{TOP_K} {numpy_s:8.3f} s")
    print(f"  ratio project / numpy fused             {project_s / numpy_s:8.2f} x")
    print(f"  ratio faiss top-{TOP_K} / numpy fused        {topk_s / numpy_s:8.2f} x")
    print(f"  per user, project path                  {1e3 * project_s / n_users:8.3f} ms")
    print(f"  top-{TOP_K} lists identical in both paths:   {agree:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--sizes", default="1682x200,100000x2000", help="comma-separated ITEMSxUSERS pairs"
    )
    args = parser.parse_args()
    for size in args.sizes.split(","):
        n_items, n_users = (int(part) for part in size.split("x"))
        bench(n_items, n_users, args.dim, args.repeats)


if __name__ == "__main__":
    main()
