import numpy as np
import pytest

from models.evaluate import event_level, labels_from, pointwise, runs


def test_runs():
    assert runs(np.array([0, 1, 1, 0, 1])) == [(1, 2), (4, 4)]
    assert runs(np.zeros(3)) == []


def test_pointwise_counts_and_rates():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)
    a = np.array([1, 0, 0, 0, 0, 1, 1, 1], bool)
    m = pointwise(a, y)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 1, 3)
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx(0.75)
    assert m["false_alarm_rate"] == pytest.approx(0.25) and m["missed_alarm_rate"] == pytest.approx(0.25)


def test_flagging_everything_shows_in_the_false_alarm_rate():
    y = np.array([0] + [1] * 9, bool)
    m = pointwise(np.ones(10, bool), y)
    assert m["f1"] > 0.9 and m["false_alarm_rate"] == 1.0


def test_event_detection_and_delay():
    y = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 0], bool)
    a = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 0], bool)
    t = np.arange(10) * 2_000_000_000
    e = event_level(a, y, t)
    assert e["events"] == 2 and e["detected"] == 1 and e["detection_rate"] == 0.5
    assert e["mean_delay_rows"] == 2 and e["mean_delay_secs"] == 4.0
    assert e["false_alarm_events"] == 1


def test_labels_from_text_and_numbers():
    np.testing.assert_array_equal(labels_from(np.array(["worn", "unworn"])), [True, False])
    np.testing.assert_array_equal(labels_from(np.array(["a", "B"]), positive="b"), [False, True])
    np.testing.assert_array_equal(labels_from(np.array([0.0, 2.0, np.nan])), [False, True, False])
