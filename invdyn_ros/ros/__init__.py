"""The ROS side: ``node`` (the lifecycle node, which wires rclpy), ``node_main`` (its process:
signals, executor, SCHED_FIFO) and ``serialized`` (messages published as pre-serialized bytes), with
the pure helpers they use: ``node_settings``, ``node_diagnostics``, ``feedforward_gate``,
``trajectory_msgs_io`` and ``trainer_setup``. The JointState rule that the node shares with the
bag reader and the simulator is ``stages.joint_state``."""
