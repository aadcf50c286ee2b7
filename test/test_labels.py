"""labels.DelayedEffort: the raw effort filter_delay_s before the newest sample, interpolated.
(Its use by the pipeline: test_pipeline's delayed-label tests.)"""
import numpy as np

from invdyn_ros.stages.labels import DelayedEffort


def test_label_is_the_effort_delay_earlier_interpolated():
    d = DelayedEffort(2)
    rate, delay = 100.0, 0.025                     # 2.5 samples
    for k in range(3):
        d.record(np.array([k, 10.0 * k]), delay, rate)
        assert d.label() is None                   # not enough history yet (whole + 2 = 4)
    d.record(np.array([3.0, 30.0]), delay, rate)
    np.testing.assert_allclose(d.label(), [0.5, 5.0])      # sample 3 - 2.5
    d.record(np.array([4.0, 40.0]), delay, rate)
    np.testing.assert_allclose(d.label(), [1.5, 15.0])


def test_a_sample_without_effort_gives_no_label_while_involved_and_reset_restarts():
    d = DelayedEffort(1)
    for k in range(4):
        d.record(None if k == 1 else np.array([float(k)]), 0.01, 100.0)   # exactly 1 sample
    assert d.label() is None                        # samples 2 and 1 (no effort)
    d.record(np.array([4.0]), 0.01, 100.0)
    np.testing.assert_allclose(d.label(), [3.0])
    d.record(np.array([1.0, 2.0]), 0.01, 100.0)     # a wrong shape: no effort
    np.testing.assert_allclose(d.label(), [4.0])
    d.record(np.array([6.0]), 0.01, 100.0)
    assert d.label() is None                        # the sample a delay ago had none
    d.reset()
    d.record(np.array([6.0]), 0.01, 100.0)
    assert d.label() is None                        # the ring fills again after a reset
    d.record(np.array([7.0]), 0.01, 200.0)          # a new rate: a new ring
    assert d.label() is None
