"""Everything for a board: the Vivado build plan (:mod:`.build`), yosys resource estimates
(:mod:`.resources`), Verilog export (:mod:`.verilog`), the Linux transport (:mod:`.linux`) and
the bare-metal C driver (``c/``)."""
