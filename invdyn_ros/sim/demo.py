"""The closed-loop demo's ROS-free half: phase schedule, recording, metrics and summary.

``invdyn_demo`` (``invdyn_ros/cli/invdyn_demo.py``) drives a simulated arm over real ROS 2 topics
and records what happened into a :class:`DemoRecorder`; everything that turns that record into
numbers lives here so it can be tested with generated data whose answer is known.

Time: every time in this module is *motion time* in simulated seconds, ``t = stamp - t0`` where
``t0`` is the stamp of the first joint state the controller acted on (the trajectory's clock).
invdyn_node receives joint states from ``t = 0`` on and learns from every one of them -- the PD
phase is training data too -- so "seconds of simulated learning" at time ``t`` is ``t``.

Phases (:func:`build_schedule`), in this order:

``pd``        PD only (the controller ignores the learned feedforward; the node learns meanwhile);
``learning``  PD + the node's feedforward while it learns (zeros until the node reports ready);
``learned``   PD + the learned feedforward; it starts when the node has learned for
              ``learning_s`` (default 60 s, PD phase included);
``trajectory`` PD + the *trajectory* feedforward: shortly before the phase the demo sends the
              rest of the same reference as a trajectory_msgs/JointTrajectory (points every
              ``TRAJECTORY_POINT_DT_S``, positions, velocities, accelerations) to invdyn_node's
              ``~/trajectory_in``; the node annotates every point's ``effort`` in one batch
              (``invdyn_ros.pipeline.trajectory_feedforward``) and publishes ``~/trajectory_out``,
              which the controller consumes like joint_trajectory_controller with an effort
              interface: the points' efforts, linearly interpolated, are added to its PD
              (``sim.controller.TrajectoryFollower``). Compared with ``learned`` (the per-sample
              topic feedforward) on the same motion: ``trajectory_ff_over_topic_ff``;
``ideal``     PD + the true-model feedforward (RNEA with the simulator's own parameters), the
              ceiling;
``payload``   (only with a payload change) PD + learned feedforward; the payload changes
              ``payload_change_after_s`` into the phase, and the prediction error's jump and
              recovery are measured within this phase (``demo_metrics.payload_change_metrics``:
              the period nMSE's recovery, and ``bench/prior_payload.py``'s rule on the 1 s
              rolling RMS error). It comes after ``ideal`` so that PD, learned and ideal are all
              measured with the same payload.

The generalization part (the last ``unseen_s`` seconds, :func:`default_unseen_s`; none when 0):
at the start of ``learned_unseen`` the controller switches to its *unseen* reference (another
seed, ``unseen_speed`` = 1.5x faster -- velocities and accelerations the primary reference never
reaches -- centred elsewhere: poses it never visits), blending into it continuously over its
``ramp_s`` (``sim.trajectory.SwitchedTrajectory``); the blend and a settling time are left out of
the measure window, which spans whole periods of the *unseen* reference (``period_s /
unseen_speed``). invdyn_node keeps learning all the while, as it would on a robot:

``learned_unseen`` PD + the learned feedforward, from the first moment the model sees the new
              motion (so its measure includes the adaptation over the phase);
``pd_unseen``    PD only on the unseen reference;
``ideal_unseen`` PD + the true-model feedforward on it, the ceiling.

Their tracking RMS are ``tracking_rms_<phase>``; ``learned_over_ideal_unseen`` sits beside
``learned_over_ideal``, the same ratio on the primary reference the node learned on. Because the
node adapts during ``learned_unseen``, its window is also given period by period
(``tracking_rms_learned_unseen_by_period``: the first period is the closest to a score of the
model as it was at the switch, the last one the model after adapting;
``learned_over_ideal_unseen_last_period``), with the seconds the node reported itself not ready
after the switch (``node_not_ready_unseen_s``: its feedforward is zeros then, so the loop runs
on PD alone).

Tracking RMS (:func:`tracking_rms`): per joint ``sqrt(mean((q_d - q)^2))`` (rad) over the phase's
*measure window*: the phase minus a settling window after the switch (and minus the reference's
ramp-in for the first phase), trimmed to a whole number of reference periods ending at the phase's
end when at least one period fits. Whole periods matter: the Fourier reference is periodic, so
the phases are compared on exactly the same motion.

Prediction nMSE (:func:`prediction_nmse`): per joint, the MSE of invdyn_node's
``~/predicted_effort`` (its prediction for the measured state) against the torque the simulator
applied at the same stamp, divided by that torque's variance over the same window (``metrics.nmse``
with the window's own mean and std): 0 is perfect, 1 is as good as predicting the mean. The
prediction is made from filtered states, so the filter's delay is part of the error, as it is on
a real robot. It is measured over the learned phase's measure window.

Feedforward error (``feedforward_error_rms_<phase>``, N m): per control step of a phase with
learned feedforward, the feedforward the controller actually applied (zero when it had none)
minus the true-model feedforward for the same reference: the learned model's error where it
matters, in the loop. ``feedforward_repeated_fraction_<phase>``: the share of the phase's steps
that applied the feedforward of the step before (no newer answer had arrived: it is one period
late or more), ``feedforward_longest_repeat_<phase>``: the longest run of steps on one
feedforward (:func:`~invdyn_ros.sim.demo_metrics.repeated_runs`).

learning_seconds: motion time at which the node became ready: the stamp of the sample that made
it ready, from its first ready ``/diagnostics`` report (``ready_since``; the report's arrival,
up to one diagnostics period later, for a node that does not send it; a non-zero feedforward if
its diagnostics carry no ``ready``). The node learns from the first joint state on, so this is
the simulated learning it needed before its feedforward was switched on. If it never reported
ready, the run's duration (a lower bound) and ``ready: false``.

sim_rate_hz: simulator periods per wall second actually achieved (the simulator slows down rather
than skipping when the machine is too busy; 500 at real time).

Where things are (this module re-exports every name, so ``invdyn_ros.sim.demo`` stays the one
import point): the phases and their windows in :mod:`~invdyn_ros.sim.demo_schedule`, the record of
a run in :mod:`~invdyn_ros.sim.demo_recorder`, the metrics in :mod:`~invdyn_ros.sim.demo_metrics`,
summary.json and its checks in :mod:`~invdyn_ros.sim.demo_summary`, the tables in
:mod:`~invdyn_ros.sim.demo_tables`, the plot in :func:`invdyn_ros.offline.plots.plot_demo_run`.
"""
from __future__ import annotations

