"""The specification in NumPy: number formats, quantizer, integer reference ops, model format.

This package imports nothing from :mod:`ilmpq.hdl` or :mod:`ilmpq.firmware`: it is the
independent reference the hardware is checked against, bit for bit.
"""
