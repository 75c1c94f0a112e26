"""Verilog of the accelerator top level (for Vivado and for Verilator)."""

from __future__ import annotations

import functools

from ...hdl.config import HWConfig

__all__ = ["top_name", "accelerator_verilog"]


def top_name(config: HWConfig) -> str:
    """Module name of the accelerator top for a configuration (``ilmpq_<name>``)."""
    safe = "".join(c if c.isalnum() else "_" for c in config.name)
    return f"ilmpq_{safe}"


@functools.lru_cache(maxsize=4)  # the CLI builds the Verilator model, then simulates it
def accelerator_verilog(config: HWConfig) -> tuple[str, str]:
    """Return ``(verilog_text, top_module_name)`` of :class:`ilmpq.hdl.top.Accelerator`.

    Ports: ``clk``, ``rst`` (synchronous, active high), ``s_axil_*``, ``m_axi_*``, ``irq``.
    """
    from amaranth.back import verilog

    from ...hdl.top import Accelerator
    top = Accelerator(config)
    name = top_name(config)
    return verilog.convert(top, name=name), name
