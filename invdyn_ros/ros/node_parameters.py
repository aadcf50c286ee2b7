"""The node's parameters through rclpy: declared from the one table
(:data:`invdyn_ros.pipeline.parameters.PARAMETERS`) with their descriptors, read back as a plain
dict, and checked by that table (:func:`~invdyn_ros.pipeline.parameters.check_all`).

Not rclpy's automatic declaration from overrides: it declares every override statically typed,
and an empty list (``joint_names: []``) has no type -- a ValueError naming nothing. Here an
unknown name is a :class:`~invdyn_ros.errors.ConfigError` listing the accepted ones, and an empty
list or a null value is one naming the parameter.
"""
from __future__ import annotations

import array
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor

from invdyn_ros.errors import ConfigError
from invdyn_ros.pipeline.parameters import PARAMETER_DOCS, PARAMETERS, check_all, descriptor_fields

__all__ = ['read_parameters', 'BUILTIN_PARAMETERS']

#: Parameters rclpy itself declares on every node (accepted, not ours)
BUILTIN_PARAMETERS = frozenset({'use_sim_time', 'start_type_description_service'})


def read_parameters(node: Any) -> dict[str, Any]:
    """All of ``node``'s parameters as a plain dict (declared first where not yet); unknown names
    in the overrides are a ConfigError."""
    known = set(PARAMETER_DOCS)
    # the overrides (params files, -p, the constructor's parameter_overrides): rclpy keeps
    # them in this attribute and declares from it; it has no public accessor
    overrides = dict(getattr(node, '_parameter_overrides', {}))
    overrides.update({name: None for name in node.get_parameters_by_prefix('')
                      if name not in overrides})
    unknown = sorted(name for name in overrides
                     if name not in known and name not in BUILTIN_PARAMETERS
                     and not name.startswith('qos_overrides.'))
    if unknown:
        raise ConfigError(f'unknown parameter(s) {unknown} (typo?); accepted: '
                          f'{sorted(known)}')
    values: dict[str, Any] = {}
    for name in PARAMETER_DOCS:
        given = overrides.get(name)
        if given is not None and given.type_ == given.Type.NOT_SET:
            raise ConfigError(f'{name}: no value (an empty list or a null): ' + (
                'required, give at least one element' if PARAMETERS[name].required else
                'leave the parameter out for its default'))
        if not node.has_parameter(name):
            node.declare_parameter(name, PARAMETERS[name].default,
                                   ParameterDescriptor(**descriptor_fields(name)))
        value = node.get_parameter(name).value
        if isinstance(value, array.array):
            value = value.tolist()
        values[name] = value
    if values['joint_names'] is None:
        raise ConfigError('joint_names: required (the order of every output), e.g. '
                          '[lbr_A1, lbr_A2, ...]; set it in the params file')
    return check_all(values, PARAMETER_DOCS)     # every type and range, by the table
