"""The profile quality report: every profile variant's reader accuracy, faithfulness,
steerability and readability, with user-level intervals, as markdown, JSON and a plot.

Every variant is assessed on the same rows, the same reader candidates and the same bootstrap
resamples, so "variant - zero_shot" differences are paired. Steerability uses each variant's own
recommender (encoder + index), since that is the system a person editing a profile would steer.
Since two variants' steerability then differ by recommender as well as by profiles, the zero-shot
profiles are also steered through every other variant's recommender ("held_recommender"): that
variant's profiles minus the zero-shot ones under the same recommender is what its writer changed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lpt_core import text
from lpt_core.atomic import atomic_path, write_text
from lpt_core.profile_quality import faithfulness, readability, simulated_reader, steerability
from lpt_core.profile_quality.intervals import user_bootstrap
from lpt_core.retrieval import ItemIndex
from lpt_core.sources import data_source

if TYPE_CHECKING:
    import polars as pl

# Report order; the first six also go to the model registry's tags.
SCORES: dict[str, str] = {
    "reader_accuracy": "Simulated-reader accuracy",
    "grounded_share": "Genre grounded share",
    "steerability_add": "Steerability (add genre)",
    "steerability_remove": "Steerability (remove genre)",
    "steerability_dislike": "Steerability (dislike genre)",
    "non_preference_share": "Non-preference text share",
    "steerability_dislike_cut_off": "Steerability (dislike after a cut-off profile)",
    "names_genre": "Share naming a genre",
    "words": "Words",
    "distinct_trigram_ratio": "Distinct trigram ratio",
    "finished_text": "Share finished (ended its turn or ends a sentence)",
    "looping": "Share looping (distinct trigrams < 0.7)",
    "copies_history": "Share copying the history",
    "finished": "Share finished at end of turn",
}
REGISTRY_SCORES = tuple(SCORES)[:6]
STEERABILITY_SCORES = tuple(s for s in SCORES if s.startswith("steerability_"))
PLOTTED = REGISTRY_SCORES
REFERENCE = "zero_shot"


@dataclass
class ProfileVariant:
    """One system's profiles of the assessed rows (row order of the examples), and its recommender."""

    name: str
    profiles: list[str]
    finished: list[bool]
    index: ItemIndex
    encode: steerability.Encode


@dataclass(frozen=True)
class QualitySettings:
    """Reader candidates per row (chance = 1/candidates), edits per profile and kind, seed of both,
    bootstrap settings, the data source (wording of the edits) and profiles per genre sample."""

    candidates: int = 5
    edits_per_user: int = 2
    seed: int = 0
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    source: str = "movielens_100k"
    sample_size: int = 10


@dataclass
class QualityReport:
    numbers: dict  # JSON-able: title, settings, chance, variants, differences, registry_tags
    genre_samples: dict[str, str] = field(default_factory=dict)  # variant -> markdown

    def flat_metrics(self) -> dict[str, float]:
        """{"<variant>.<score>": mean} for trackers, NaN scores left out."""
        return {
            f"{variant}.{score}": interval["mean"]
            for variant, scores in self.numbers["variants"].items()
            for score, interval in scores.items()
            if not np.isnan(interval["mean"])
        }

    def markdown(self) -> str:
        variants = self.numbers["variants"]
        header = "| score | " + " | ".join(variants) + " |"
        lines = [f"# {self.numbers['title']}", "",
                 f"{self.numbers['n_rows']} rows from {self.numbers['n_users']} users; "
                 f"{self.numbers['settings']['confidence']:.0%} bootstrap intervals over users. "
                 f"Simulated reader: {self.numbers['settings']['candidates']} candidates, chance "
                 f"{self.numbers['chance']:.3f}. Steerability: docs/steerability.md.", "",
                 header, "|" + " --- |" * (len(variants) + 1)]
        for score, label in SCORES.items():
            lines.append(f"| {label} | " + " | ".join(_cell(variants[v][score]) for v in variants) + " |")
        if self.numbers.get("held_recommender"):
            lines += ["", "## Steerability with the recommender held fixed", "",
                      f"The {REFERENCE} profiles and each variant's, both steered through that variant's recommender: "
                      "the difference is what training the writer changed.", "",
                      f"| recommender | score | {REFERENCE} profiles | variant's profiles | difference |",
                      "| --- | --- | --- | --- | --- |"]
            for name, scores in self.numbers["held_recommender"].items():
                for score, cells in scores.items():
                    lines.append(f"| {name} | {SCORES[score]} | {_cell(cells[REFERENCE])} | {_cell(cells['variant'])} "
                                 f"| {_cell(cells['difference'])} |")
        if self.numbers["differences"]:
            lines += ["", f"## Paired differences from {REFERENCE}", "",
                      "| difference | " + " | ".join(SCORES[s] for s in PLOTTED) + " |",
                      "|" + " --- |" * (len(PLOTTED) + 1)]
            for name, scores in self.numbers["differences"].items():
                lines.append(f"| {name} | " + " | ".join(_cell(scores[s]) for s in PLOTTED) + " |")
        return "\n".join(lines) + "\n"

    def save(self, folder: Path) -> dict[str, Path]:
        """Write report.md, report.json, quality.png and genre_samples.md into `folder`, atomically."""
        folder = Path(folder)
        paths = {"markdown": folder / "report.md", "json": folder / "report.json",
                 "plot": folder / "quality.png", "samples": folder / "genre_samples.md"}
        with atomic_path(paths["plot"]) as tmp:
            plot_quality(self.numbers).savefig(tmp, format="png", dpi=110)
        write_text(paths["json"], json.dumps(self.numbers, indent=2) + "\n")
        write_text(paths["markdown"], self.markdown())
        samples = [f"## {name}\n\n{sample}" for name, sample in self.genre_samples.items()]
        write_text(paths["samples"], "# Genres named in profiles, marked against the history\n\n" + "\n".join(samples))
        return paths


