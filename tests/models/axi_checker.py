"""Re-export of :mod:`ilmpq.firmware.sim.models.axi_checker` (the model ships in the package so that
``ilmpq simulate`` can use it)."""

from ilmpq.firmware.sim.models.axi_checker import *  # noqa: F401,F403
from ilmpq.firmware.sim.models.axi_checker import __all__  # noqa: F401
