"""The learning side (torch): ``models`` (plain ``nn.Module``s with a config dataclass),
``scaling``, ``predictor`` (the fast path's read-out), ``replay_buffer``, ``learner`` (+
``learner_config``, ``learner_checkpoint``), the trainers (``trainers``, ``training``) and the
verified checkpoint sets (``checkpoints``). Imports nothing from ``pipeline``, ``ros`` or
``offline``."""
