"""Simulation of the accelerator behind the driver: the RTL in the Amaranth simulator or
Verilator (:mod:`.simulate`, :mod:`.verilator`), the AXI memory and protocol checkers
(:mod:`.models`), and the instruction-level simulator (:mod:`.isasim`)."""
