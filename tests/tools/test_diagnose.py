"""ltkd_jax.tools.diagnose: its measurements against sums computed here, and its errors as one line."""
import json

import numpy as np
import pytest

from ltkd_jax.tools import diagnose
from ltkd_jax.train import checkpoint


def test_batch_group_sums_are_the_groups_probability_mass():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(6), size=40)
    group_ids = np.array([0, 0, 1, 1, 2, 2])
    sums = diagnose.batch_group_sums(probs, group_ids, batch_size=8, seed=3)
    assert sums.shape == (5, 3)
    order = np.random.default_rng(3).permutation(40)
    first = probs[order[:8]]
    np.testing.assert_allclose(sums[0], [first[:, :2].sum(), first[:, 2:4].sum(), first[:, 4:].sum()])
    np.testing.assert_allclose(sums.sum(1), 8.0)  # every row of probabilities adds 1


def test_calibration_of_a_known_predictor():
    # Class 0 (head): always right at confidence 0.9; class 1 (medium): right at 0.5, then wrong at 0.7 (two
    # bins: ECE = 0.5 * |1 - 0.5| + 0.5 * |0 - 0.7|); class 2 (tail): always wrong at confidence 0.6.
    probs = np.array([[0.9, 0.05, 0.05]] * 4 + [[0.25, 0.5, 0.25]] * 2 + [[0.7, 0.2, 0.1]] * 2
                     + [[0.6, 0.3, 0.1]] * 4)
    labels = np.array([0] * 4 + [1] * 4 + [2] * 4)
    rows = diagnose.calibration(probs, labels, np.array([0, 1, 2]), np.array([200, 50, 10]))
    assert list(rows) == ["head", "medium", "tail"]
    assert rows["head"] == pytest.approx({"accuracy": 100.0, "confidence": 90.0, "ece": 10.0})
    assert rows["medium"] == pytest.approx({"accuracy": 50.0, "confidence": 60.0, "ece": 60.0})
    assert rows["tail"] == pytest.approx({"accuracy": 0.0, "confidence": 60.0, "ece": 60.0})


def test_test_records_hold_the_same_calibration_and_the_prediction_shares():
    """The evaluation's summary of the same predictor (train.prediction_counts + summarize): ECE overall, 10 of 12
    predictions on the head class against a third of the labels."""
    from ltkd_jax import train  # pylint: disable=import-outside-toplevel
    probs = np.array([[0.9, 0.05, 0.05]] * 4 + [[0.25, 0.5, 0.25]] * 2 + [[0.7, 0.2, 0.1]] * 2
                     + [[0.6, 0.3, 0.1]] * 4)
    labels = np.array([0] * 4 + [1] * 4 + [2] * 4)
    mask = np.ones(14, bool)
    mask[12:] = False  # two padding rows of the last batch count nowhere
    counts = train.prediction_counts(np.concatenate([probs, probs[:2]]), np.concatenate([labels, [2, 2]]), mask, 3)
    summary = train.summarize({**counts, "loss_sum": 0.0}, np.array([0, 1, 2]), np.array([100, 50, 10]))
    assert summary["ece"] == pytest.approx(100 * (4 * 0.1 + 2 * 0.5 + 2 * 0.7 + 4 * 0.6) / 12, abs=1e-4)
    assert summary["confidence"] == pytest.approx(100 * (4 * 0.9 + 2 * 0.5 + 2 * 0.7 + 4 * 0.6) / 12, abs=1e-4)
    assert (summary["ece_head"], summary["ece_medium"], summary["ece_tail"]) == pytest.approx((10, 60, 60), abs=1e-4)
    assert [summary[f"prediction_share_{g}"] for g in train.GROUP_NAMES] == pytest.approx([100 * 10 / 12,
                                                                                          100 * 2 / 12, 0])
    assert [summary[f"label_share_{g}"] for g in train.GROUP_NAMES] == pytest.approx([100 / 3] * 3)
    # A bin pools its classes: head classes 0 (right at 0.9) and 1 (wrong at 0.9) share bin 13, so the head's ECE
    # is |2 - 3.6| / 4 = 40%, not the mean of the classes' own gaps (50%).
    probs = np.array([[0.9, 0.05, 0.03, 0.02]] * 4 + [[0.02, 0.03, 0.6, 0.35]] * 2)
    counts = train.prediction_counts(probs, np.array([0, 0, 1, 1, 2, 2]), np.ones(6, bool), 4)
    calibration = train.calibration(counts, np.array([0, 0, 1, 1]))
    assert (calibration["ece_group0"], calibration["ece_group1"], calibration["ece"]) == pytest.approx(
        (40.0, 40.0, 40.0), abs=1e-4)


def test_errors_are_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    assert diagnose.main([f"--teacher={tmp_path / 'nowhere'}"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: --teacher='{tmp_path / 'nowhere'}' is not a run directory (no config.json)\n"
    (tmp_path / "config.json").write_text(json.dumps({"method": "teacher"}))

    def corrupted(*args, **kwargs):
        raise checkpoint.CheckpointError(f"teacher checkpoint {tmp_path} cannot be read: truncated\nstack detail")

    monkeypatch.setattr(diagnose, "diagnose", corrupted)
    assert diagnose.main([f"--teacher={tmp_path}"]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: teacher checkpoint {tmp_path} cannot be read: truncated\n" and not captured.out
