"""Re-export of :mod:`ilmpq.firmware.sim.models.axil`, the AXI4-Lite manager for async
testbenches (it ships in the package so that ``ilmpq simulate`` and the driver's simulation
transport can use it): ``await axil_write(ctx, bus, addr, data, strb)``,
``await axil_read(ctx, bus, addr) -> (data, resp)``, optional random valid delays and random
``bready``/``rready``, protocol checks."""

from ilmpq.firmware.sim.models.axil import *  # noqa: F401,F403
from ilmpq.firmware.sim.models.axil import __all__  # noqa: F401
