"""ilmpq: an FPGA accelerator for CNNs quantized with intra-layer multi-precision (ILMPQ).

Subpackages:

* :mod:`ilmpq.golden` -- the specification: number formats, quantizer, integer reference ops.
* :mod:`ilmpq.hdl` -- Amaranth components of the accelerator.
* :mod:`ilmpq.firmware` -- compiler, driver, generated headers and the ``ilmpq`` CLI.
"""

__version__ = "0.1.0"
