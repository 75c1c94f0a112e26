"""Re-export of :mod:`ilmpq.firmware.sim.models.axi_mem` (the model ships in the package so that
``ilmpq simulate`` can use it)."""

from ilmpq.firmware.sim.models.axi_mem import *  # noqa: F401,F403
from ilmpq.firmware.sim.models.axi_mem import __all__  # noqa: F401
