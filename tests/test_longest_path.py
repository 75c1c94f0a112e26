"""``longest_path``: the register-to-register path analysis of ``bench/timing.py`` on hand-made
mapped netlists (yosys ``write_json`` form), so the LUT levels, carry chains and end points it
reports are known exactly."""

import pytest

from ilmpq.firmware.board.resources import DELAY_MODEL, longest_path


def _cell(type_, ins: dict, outs: dict, **params):
    dirs = {p: "input" for p in ins} | {p: "output" for p in outs}
    return {"type": type_, "parameters": params, "port_directions": dirs,
            "connections": {**{p: list(b) for p, b in ins.items()},
                            **{p: list(b) for p, b in outs.items()}}}


def _netlist(cells):
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                "cells": cells}}}


def test_lut_levels_and_carry_chain_between_flip_flops():
    # ff0 -> lut a -> lut b -> carry c0 -> carry c1 (CI from c0's CO) -> ff1;
    # and a short side path ff0 -> lut s -> ff2
    cells = {
        "ff0": _cell("FDRE", {"D": [100], "C": [1]}, {"Q": [2]}),
        "a": _cell("LUT2", {"I0": [2], "I1": [2]}, {"O": [3]}),
        "b": _cell("LUT6", {"I0": [3]}, {"O": [4]}),
        "c0": _cell("CARRY4", {"S": [4, 4, 4, 4], "CI": ["0"]}, {"CO": [10, 11, 12, 5]}),
        "c1": _cell("CARRY4", {"S": [4, 4, 4, 4], "CI": [5]}, {"CO": [13, 14, 15, 6]}),
        "ff1": _cell("FDRE", {"D": [6], "C": [1]}, {"Q": [7]}),
        "s": _cell("LUT1", {"I0": [2]}, {"O": [8]}),
        "ff2": _cell("FDRE", {"D": [8], "C": [1]}, {"Q": [9]}),
    }
    t = longest_path(_netlist(cells))
    assert (t["lut_levels"], t["carry4"], t["max_carry_chain"], t["max_lut_levels"]) == \
        (2, 2, 2, 2)
    want = (2 * DELAY_MODEL["lut"] + DELAY_MODEL["carry_in"] + DELAY_MODEL["carry"]
            + DELAY_MODEL["ff"])
    assert t["delay_ns"] == pytest.approx(want, abs=0.01)


def test_registered_dsp_and_block_ram_end_paths_but_a_combinational_dsp_does_not():
    def dsp(name_in, name_out, preg):
        return _cell("DSP48E1", {"A": [name_in]}, {"P": [name_out]}, PREG=preg)
    base = {
        "ff0": _cell("FDRE", {"D": [100]}, {"Q": [2]}),
        "l0": _cell("LUT3", {"I0": [2]}, {"O": [3]}),
        "ram": _cell("RAMB36E1", {"DIADI": [3]}, {"DOADO": [4]}),
        "l1": _cell("LUT3", {"I0": [4]}, {"O": [5]}),
    }
    registered = dict(base, d=dsp(5, 6, "1"), l2=_cell("LUT4", {"I0": [6]}, {"O": [7]}),
                      ff1=_cell("FDRE", {"D": [7]}, {"Q": [8]}))
    t = longest_path(_netlist(registered))
    assert (t["lut_levels"], t["dsp"]) == (1, 0)
    combinational = dict(registered, d=dsp(5, 6, "0"))
    t = longest_path(_netlist(combinational))
    assert (t["lut_levels"], t["dsp"]) == (2, 1)
    assert t["delay_ns"] == pytest.approx(2 * DELAY_MODEL["lut"] + DELAY_MODEL["dsp"]
                                          + DELAY_MODEL["ff"], abs=0.01)


def test_a_design_without_logic_has_only_the_flip_flop_delay():
    t = longest_path(_netlist({"ff": _cell("FDRE", {"D": [3]}, {"Q": [3]})}))
    assert (t["lut_levels"], t["carry4"], t["delay_ns"]) == (0, 0, DELAY_MODEL["ff"])


def test_a_dsp_input_register_ends_the_path_into_it_and_starts_the_one_out():
    # ff0 -> l0 -> l1 -> DSP.A; DSP.CEA2 <- l0; DSP.P (no P register) -> l2 -> ff1. With AREG
    # the paths are ff0 -> l0 -> l1 -> (A register) and (A register) -> multiplier -> l2 -> ff1;
    # without it, one path through all of them.
    def cells(areg):
        return {
            "ff0": _cell("FDRE", {"D": [100]}, {"Q": [2]}),
            "l0": _cell("LUT3", {"I0": [2]}, {"O": [3]}),
            "l1": _cell("LUT3", {"I0": [3]}, {"O": [4]}),
            "d": _cell("DSP48E1", {"A": [4], "CEA2": [3]}, {"P": [5]}, PREG="0", AREG=areg),
            "l2": _cell("LUT4", {"I0": [5]}, {"O": [6]}),
            "ff1": _cell("FDRE", {"D": [6]}, {"Q": [7]}),
        }
    t = longest_path(_netlist(cells("1")))
    assert (t["lut_levels"], t["dsp"], t["max_lut_levels"]) == (1, 1, 2)
    assert t["delay_ns"] == pytest.approx(DELAY_MODEL["dsp"] + DELAY_MODEL["lut"]
                                          + DELAY_MODEL["ff"], abs=0.01)
    t = longest_path(_netlist(cells("0")))
    assert (t["lut_levels"], t["dsp"], t["max_lut_levels"]) == (3, 1, 3)
    assert t["delay_ns"] == pytest.approx(DELAY_MODEL["dsp"] + 3 * DELAY_MODEL["lut"]
                                          + DELAY_MODEL["ff"], abs=0.01)


