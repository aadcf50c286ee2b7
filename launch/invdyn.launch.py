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
  lifecycle          who moves the managed node through its states:
                     autostart (default) the node configures and activates itself;
                     launch    launch drives the transitions (configure at start, activate once
                               inactive) through the node's lifecycle services;
                     manager   nobody here: the node waits unconfigured for a lifecycle manager
                               (e.g. nav2_lifecycle_manager) or ``ros2 lifecycle set``

The defaults are relative names, so a pushed namespace applies, e.g. inside
``PushRosNamespace('lbr')`` the node subscribes to /lbr/joint_states and publishes
/lbr/invdyn_node/feedforward. Absolute names (leading /) ignore the namespace.

The node is given exactly ``--params-file <config>`` plus the two remappings (and, for
``lifecycle:=launch`` / ``manager``, ``autostart: false``); everything else comes from the file
(see config/*.yaml and ``invdyn_node --help``).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

LIFECYCLE_MODES = ('autostart', 'launch', 'manager')


def lifecycle_is(*modes: str) -> IfCondition:
    """True when the ``lifecycle`` argument is one of ``modes`` (PythonExpression: works from
    Humble on, unlike EqualsSubstitution; LaunchConfigurationEquals is deprecated)."""
    return IfCondition(PythonExpression(
        ["'", LaunchConfiguration('lifecycle'), f"' in {tuple(modes)!r}"]))


def generate_launch_description() -> LaunchDescription:
    default_config = os.path.join(get_package_share_directory('invdyn_ros'), 'config',
                                  'kuka_lwr.yaml')
    config = LaunchConfiguration('config')
    joint_states_topic = LaunchConfiguration('joint_states_topic')
    feedforward_topic = LaunchConfiguration('feedforward_topic')
    remappings = [
        ('joint_states', joint_states_topic),
        ('~/feedforward', feedforward_topic),
    ]
    # lifecycle:=launch / manager: the same node, started unconfigured (autostart: false)
    managed = LifecycleNode(
        package='invdyn_ros',
        executable='invdyn_node',
        name='invdyn_node',
        namespace='',
        output='screen',
        emulate_tty=True,
        parameters=[config, {'autostart': False}],
        remappings=remappings,
        sigterm_timeout='30',
        condition=lifecycle_is('launch', 'manager'),
    )
    driven = lifecycle_is('launch')
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
        DeclareLaunchArgument(
            'lifecycle', default_value='autostart', choices=list(LIFECYCLE_MODES),
            description='who drives the managed node: autostart = the node configures and '
                        'activates itself; launch = this launch file does (configure, then '
                        'activate); manager = an external lifecycle manager'),
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
            condition=lifecycle_is('autostart'),
        ),
        managed,
        # lifecycle:=launch: configure at start, activate once configured (only then: a later
        # deactivate by hand must not be undone)
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=managed, start_state='configuring', goal_state='inactive',
            entities=[EmitEvent(event=ChangeState(
                lifecycle_node_matcher=matches_action(managed),
                transition_id=Transition.TRANSITION_ACTIVATE))]),
            condition=driven),
        EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(managed),
                                    transition_id=Transition.TRANSITION_CONFIGURE),
                  condition=driven),
    ])
