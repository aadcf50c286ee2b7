"""Launch the closed-loop demo (invdyn_demo) for ROS users.

    ros2 launch invdyn_ros sim_demo.launch.py
    ros2 launch invdyn_ros sim_demo.launch.py payload_change:=3.0 output:=/tmp/demo
    ros2 launch invdyn_ros sim_demo.launch.py domain_id:=env   # to watch it with ros2 topic / rqt

It runs the ``invdyn_demo`` executable, which itself needs no launch_ros: it starts invdyn_node as
a child process and runs the simulated arm (sim_arm) and its controller (torque_controller) in its
own process, switches the phases (PD only, PD + feedforward while learning, PD + learned
feedforward, PD + trajectory feedforward, PD + ideal feedforward[, payload change], then learned,
PD only and ideal on an unseen reference) in simulated time, and writes
``<output>/summary.json``, ``tracking_error.png`` and ``table.md``. Ctrl-C stops it and every
child process; under launch that is a clean stop (exit 0: ``--interrupt-exit-code 0``).

Arguments (the options of ``invdyn_demo --help``):
  duration           simulated seconds ('' = the demo's default: 210, or 330 with a payload change)
  unseen_seconds     the last seconds, on the unseen reference ('' = the demo's default: 60, or
                     min(60, 2/7 x duration) with a duration; 0 = none)
  learning_seconds   simulated learning before the learned phase ('' = min(60, 0.4 x the primary
                     part))
  robot              ur3 | ur5 | ur10 (default ur5)
  payload            payload at the flange in kg (default 0.0)
  payload_change     new payload in kg for the payload-change phase ('' = no change)
  seed               seed of the reference, the noise and the networks (default 0)
  output             output folder (default results/demo, relative to the working directory)
  real_time_factor   simulated seconds per wall second (default 1.0)
  domain_id          'auto' (a private ROS domain: the demo publishes effort commands on
                     /effort_controller/commands and must never reach a real arm), 'env' (the
                     caller's ROS_DOMAIN_ID, discovery limited to localhost unless the caller set
                     ROS_AUTOMATIC_DISCOVERY_RANGE) or a number 0-101
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

#: launch argument -> (invdyn_demo option, default ('' = leave the option out), description)
ARGUMENTS = {
    'duration': ('--duration', '',
                 "simulated seconds of the whole run ('' = the demo's default: 210, or 330 with "
                 'a payload change)'),
    'unseen_seconds': ('--unseen-seconds', '',
                       "simulated seconds at the end on the unseen reference (another seed, 1.5x "
                       "faster, centred elsewhere; '' = the demo's default: 60, or min(60, 2/7 x "
                       'duration) with a duration; 0 = none)'),
    'learning_seconds': ('--learning-seconds', '',
                         "simulated seconds of learning before the learned phase ('' = "
                         'min(60, 0.4 x the primary part: duration minus the unseen part))'),
    'robot': ('--robot', 'ur5', 'simulated arm: ur3, ur5 or ur10 (example-robot-data models)'),
    'payload': ('--payload', '0.0', 'payload at the flange in kg'),
    'payload_change': ('--payload-change', '',
                       "new payload in kg for a payload-change phase ('' = no change)"),
    'seed': ('--seed', '0', 'seed of the reference trajectory, the noise and the networks'),
    'output': ('--output', 'results/demo',
               'folder for summary.json, table.md, tracking_error.png and the logs (relative to '
               'the working directory)'),
    'real_time_factor': ('--real-time-factor', '1.0', 'simulated seconds per wall second'),
    'domain_id': ('--domain-id', 'auto',
                  "ROS domain: 'auto' = a private one (the demo publishes effort commands on "
                  "/effort_controller/commands and must never reach a real arm), 'env' = the "
                  "caller's ROS_DOMAIN_ID (localhost discovery unless set), or a number 0-101"),
}
#: under launch a Ctrl-C (launch's SIGINT, then SIGTERM) is the normal way to stop the demo:
#: exit 0 then, so launch reports a clean finish instead of "process has died ... exit code 130"
INTERRUPT_EXIT_CODE = '0'


def _demo(context, *args, **kwargs):
    """The invdyn_demo process with the options whose launch arguments are not empty."""
    argv = ['--interrupt-exit-code', INTERRUPT_EXIT_CODE]
    for name, (option, _, _) in ARGUMENTS.items():
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            argv += [option, value]
    return [Node(
        package='invdyn_ros',
        executable='invdyn_demo',
        output='screen',
        emulate_tty=True,
        arguments=argv,
        # SIGINT first: the demo stops the simulator, invdyn_node and its trainer (in that order)
        # before exiting; give it time before launch escalates.
        sigterm_timeout='30',
    )]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default,
                                      description=f'{description} (invdyn_demo {option})')
                for name, (option, default, description) in ARGUMENTS.items()]
    return LaunchDescription(declared + [OpaqueFunction(function=_demo)])