def test_a_lut_ram_write_ends_the_path_and_its_read_address_goes_through():
    # ff0 -> l0 -> RAM.WE and RAM.D; ff0 -> RAM.DPRA0 -> DPO -> l1 -> ff1
    cells = {
        "ff0": _cell("FDRE", {"D": [100]}, {"Q": [2]}),
        "l0": _cell("LUT3", {"I0": [2]}, {"O": [3]}),
        "l00": _cell("LUT3", {"I0": [3]}, {"O": [4]}),
        "l01": _cell("LUT3", {"I0": [4]}, {"O": [5]}),
        "ram": _cell("RAM32X1D", {"WE": [5], "D": [5], "A0": [2], "DPRA0": [2]},
                     {"SPO": [6], "DPO": [7]}),
        "l1": _cell("LUT4", {"I0": [7]}, {"O": [8]}),
        "ff1": _cell("FDRE", {"D": [8]}, {"Q": [9]}),
    }
    t = longest_path(_netlist(cells))
    # the write path has 3 LUT levels (the most), the read path 1 LUT and the RAM read
    assert (t["lut_levels"], t["max_lut_levels"]) == (3, 3)
    assert t["delay_ns"] == pytest.approx(3 * DELAY_MODEL["lut"] + DELAY_MODEL["ff"], abs=0.01)
    cells["l01"] = _cell("LUT3", {"I0": [2]}, {"O": [5]})     # a short write path
    t = longest_path(_netlist(cells))
    assert (t["lut_levels"], t["max_lut_levels"]) == (2, 2)    # RAM read + l1
    assert t["delay_ns"] == pytest.approx(DELAY_MODEL["lutram"] + DELAY_MODEL["lut"]
                                          + DELAY_MODEL["ff"], abs=0.01)


def test_the_worst_path_is_named_from_the_launching_to_the_capturing_register():
    # ff_a (signal "count") -> lut x -> carry c0 -> carry c1 -> lut y -> ff_b (signal "wrap");
    # a shorter path ff_a -> lut s -> ff_c. Nets named as yosys keeps them: the user name wins
    # over a generated ($) one, a bit of a wide net is "name[i]", a net with only generated
    # names is None.
    cells = {
        "ff_a": _cell("FDRE", {"D": [100], "C": [1]}, {"Q": [2]}),
        "x": _cell("LUT3", {"I0": [2], "I1": [3]}, {"O": [4]}),
        "c0": _cell("CARRY4", {"S": [4, 4, 4, 4], "CI": ["0"]}, {"CO": [10, 11, 12, 5]}),
        "c1": _cell("CARRY4", {"S": [4, 4, 4, 4], "CI": [5]}, {"CO": [13, 14, 15, 6]}),
        "y": _cell("LUT2", {"I0": [6], "I1": [2]}, {"O": [7]}),
        "ff_b": _cell("FDRE", {"D": [7], "C": [1]}, {"Q": [8]}),
        "s": _cell("LUT1", {"I0": [2]}, {"O": [9]}),
        "ff_c": _cell("FDRE", {"D": [9], "C": [1]}, {"Q": [16]}),
        "ff_d": _cell("FDRE", {"D": [100], "C": [1]}, {"Q": [3]}),
    }
    nl = _netlist(cells)
    nl["modules"]["top"]["netnames"] = {
        "count": {"bits": [17, 2], "hide_varname": 0},
        "$abc$1$aiger$o2": {"bits": [2], "hide_varname": 1},
        "$abc$1$lut$4": {"bits": [4], "hide_varname": 1},
        "lt": {"bits": [5, 6], "hide_varname": 0},
        "fifo.w_level": {"bits": [6], "hide_varname": 0},
        "wrap_next": {"bits": [7], "hide_varname": 0},
        "wrap": {"bits": [8], "hide_varname": 0},
        "other": {"bits": [3], "hide_varname": 0},
    }
    t = longest_path(nl)
    assert (t["lut_levels"], t["carry4"]) == (2, 2)
    assert t["path"] == [
        {"cell": "FDRE", "net": "count[1]"},
        {"cell": "LUT3", "net": None},
        {"cell": "CARRY4", "net": "lt[0]"},
        {"cell": "CARRY4", "net": "lt[1]"},
        {"cell": "LUT2", "net": "wrap_next"},
        {"cell": "FDRE", "net": "wrap"},
    ]
    assert (t["start"], t["end"]) == ("count[1]", "wrap")


def test_a_path_launched_in_a_dsp_input_register_starts_at_the_dsp():
    # DSP48E1 with AREG (its A input registered): the path starts inside it, runs through the
    # multiplier to P ("prod") and a LUT into a flip-flop whose output is "flag"
    cells = {
        "ff0": _cell("FDRE", {"D": [100]}, {"Q": [2]}),
        "d": _cell("DSP48E1", {"A": [2], "CLK": [1]}, {"P": [3]}, PREG="0", AREG="1"),
        "l": _cell("LUT4", {"I0": [3]}, {"O": [4]}),
        "ff1": _cell("FDRE", {"D": [4]}, {"Q": [5]}),
    }
    nl = _netlist(cells)
    nl["modules"]["top"]["netnames"] = {"prod": {"bits": [3], "hide_varname": 0},
                                        "flag": {"bits": [5], "hide_varname": 0},
                                        "a": {"bits": [2], "hide_varname": 0}}
    t = longest_path(nl)
    assert t["path"] == [{"cell": "DSP48E1", "net": "prod"}, {"cell": "LUT4", "net": None},
                         {"cell": "FDRE", "net": "flag"}]
    assert (t["start"], t["end"]) == ("prod", "flag")
