"""invdyn_ros: online (lifelong) learning of robot inverse dynamics for ROS 2.

The package's folders are its layers; a module imports only from its own folder and the ones
listed before it (``test/test_layers.py`` holds the code to it):

- the top level: ``errors``, ``atomic``, ``metrics``, ``stopflag`` -- words every layer uses;
- ``stages/``: the per-sample stages, pure numpy / scipy / Pinocchio (no torch, no rclpy): the
  JointState rule, state estimation, the physics prior and its identification, the residual's
  guard, the dual identifier's switching rule, readiness, the pipeline's output types;
- ``learning/``: the networks (torch): models, scaling, predictor, replay buffer, learner,
  trainers and checkpoints;
- ``pipeline/``: the parameter table, ``PipelineConfig`` and the ``Pipeline`` that composes the
  stages and the learning side (one sample at a time, or a whole recording in ``replay``);
- ``ros/``: the node and its process (``node``, ``node_main``, ``serialized`` use rclpy) and its
  pure helpers: JointTrajectory conversion, diagnostics, the feedforward gate, trainer start-up;
- ``offline/``: bags, datasets, the evaluator, baselines and plots;
- ``sim/``: the simulated arm, controller and the demo; ``cli/``: the command-line tools.

Only ``ros/``, ``sim/`` and ``cli/`` import rclpy, so the core runs in tests, notebooks
and the offline evaluator alike.
"""

__version__ = '0.1.0'
