"""FeedforwardGate: every branch of the rule, with explicit times (no sleeping, no ROS)."""
import math

import pytest

from invdyn_ros.ros.feedforward_gate import (MEASURED, MEASURED_PRIOR, NOTHING, REFERENCE,
                                             REFERENCE_PRIOR, ZEROS, ZEROS_STALE, FeedforwardGate)

T = 0.5    # stale_timeout_s


def active_gate() -> FeedforwardGate:
    gate = FeedforwardGate(T)
    gate.set_active(True)
    return gate


def test_starts_inactive_and_stale_and_checks_its_timeout():
    gate = FeedforwardGate(T)
    assert not gate.active and gate.stale
    assert gate.last_measured == gate.last_reference == -math.inf
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            FeedforwardGate(bad)


def test_measured_without_reference_publishes_measured_when_ready_else_zeros():
    gate = active_gate()
    assert gate.on_measured(10.0, ready=False) is ZEROS
    assert not gate.stale and gate.last_measured == 10.0
    assert gate.on_measured(10.1, ready=True) is MEASURED
    assert MEASURED.counter == 'feedforward_measured' and ZEROS.counter == 'feedforward_zero'


def test_a_fresh_reference_owns_the_topic_until_it_is_stale_timeout_old():
    gate = active_gate()
    gate.on_measured(10.0, ready=True)
    assert gate.on_reference(10.1, ready=True) is REFERENCE
    assert REFERENCE.counter == 'feedforward_reference'
    assert gate.on_measured(10.2, ready=True) is NOTHING          # the reference is fresh
    assert gate.on_measured(10.1 + T - 1e-9, ready=True) is NOTHING
    assert gate.on_measured(10.1 + T, ready=True) is MEASURED     # exactly stale_timeout_s: stale
    assert gate.on_measured(10.1 + T, ready=False) is ZEROS


def test_reference_needs_ready_and_a_fresh_measured_input():
    gate = active_gate()
    assert gate.on_reference(1.0, ready=True) is ZEROS            # never measured
    assert gate.last_reference == 1.0                              # it still counts as fresh
    gate.on_measured(2.0, ready=True)
    assert gate.on_reference(2.1, ready=False) is ZEROS           # not ready
    assert gate.on_reference(2.0 + T - 1e-9, ready=True) is REFERENCE
    assert gate.on_reference(2.0 + T, ready=True) is ZEROS        # measured input stale


def test_the_prior_alone_only_while_the_learned_prediction_is_not_ready_and_it_is():
    gate = active_gate()
    assert gate.on_measured(1.0, ready=False, fallback=True) is MEASURED_PRIOR
    assert gate.on_measured(1.1, ready=True, fallback=True) is MEASURED       # learned wins
    assert gate.on_measured(1.2, ready=False, fallback=False) is ZEROS
    assert MEASURED_PRIOR.prior and MEASURED_PRIOR.publish == 'measured'
    assert MEASURED_PRIOR.counter == REFERENCE_PRIOR.counter == 'feedforward_prior'
    assert not MEASURED.prior and not REFERENCE.prior and not ZEROS.prior
    assert gate.on_reference(1.3, ready=False, fallback=True) is REFERENCE_PRIOR
    assert REFERENCE_PRIOR.prior and REFERENCE_PRIOR.publish == 'reference'
    assert gate.on_reference(1.35, ready=True, fallback=True) is REFERENCE
    assert gate.on_reference(1.4, ready=False, fallback=False) is ZEROS
    assert gate.on_measured(1.45, ready=False, fallback=True) is NOTHING     # reference is fresh
    # the same staleness and lifecycle rules as the learned feedforward
    assert gate.on_reference(1.45 + T, ready=False, fallback=True) is ZEROS  # measured stale
    gate.set_active(False)
    assert gate.on_measured(5.0, ready=False, fallback=True) is ZEROS
    gate.on_measured(5.1, ready=True)
    assert gate.on_reference(5.2, ready=False, fallback=True) is ZEROS


def test_unpredicted_sample_zeros_only_while_not_ready_and_no_fresh_reference():
    gate = active_gate()
    assert gate.on_unpredicted(5.0, ready=False) is ZEROS
    assert gate.stale and gate.last_measured == -math.inf          # no output: not fresh
    assert gate.on_unpredicted(5.0, ready=True) is NOTHING
    gate.on_reference(5.1, ready=False)
    assert gate.on_unpredicted(5.2, ready=False) is NOTHING       # the reference's topic
    assert gate.on_unpredicted(5.1 + T, ready=False) is ZEROS


def test_watchdog_zeros_every_tick_once_stale_and_reports_the_event_once():
    gate = active_gate()
    assert gate.on_tick(0.0) is ZEROS                # never measured: stale from the start
    gate.on_measured(1.0, ready=True)
    assert gate.on_tick(1.0 + T - 1e-9) is NOTHING
    assert not gate.stale
    first = gate.on_tick(1.0 + T)
    assert first is ZEROS_STALE and first.became_stale and first.counter == 'feedforward_zero'
    assert gate.stale
    assert gate.on_tick(1.0 + T + 0.05) is ZEROS and not ZEROS.became_stale
    assert gate.on_tick(100.0) is ZEROS
    gate.on_measured(101.0, ready=False)             # fresh again: a later stale is a new event
    assert gate.on_tick(101.0 + T) is ZEROS_STALE


def test_inactive_turns_every_publication_into_zeros_and_nothing_stays_nothing():
    gate = FeedforwardGate(T)                        # inactive
    assert gate.on_measured(1.0, ready=True) is ZEROS
    assert gate.on_reference(1.1, ready=True) is ZEROS
    assert gate.on_measured(1.2, ready=True) is NOTHING           # fresh reference: still nothing
    assert gate.set_active(True) is NOTHING and gate.active
    assert gate.on_reference(1.3, ready=True) is REFERENCE
    assert gate.on_measured(1.3 + T, ready=True) is MEASURED
    assert gate.set_active(False) is ZEROS and not gate.active     # deactivate: zeros at once
    assert gate.on_measured(1.4 + T, ready=True) is ZEROS
    assert gate.on_tick(1.4 + 2 * T) is ZEROS_STALE                # the watchdog goes on


def test_decisions_name_what_to_publish():
    assert NOTHING.publish is None and NOTHING.counter is None
    assert {d.publish for d in (ZEROS, ZEROS_STALE)} == {'zeros'}
    assert MEASURED.publish == 'measured' and REFERENCE.publish == 'reference'
