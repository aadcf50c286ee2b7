"""outputs.py: the pipeline's result types are frozen, and a batch row converts to the Output the
streaming chain would give."""
import dataclasses

import numpy as np
import pytest

from invdyn_ros.stages.outputs import BatchOutput, Output, Published


def _batch(n=3, N=2):
    f = np.arange(N * n, dtype=float).reshape(N, n)
    return BatchOutput(valid=np.array([True, False]), stamp=np.array([1.0, 2.0]), q=f, qd=f + 1,
                       qdd=f + 2, tau=f + 3, has_tau=np.array([False, True]), torque=f + 4,
                       predictions={'lstm': f + 5, 'gru': np.full((N, n), np.nan)},
                       active=np.zeros((N, n), dtype=np.int64), std_a=f, std_b=f,
                       uncertainty=f, ready=np.array([True, False]),
                       recent_nmse=np.array([0.5, 0.25]))


def test_a_batch_row_is_the_output_of_that_sample():
    b = _batch()
    assert len(b) == 2 and b.output(1) is None
    o = b.output(0)
    assert isinstance(o, Output) and isinstance(o, Published)
    np.testing.assert_array_equal(o.torque, [4.0, 5.0, 6.0])
    assert o.tau is None                              # row 0 had no effort
    assert o.predictions['gru'] is None               # a network without output
    np.testing.assert_array_equal(o.predictions['lstm'], [5.0, 6.0, 7.0])
    assert o.ready is True and o.recent_nmse == 0.5
    o.torque[0] = 99.0                                # a copy: the batch is not changed
    assert b.torque[0, 0] == 4.0
    assert b.outputs()[1] is None


def test_results_are_frozen():
    o = _batch().output(0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.ready = False