@dataclass(frozen=True)
class _AssessedRows:
    """What every variant is assessed against: the rows' histories and the reader's questions."""

    user_ids: list[str]
    history_titles: list[list[str]]
    history_genres: list[set[str]]
    candidate_texts: list[list[str]]
    target_positions: list[int]
    genres_of: dict[str, list[str]]  # item id -> categories
    patterns: dict  # genre -> pattern, over the catalogue's genre vocabulary


def assess_profiles(
    variants: Sequence[ProfileVariant],
    examples: pl.DataFrame,
    catalog: pl.DataFrame,
    judge: simulated_reader.CandidateScorer,
    settings: QualitySettings,
    title: str = "Profile quality",
) -> QualityReport:
    """Score every variant's profiles of `examples` (EXAMPLES rows) against `catalog` (item_catalog:
    item_id, title, categories, text); `judge` is the simulated reader."""
    for variant in variants:
        if len(variant.profiles) != examples.height or len(variant.finished) != examples.height:
            raise ValueError(f"variant {variant.name!r}: {len(variant.profiles)} profiles for {examples.height} rows")
    rows = _assessed_rows(examples, catalog, settings)
    per_row, samples = {}, {}
    for variant in variants:
        groundings = [
            faithfulness.ground_genres(p, held, rows.patterns, titles)
            for p, held, titles in zip(variant.profiles, rows.history_genres, rows.history_titles)
        ]
        per_row[variant.name] = {
            "reader_accuracy": simulated_reader.reader_accuracy(
                variant.profiles, rows.candidate_texts, rows.target_positions, judge),
            "grounded_share": np.array([g.grounded_share for g in groundings]),
            **_steerability(variant, rows, settings),
            **_readability(variant, rows, groundings),
        }
        samples[variant.name] = faithfulness.genre_sample_markdown(
            variant.profiles, groundings, rows.user_ids, settings.sample_size)
    numbers = _numbers(per_row, rows.user_ids, settings, title)
    numbers["held_recommender"] = _steerability_held(variants, per_row, rows, settings)
    return QualityReport(numbers=numbers, genre_samples=samples)


def registry_tags(numbers: dict) -> dict[str, dict[str, str]]:
    """Per variant: its key quality numbers as model-registry tags ("lpt.quality.<score>")."""
    return {
        variant: {f"lpt.quality.{s}": f"{scores[s]['mean']:.4f}" for s in REGISTRY_SCORES}
        | {"lpt.quality.reader_chance": f"{numbers['chance']:.4f}"}
        for variant, scores in numbers["variants"].items()
    }


