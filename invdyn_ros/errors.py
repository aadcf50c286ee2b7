"""Typed errors of invdyn_ros, so callers can tell bad configuration from bad files."""


class InvdynError(Exception):
    """Base class of every error raised on purpose by invdyn_ros."""


class ConfigError(InvdynError, ValueError):
    """An invalid parameter; the message names the parameter and the accepted values."""


class CheckpointError(InvdynError):
    """A checkpoint that is missing, corrupt, or incompatible with the requested configuration."""


class DatasetError(InvdynError):
    """A recorded-data file that cannot be read or does not have the expected layout."""


class BagError(InvdynError):
    """A rosbag2 bag that cannot be opened or does not contain the requested topic."""


class TrainerError(InvdynError, RuntimeError):
    """The training worker died, failed or did not answer in time."""
