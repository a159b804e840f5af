"""The scheduler's state as a number, for the loggers that chart only numbers:
backing off and converging show as steps in one curve."""

from optix_core.types import LoopState

STATE_CODES = {LoopState.ACTIVE: 0, LoopState.COOLING: 1, LoopState.DORMANT: 2}