def plot_quality(numbers: dict) -> Figure:
    """One panel per key score, one bar per variant, whiskers = the bootstrap interval; the
    reader panel shows chance as a dashed line."""
    variants = numbers["variants"]
    figure = Figure(figsize=(3.2 * len(PLOTTED), 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(PLOTTED), squeeze=False)[0]
    positions = np.arange(len(variants))
    for axis, score in zip(axes, PLOTTED):
        means = np.array([variants[v][score]["mean"] for v in variants])
        lows = np.array([variants[v][score]["low"] for v in variants])
        highs = np.array([variants[v][score]["high"] for v in variants])
        whiskers = np.nan_to_num(np.clip(np.stack([means - lows, highs - means]), 0.0, None))
        axis.bar(positions, np.nan_to_num(means), yerr=whiskers, capsize=3, color=f"C{PLOTTED.index(score)}")
        axis.set_xticks(positions, list(variants), rotation=45, ha="right", fontsize="small")
        axis.set_title(SCORES[score], fontsize="medium")
        axis.grid(axis="y", alpha=0.3)
        if score == "reader_accuracy":
            axis.axhline(numbers["chance"], color="black", linestyle="--", linewidth=1, label="chance")
            axis.legend(fontsize="small")
    figure.suptitle(numbers["title"])
    return figure


def _assessed_rows(examples: pl.DataFrame, catalog: pl.DataFrame, settings: QualitySettings) -> _AssessedRows:
    item_ids = catalog["item_id"].to_list()
    genres_of = dict(zip(item_ids, [c or [] for c in catalog["categories"].to_list()]))
    text_of = dict(zip(item_ids, catalog["text"].to_list()))
    histories = examples["history_item_ids"].to_list()
    targets = examples["target_item_id"].to_list()
    candidates = simulated_reader.sample_candidates(targets, histories, item_ids, settings.candidates, settings.seed)
    return _AssessedRows(
        user_ids=examples["user_id"].to_list(),
        history_titles=text.history_titles(examples, catalog),
        history_genres=[{g for i in h for g in genres_of.get(i, [])} for h in histories],
        candidate_texts=[[text_of[i] for i in row] for row in candidates],
        target_positions=[row.index(t) for row, t in zip(candidates, targets)],
        genres_of=genres_of,
        patterns=faithfulness.genre_patterns(faithfulness.genre_vocabulary(list(genres_of.values()))),
    )


def _steerability(variant: ProfileVariant, rows: _AssessedRows, settings: QualitySettings) -> dict[str, np.ndarray]:
    noun = data_source(settings.source).item_noun
    edits = steerability.plan_edits(variant.profiles, rows.patterns, settings.edits_per_user, settings.seed, noun)
    held = [set(rows.genres_of.get(item_id, [])) for item_id in variant.index.item_ids.tolist()]
    genre_items = {g: np.array([g in item_genres for item_genres in held]) for g in rows.patterns}
    values = steerability.edit_steerability(variant.index, variant.encode, variant.profiles, edits, genre_items)
    count = len(variant.profiles)
    return {
        f"steerability_{kind}": steerability.row_means(edits, values, count, kind) for kind in steerability.EDIT_KINDS
    }


def _steerability_held(
    variants: Sequence[ProfileVariant], per_row: dict, rows: _AssessedRows, settings: QualitySettings
) -> dict[str, dict[str, dict]]:
    """Per variant other than the reference: per steerability score, the reference's profiles and
    the variant's own under the variant's recommender, and their paired difference. Empty without
    a reference variant."""
    reference = next((v for v in variants if v.name == REFERENCE), None)
    held = {}
    for variant in variants:
        if reference is None or variant.name == REFERENCE:
            continue
        steered = _steerability(dataclasses.replace(reference, index=variant.index, encode=variant.encode), rows, settings)
        held[variant.name] = {}
        for score in STEERABILITY_SCORES:
            column = {REFERENCE: steered[score], "variant": per_row[variant.name][score]}
            means, differences = user_bootstrap(column, rows.user_ids, settings.bootstrap_samples,
                                                settings.confidence, settings.seed, REFERENCE)
            held[variant.name][score] = {
                REFERENCE: means[REFERENCE].as_dict(), "variant": means["variant"].as_dict(),
                "difference": differences[f"variant - {REFERENCE}"].as_dict(),
            }
    return held


def _readability(
    variant: ProfileVariant, rows: _AssessedRows, groundings: Sequence[faithfulness.GenreGrounding]
) -> dict[str, np.ndarray]:
    signals = [readability.readability(p, t) for p, t in zip(variant.profiles, rows.history_titles)]
    return {
        "non_preference_share": np.array([s.non_preference_share for s in signals]),
        "names_genre": np.array([float(bool(g.mentioned)) for g in groundings]),
        "words": np.array([float(s.words) for s in signals]),
        "distinct_trigram_ratio": np.array([s.distinct_trigram_ratio for s in signals]),
        "finished_text": np.array(
            [float(readability.is_finished(p, ended)) for p, ended in zip(variant.profiles, variant.finished)]
        ),
        "looping": np.array([float(s.looping) for s in signals]),
        "copies_history": np.array([float(s.copies_history) for s in signals]),
        "finished": np.array(variant.finished, dtype=np.float64),
    }


def _numbers(per_row: dict, user_ids: list[str], settings: QualitySettings, title: str) -> dict:
    variants, differences = {}, {}
    for score in SCORES:
        column = {name: values[score] for name, values in per_row.items()}
        baseline = REFERENCE if REFERENCE in column else None
        means, diffs = user_bootstrap(column, user_ids, settings.bootstrap_samples, settings.confidence,
                                      settings.seed, baseline)
        for name, interval in means.items():
            variants.setdefault(name, {})[score] = interval.as_dict()
        for name, interval in diffs.items():
            differences.setdefault(name, {})[score] = interval.as_dict()
    numbers = {
        "title": title,
        "settings": asdict(settings),
        "chance": 1.0 / settings.candidates,
        "n_rows": len(user_ids),
        "n_users": len(set(user_ids)),
        "variants": variants,
        "differences": differences,
    }
    numbers["registry_tags"] = registry_tags(numbers)
    return numbers


def _cell(interval: dict) -> str:
    if np.isnan(interval["mean"]):
        return "n/a"
    return f"{interval['mean']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"

