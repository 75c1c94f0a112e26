"""Simulation models used by ``ilmpq simulate`` and by the tests: the AXI4 memory
(:mod:`.axi_mem`), the passive AXI protocol checker (:mod:`.axi_checker`) and the AXI4-Lite
manager (:mod:`.axil`)."""
