"""The trainer process's own helpers: the numpy <-> tensor conversion of what crosses the queues
and the parent liveness check. The worker's loop itself runs through ProcessTrainer
(test_training.py, test_faults.py)."""
import os
import subprocess
import sys

import numpy as np
import torch

from invdyn_ros.learning.training_worker import _parent_gone, _to_numpy_tree, _to_torch_tree


def test_a_weights_tree_crosses_as_numpy_and_comes_back_as_equal_cpu_tensors():
    tree = {'lstm': {'state': {'w': torch.arange(6.0).reshape(2, 3), 'b': torch.zeros(3)},
                     'step': 7, 'name': 'lstm'},
            'gru': {'w': torch.ones(2, dtype=torch.float64, requires_grad=True)}}
    sent = _to_numpy_tree(tree)
    assert isinstance(sent['lstm']['state']['w'], np.ndarray)
    assert isinstance(sent['gru']['w'], np.ndarray) and sent['gru']['w'].dtype == np.float64
    assert sent['lstm']['step'] == 7 and sent['lstm']['name'] == 'lstm'   # leaves pass through
    back = _to_torch_tree(sent)
    assert torch.equal(back['lstm']['state']['w'], tree['lstm']['state']['w'])
    assert torch.equal(back['lstm']['state']['b'], tree['lstm']['state']['b'])
    assert torch.equal(back['gru']['w'], tree['gru']['w'].detach())
    assert back['gru']['w'].device.type == 'cpu' and back['lstm']['step'] == 7


def test_parent_gone_is_false_for_the_live_parent_and_true_for_any_other_pid():
    assert _parent_gone(os.getppid()) is False
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    child.wait()                                   # reaped: its pid is not our parent
    assert _parent_gone(child.pid) is True