from invdyn_ros.sim.demo_metrics import (MIN_TORQUE_STD, not_ready_seconds,  # noqa: F401
                                         payload_change_metrics, prediction_nmse,
                                         reference_distance, rolling_nmse, tracking_rms)
from invdyn_ros.sim.demo_recorder import DemoRecorder, RecordedRun, save_recording  # noqa: F401
from invdyn_ros.sim.demo_schedule import (PHASE_MODES, TRAJECTORY_POINT_DT_S,  # noqa: F401
                                          UNSEEN_PHASES, UNSEEN_WEIGHTS, DemoError, Phase, Schedule,
                                          build_schedule, default_unseen_s)
from invdyn_ros.sim.demo_summary import (SUMMARY_KEYS, UNSEEN_SUMMARY_KEYS,  # noqa: F401
                                         build_summary, plot_run, validate_summary, write_summary)
from invdyn_ros.sim.demo_tables import format_markdown_table, format_table  # noqa: F401

__all__ = ['DemoError', 'Phase', 'Schedule', 'build_schedule', 'default_unseen_s',
           'UNSEEN_PHASES', 'UNSEEN_SUMMARY_KEYS', 'RecordedRun', 'DemoRecorder',
           'tracking_rms', 'prediction_nmse', 'rolling_nmse', 'payload_change_metrics',
           'build_summary', 'validate_summary', 'format_table', 'format_markdown_table',
           'write_summary', 'save_recording', 'plot_run', 'reference_distance',
           'not_ready_seconds', 'SUMMARY_KEYS', 'PHASE_MODES', 'MIN_TORQUE_STD',
           'TRAJECTORY_POINT_DT_S', 'UNSEEN_WEIGHTS']
