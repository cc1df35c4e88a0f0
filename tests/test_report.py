"""The evaluation report: three files written, numbers equal to the metrics module's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lpt_core.metrics import summarise
from lpt_core.report import build_report, plot_metrics

KS = [5, 10, 20]


def method_ranks() -> tuple[dict[str, np.ndarray], list[str]]:
    rng = np.random.default_rng(0)
    users = [f"u{i // 2}" for i in range(200)]  # two windows per user
    ranks = {
        "profile": rng.geometric(0.08, size=200).astype(np.float64),
        "popularity": rng.geometric(0.03, size=200).astype(np.float64),
        "random": rng.integers(1, 1000, size=200).astype(np.float64),
    }
    return ranks, users


def test_report_writes_three_files_whose_numbers_match_summarise(tmp_path):
    ranks, users = method_ranks()
    report = build_report(ranks, users, KS, samples=200, confidence=0.9, seed=1, title="Test split")
    paths = report.save(tmp_path / "report")
    assert {p.name for p in paths.values()} == {"report.md", "report.json", "metrics.png"}
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "metrics.png", "report.json", "report.md"
    ]  # and no temporary file left behind

    numbers = json.loads(paths["json"].read_text())
    assert (numbers["n_users"], numbers["n_examples"]) == (100, 200)
    for name, method in ranks.items():
        for key, mean in summarise(method, KS).items():
            cell = numbers["methods"][name][key]
            assert cell["mean"] == pytest.approx(mean)
            assert cell["low"] <= cell["mean"] <= cell["high"]
    assert set(numbers["differences"]) == {"popularity - profile", "random - profile"}
    gap = numbers["differences"]["random - profile"]["ndcg@10"]
    assert gap["mean"] == pytest.approx(
        summarise(ranks["random"], KS)["ndcg@10"] - summarise(ranks["profile"], KS)["ndcg@10"]
    )

    markdown = paths["markdown"].read_text()
    assert markdown.startswith("# Test split")
    assert "| method | Recall@5 | NDCG@5 | MRR@5 |" in markdown
    best_ndcg = numbers["methods"]["profile"]["ndcg@10"]["mean"]
    assert f"**{best_ndcg:.4f}**" in markdown
    assert "![metrics](metrics.png)" in markdown
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_has_a_panel_per_metric_family_and_a_bar_per_method_and_k():
    ranks, users = method_ranks()
    figure = plot_metrics(build_report(ranks, users, KS, samples=50, confidence=0.95, seed=0).numbers)
    ndcg_axis, recall_axis = figure.axes
    assert [t.get_text() for t in ndcg_axis.get_xticklabels()] == ["NDCG@5", "NDCG@10", "NDCG@20"]
    assert len(recall_axis.patches) == len(ranks) * len(KS)
    assert [t.get_text() for t in figure.legends[0].get_texts()] == list(ranks)


def test_report_needs_its_baseline_among_the_methods():
    ranks, users = method_ranks()
    del ranks["profile"]
    with pytest.raises(ValueError, match="baseline 'profile'"):
        build_report(ranks, users, KS, samples=10, confidence=0.95, seed=0)
