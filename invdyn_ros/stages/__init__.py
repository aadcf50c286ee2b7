"""The per-sample stages of the data path, each with its one-sample and many-sample forms:
``joint_state`` (the one rule from a JointState message to ordered arrays),
``estimation`` (+ ``filters``, ``rate``, ``estimation_batch``, ``estimation_offline``),
``physics`` / ``identification`` / ``residual`` (the URDF prior, its online identification and
the residual's guard), ``identifier`` (the per-joint switching rule, + ``rolling_spread``), ``readiness``, ``labels``,
``windows`` and ``outputs``; ``kernels`` holds their compiled inner loops. numpy / scipy /
Pinocchio / numba only: no torch, no rclpy."""
