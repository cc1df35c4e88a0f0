"""Training curves: the moving average and the figure built from logged metric series."""

import numpy as np
import pytest

from lpt_core.training.curves import moving_average, plot_training_curves, save_training_curves


def test_moving_average_is_trailing_and_starts_with_what_exists():
    np.testing.assert_allclose(moving_average([1, 2, 3, 4, 5], 2), [1, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(moving_average([4.0], 10), [4.0])
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0], 0)


def test_one_panel_per_logged_metric_one_line_pair_per_variant(tmp_path):
    histories = {
        "langptune_rebel": {"encoder.reward_mean": [(1, 0.1), (2, 0.2), (3, 0.15)], "decoder.loss": [(1, 3.0), (2, 2.5)]},
        "cl_only": {"decoder.loss": [(1, 3.1), (2, 2.0)]},
    }
    figure = plot_training_curves(histories, window=2)
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in visible] == ["RL reward (mean over the rollout)", "contrastive loss (InfoNCE)"]
    # raw + smoothed line per variant that logged the metric
    assert [len(axis.get_lines()) for axis in visible] == [2, 4]
    # cl_only has no RL curve but still gets its legend entry
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["langptune_rebel", "cl_only"]
    path = save_training_curves(histories, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_logged_is_an_error():
    with pytest.raises(ValueError, match="no training curves"):
        plot_training_curves({"cl_only": {"encoder.loss": []}})


def test_reference_series_are_drawn_dashed_in_their_panel():
    histories = {"langptune_rebel": {
        "encoder.probe_reward": [(0, 0.12), (4, 0.14)], "encoder.probe_reward_start": [(0, 0.11)],
        "encoder.loss_after": [(0, 0.3), (1, 0.2)], "encoder.loss_before": [(0, 2.0), (1, 1.5)],
    }}
    figure = plot_training_curves(histories, window=2)
    probe, loss = [axis for axis in figure.axes if axis.get_visible()]
    assert probe.get_title().startswith("RL probe") and "before RL" in probe.get_title()
    assert len(probe.collections) == 1  # the single value before RL: a dashed level
    assert [line.get_linestyle() for line in loss.get_lines()] == ["-", "-", "--"]
