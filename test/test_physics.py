"""physics.py: the URDF model, the RNEA prior, gravity and the regressor against Pinocchio itself."""
import numpy as np
import pinocchio as pin
import pytest

from invdyn_ros.errors import ConfigError
from invdyn_ros.sim.arm import find_robot_urdf, perturbed_urdf_model
from invdyn_ros.stages.physics import (FIXED_COULOMB_VELOCITY, PhysicsConfig, PhysicsPrior,
                                       RobotModel, load_urdf_text)

UR5 = ['shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
       'wrist_2_joint', 'wrist_3_joint']
PANDA = [f'panda_joint{i}' for i in range(1, 8)]


def urdf(robot='ur5'):
    return find_robot_urdf(robot).read_text()


def panda_urdf():
    return (find_robot_urdf('ur5').parents[2] / 'panda_description' / 'urdf' /
            'panda.urdf').read_text()


def states(n, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return [tuple(rng.normal(size=(3, n))) for _ in range(k)]


def test_prior_equals_pinocchio_rnea_on_known_states():
    model = pin.buildModelFromXML(urdf())
    data = model.createData()
    prior = PhysicsPrior(RobotModel(urdf(), UR5))
    for q, qd, qdd in states(6):
        np.testing.assert_allclose(prior.predict(q, qd, qdd), pin.rnea(model, data, q, qd, qdd),
                                   rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(prior.gravity(q), pin.computeGeneralizedGravity(model, data, q),
                                   rtol=1e-12, atol=1e-10)


def test_joint_order_is_the_configured_one_not_the_urdf_one():
    order = [3, 0, 5, 1, 4, 2]
    names = [UR5[i] for i in order]
    ref = PhysicsPrior(RobotModel(urdf(), UR5))
    shuffled = PhysicsPrior(RobotModel(urdf(), names))
    assert not shuffled.robot.identity
    for q, qd, qdd in states(6):
        expected = ref.predict(q, qd, qdd)[order]
        np.testing.assert_allclose(shuffled.predict(q[order], qd[order], qdd[order]), expected,
                                   atol=1e-10)
        np.testing.assert_allclose(shuffled.gravity(q[order]), ref.gravity(q)[order], atol=1e-10)
        Y = shuffled.regressor(q[order], qd[order], qdd[order])
        np.testing.assert_allclose(Y @ shuffled.theta, expected, atol=1e-10)


def test_regressor_is_linear_form_of_the_prior_for_any_parameters():
    robot = RobotModel(urdf(), UR5)
    prior = PhysicsPrior(robot)
    rng = np.random.default_rng(3)
    theta = robot.theta0 * (1 + 0.4 * rng.uniform(-1, 1, robot.n_params))
    theta[robot.n_inertial:] = rng.normal(size=3 * robot.n)      # friction and offsets
    prior.set_parameters(theta)
    for q, qd, qdd in states(6):
        np.testing.assert_allclose(prior.regressor(q, qd, qdd) @ theta,
                                   prior.predict(q, qd, qdd), atol=1e-9)
    fr = robot.friction_parameters(theta)
    q, qd, qdd = states(6)[0]
    # friction terms as documented: viscous * qd + coulomb * tanh(qd / v_c) + offset
    base = PhysicsPrior(robot)
    no_friction = theta.copy()
    no_friction[robot.n_inertial:] = 0.0
    base.set_parameters(no_friction)
    np.testing.assert_allclose(prior.predict(q, qd, qdd) - base.predict(q, qd, qdd),
                               fr[:, 0] * qd + fr[:, 1] * np.tanh(qd / 0.05) + fr[:, 2],
                               atol=1e-9)


def test_other_movable_joints_are_locked_and_a_payload_adds_gravity():
    robot = RobotModel(panda_urdf(), PANDA)
    assert robot.model.nv == 7                         # the two finger joints are locked
    heavy = PhysicsPrior(RobotModel(panda_urdf(), PANDA, payload_mass_kg=2.0,
                                    payload_com=(0.0, 0.0, 0.1)))
    light = PhysicsPrior(robot)
    q = np.array([0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8])
    dg = heavy.gravity(q) - light.gravity(q)
    assert np.abs(dg[:4]).max() > 1.0                  # 2 kg at the flange: N m on the big joints
    assert heavy.robot.theta0[10 * 6] == pytest.approx(light.robot.theta0[10 * 6] + 2.0)


def test_a_joint_missing_from_the_urdf_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match='lbr_A7'):
        RobotModel(urdf(), UR5[:5] + ['lbr_A7'])
    with pytest.raises(ConfigError, match='robot_description'):
        RobotModel('<robot name="x"><link name=', UR5)


def test_config_needs_a_urdf_for_the_prior_and_for_minus_gravity():
    with pytest.raises(ConfigError, match='robot_description'):
        PhysicsConfig(prior='rnea').validate()
    with pytest.raises(ConfigError, match='minus_gravity'):
        PhysicsConfig(feedforward_mode='minus_gravity').validate()
    with pytest.raises(ConfigError, match='prior'):
        PhysicsConfig(prior='magic', urdf='x').validate()
    PhysicsConfig().validate()                         # none / total: no model needed
    with pytest.raises(ConfigError, match='coulomb_velocity'):
        PhysicsConfig(coulomb_velocity=-0.01).validate()
    with pytest.raises(ConfigError, match='identification_memory_s'):
        PhysicsConfig(identification_memory_s=0.0).validate()


def test_the_coulomb_scale_is_identified_unless_set_or_identification_is_off():
    assert PhysicsConfig().identifies_coulomb_velocity           # 0, the default: identified
    assert PhysicsConfig().initial_coulomb_velocity == FIXED_COULOMB_VELOCITY
    set_ = PhysicsConfig(coulomb_velocity=0.03)
    assert not set_.identifies_coulomb_velocity and set_.initial_coulomb_velocity == 0.03
    off = PhysicsConfig(identify=False)
    assert not off.identifies_coulomb_velocity
    assert off.initial_coulomb_velocity == FIXED_COULOMB_VELOCITY


def test_a_coulomb_scale_must_be_positive_and_finite():
    prior = PhysicsPrior(RobotModel(urdf(), UR5))
    for bad in (0.0, -0.1, float('inf'), float('nan')):
        with pytest.raises(ValueError, match='coulomb_velocity'):
            prior.set_coulomb_velocity(bad)
    assert prior.coulomb_velocity == FIXED_COULOMB_VELOCITY


def test_load_urdf_text(tmp_path):
    f = tmp_path / 'r.urdf'
    f.write_text('<robot/>')
    assert load_urdf_text('', str(f)) == '<robot/>'
    assert load_urdf_text('<robot name="a"/>', str(f)) == '<robot name="a"/>'
    assert load_urdf_text('', '') is None
    with pytest.raises(ConfigError, match='urdf_path'):
        load_urdf_text('', str(tmp_path / 'missing.urdf'))


def test_perturbed_urdf_changes_masses_within_bounds_and_keeps_kinematics():
    a = RobotModel(urdf(), UR5)
    b = RobotModel(perturbed_urdf_model(urdf(), 0.25, seed=1), UR5)
    ma, mb = a.body_parameters(a.theta0)[:, 0], b.body_parameters(b.theta0)[:, 0]
    ratio = mb / ma
    assert np.all(np.abs(ratio - 1) <= 0.25 + 1e-9) and np.any(np.abs(ratio - 1) > 0.02)
    for i in range(1, a.model.njoints):
        np.testing.assert_allclose(a.model.jointPlacements[i].homogeneous,
                                   b.model.jointPlacements[i].homogeneous)


# a chain and a branch with every kind of one-axis joint the compiled RNEA takes: aligned and
# unaligned revolute, continuous (Pinocchio's cos/sin joint), prismatic, a fixed joint between
TREE_URDF = """<robot name="tree">
  <link name="base"/>
  {links}
  <joint name="a" type="revolute"><parent link="base"/><child link="l1"/>
    <origin xyz="0 0 0.1" rpy="0 0 0.3"/><axis xyz="0 0 1"/>
    <limit lower="-3" upper="3" effort="10" velocity="1"/></joint>
  <joint name="b" type="revolute"><parent link="l1"/><child link="l2"/>
    <origin xyz="0.05 0 0.2" rpy="0.2 0.1 0"/><axis xyz="0.6 0 0.8"/>
    <limit lower="-3" upper="3" effort="10" velocity="1"/></joint>
  <joint name="c" type="prismatic"><parent link="l2"/><child link="l3"/>
    <origin xyz="0 0.1 0.1" rpy="0 0.4 0"/><axis xyz="0 1 0"/>
    <limit lower="-1" upper="1" effort="10" velocity="1"/></joint>
  <joint name="d" type="continuous"><parent link="l1"/><child link="l4"/>
    <origin xyz="0 -0.1 0.3" rpy="0 0 0"/><axis xyz="1 0 0"/></joint>
  <joint name="e" type="fixed"><parent link="l4"/><child link="l5"/>
    <origin xyz="0.1 0 0" rpy="0.3 0 0"/></joint>
  <joint name="f" type="prismatic"><parent link="l5"/><child link="l6"/>
    <origin xyz="0 0 0.1" rpy="0 0 0"/><axis xyz="0.3 0.4 0.866"/>
    <limit lower="-1" upper="1" effort="10" velocity="1"/></joint>
</robot>"""
TREE_LINK = """<link name="{name}"><inertial><origin xyz="{c}" rpy="0.1 0.2 0.3"/>
    <mass value="{m}"/><inertia ixx="{i}" ixy="0.001" ixz="0.002" iyy="{i}" iyz="0.003"
    izz="{i}"/></inertial></link>"""


def tree_urdf():
    links = '\n  '.join(TREE_LINK.format(name=f'l{k}', m=0.5 + 0.3 * k, i=0.01 * k,
                                         c=f'{0.02 * k} {-0.01 * k} {0.05}')
                        for k in range(1, 7))
    return TREE_URDF.format(links=links)


@pytest.mark.parametrize('robot', ['ur5', 'ur5 shuffled with friction', 'panda with payload',
                                   'tree'])
def test_the_compiled_rnea_equals_pinocchios(robot):
    """kernels.rnea_prior (the fast path) against the same prior through Pinocchio's rnea, for
    chains and a branching tree, every one-axis joint kind, another joint order, identified
    parameters with friction and a payload."""
    if robot == 'ur5':
        model = RobotModel(urdf(), UR5)
    elif robot.startswith('ur5 shuffled'):
        model = RobotModel(urdf(), [UR5[i] for i in (3, 0, 5, 1, 4, 2)])
    elif robot.startswith('panda'):
        model = RobotModel(panda_urdf(), PANDA, payload_mass_kg=2.0, payload_com=(0, 0.02, 0.1))
    else:
        model = RobotModel(tree_urdf(), ['d', 'a', 'f', 'b', 'c'])   # not Pinocchio's order
        kinds = {model.model.joints[i].shortname() for i in range(1, model.model.njoints)}
        assert kinds == {'JointModelRZ', 'JointModelRevoluteUnaligned', 'JointModelPY',
                         'JointModelRUBX', 'JointModelPrismaticUnaligned'}
    prior = PhysicsPrior(model)
    assert prior._kernel is not None, 'numba is in requirements.txt: the compiled path is used'
    if 'friction' in robot:
        rng = np.random.default_rng(5)
        theta = model.theta0 * (1 + 0.3 * rng.uniform(-1, 1, model.n_params))
        theta[model.n_inertial:] = rng.normal(size=3 * model.n)
        prior.set_parameters(theta)
        version = prior.version
        prior.set_coulomb_velocity(0.013)        # identification's choice of the sign's scale
        assert prior.coulomb_velocity == 0.013 and prior.version == version + 1
    for q, qd, qdd in states(model.n, k=20, seed=1):
        expected = prior._predict_pinocchio(q, qd, qdd)
        np.testing.assert_allclose(prior.predict(q, qd, qdd), expected, rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(prior.predict_finite(q, qd, qdd), expected, rtol=1e-12,
                                   atol=1e-10)


def test_the_compiled_rnea_says_when_it_is_not_finite_and_refuses_a_wrong_length():
    prior = PhysicsPrior(RobotModel(urdf(), UR5))
    q, qd, qdd = states(6)[0]
    for bad in (np.nan, np.inf):
        qd_bad = qd.copy()
        qd_bad[2] = bad
        assert prior.predict_finite(q, qd_bad, qdd) is None
        assert not np.isfinite(prior.predict(q, qd_bad, qdd)).all()
    assert prior.predict_finite(q, qd, qdd) is not None
    with pytest.raises(ValueError, match='6 values'):
        prior.predict(q[:5], qd, qdd)          # the kernel does not check bounds: never reached
    # integer or non-contiguous input is converted, not misread
    np.testing.assert_allclose(prior.predict(np.zeros(6, dtype=int), qd[::1], qdd),
                               prior.predict(np.zeros(6), qd, qdd))
    wide = np.stack([q, q]).T                  # column views: not contiguous
    np.testing.assert_allclose(prior.predict(wide[:, 0], qd, qdd), prior.predict(q, qd, qdd))
    from invdyn_ros.stages import kernels

    # one compiled signature: no input ever makes numba compile again (a stall on the fast path)
    assert len(kernels.rnea_prior.signatures) == 1, kernels.rnea_prior.signatures


def test_without_numba_the_prior_is_pinocchios_rnea(monkeypatch):
    from invdyn_ros.stages import kernels
    compiled = PhysicsPrior(RobotModel(urdf(), UR5))
    monkeypatch.setattr(kernels, 'rnea_prior', None)
    robot = RobotModel(urdf(), UR5)
    assert robot.kernel_geometry is None
    prior = PhysicsPrior(robot)
    assert prior._kernel is None
    for q, qd, qdd in states(6):
        np.testing.assert_allclose(prior.predict(q, qd, qdd), compiled.predict(q, qd, qdd),
                                   rtol=1e-12, atol=1e-10)
    q, qd, qdd = states(6)[0]
    assert prior.predict_finite(q, np.full(6, np.nan), qdd) is None
