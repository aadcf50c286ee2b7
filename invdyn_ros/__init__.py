"""invdyn_ros: online (lifelong) learning of robot inverse dynamics for ROS 2.

The core modules (everything except ``node`` and the ``*_node`` / ``cli`` entry points) are free
of rclpy so they run in tests, notebooks and the offline evaluator alike.
"""

__version__ = '0.1.0'
