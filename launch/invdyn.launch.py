"""Launch invdyn_node with a parameter file, next to a robot driver.

    ros2 launch invdyn_ros invdyn.launch.py                               # KUKA LBR defaults
    ros2 launch invdyn_ros invdyn.launch.py config:=/abs/path/ur5.yaml \\
        feedforward_topic:=/effort_controller/commands

Arguments:
  config             parameter file (default: <share>/invdyn_ros/config/kuka_lwr.yaml)
  joint_states_topic where the driver publishes sensor_msgs/JointState (default joint_states:
                     relative, so it resolves in the node's namespace)
  feedforward_topic  where ~/feedforward goes, e.g. the `commands` topic of a
                     ForwardCommandController with interface_name: effort
                     (default ~/feedforward, i.e. not remapped)

The defaults are relative names, so a pushed namespace applies, e.g. inside
``PushRosNamespace('lbr')`` the node subscribes to /lbr/joint_states and publishes
/lbr/invdyn_node/feedforward. Absolute names (leading /) ignore the namespace.

The node is given exactly ``--params-file <config>`` plus the two remappings; everything else
comes from the file (see config/*.yaml and ``invdyn_node --help``).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    default_config = os.path.join(get_package_share_directory('invdyn_ros'), 'config',
                                  'kuka_lwr.yaml')
    config = LaunchConfiguration('config')
    joint_states_topic = LaunchConfiguration('joint_states_topic')
    feedforward_topic = LaunchConfiguration('feedforward_topic')
    return LaunchDescription([
        DeclareLaunchArgument(
            'config', default_value=default_config,
            description='invdyn_node parameter file (YAML with invdyn_node: ros__parameters:); '
                        'joint_names and torque_limits are required, see config/*.yaml'),
        DeclareLaunchArgument(
            'joint_states_topic', default_value='joint_states',
            description='sensor_msgs/JointState input topic of the robot driver (relative names '
                        'resolve in the namespace, e.g. /lbr/joint_states under PushRosNamespace)'),
        DeclareLaunchArgument(
            'feedforward_topic', default_value='~/feedforward',
            description='where the std_msgs/Float64MultiArray feedforward goes, e.g. '
                        '/effort_controller/commands of a ForwardCommandController with '
                        'interface_name: effort (default: not remapped)'),
        Node(
            package='invdyn_ros',
            executable='invdyn_node',
            name='invdyn_node',
            output='screen',
            emulate_tty=True,
            parameters=[config],
            remappings=[
                ('joint_states', joint_states_topic),
                ('~/feedforward', feedforward_topic),
            ],
            # SIGINT first: the node stops the loop, zeroes the feedforward and writes its final
            # checkpoint before exiting (give it time before launch escalates to SIGTERM).
            sigterm_timeout='30',
        ),
    ])
