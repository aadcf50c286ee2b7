"""Offline work on recordings: ``bag`` (rosbag2 read / write through the same JointState rule as
the node), ``recording``, ``column_files``, ``mat_datasets``, ``datasets``, the evaluator
(``evaluation`` and its ``eval_*`` parts), ``baselines`` and ``plots``. No rclpy."""
