"""The composition: ``parameters`` (the one parameter table), ``config`` (``PipelineConfig``, made
from it), ``pipeline`` (``Pipeline``: the stages and the learning side for one sample at a time)
with its sides ``pipeline_learning``, ``pipeline_physics`` and ``pipeline_reference``, and
``replay`` (the same chain over a whole recording), ``trajectory_feedforward`` (the
networks' feedforward along a whole planned trajectory) and ``scheduling`` (normal scheduling for
helper threads; torch-free). ROS-free."""
