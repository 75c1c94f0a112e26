import dataclasses

import pytest

from ilmpq.golden.formats import NumericSpec
from ilmpq.hdl.config import PRESETS, ConfigError, HWConfig, get_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_consistent(name):
    cfg = get_config(name)
    assert cfg.name == name
    assert cfg.lanes == cfg.lanes_lo + cfg.lanes_hi
    assert cfg.ratio == cfg.lanes_hi / cfg.lanes
    assert cfg.set_bits == cfg.tn * (4 * cfg.lanes_lo + 8 * cfg.lanes_hi)
    assert cfg.words_per_set * cfg.wbuf_word_bits >= cfg.set_bits
    assert isinstance(cfg.numeric, NumericSpec)
    assert 0 <= cfg.config_id < 2**32


def test_preset_geometry_targets():
    assert get_config("z020").macs_per_cycle >= 1000
    assert get_config("z045").macs_per_cycle >= 4000


def test_config_id_distinguishes_fields_but_not_name():
    base = get_config("tiny")
    assert base.replace(name="other").config_id == base.config_id
    for f in dataclasses.fields(base):
        if f.name in ("name", "shift_bits", "axi_addr_width", "lanes_lo_dsp", "axi_ports",
                      "read_fifo_beats", "weight_mac", "act_ports"):
            # implementation only: the same programs run on either build
            if f.name == "act_ports":
                wide = base.replace(tn=16, axi_ports=2)
                assert wide.replace(act_ports=2).config_id == wide.config_id
                continue
            if f.name in ("lanes_lo_dsp", "read_fifo_beats", "weight_mac"):
                v = getattr(base, f.name)
                other = {"lanes_lo_dsp": 2, "read_fifo_beats": 64, "weight_mac": 0}[f.name]
                assert other != v
                assert base.replace(**{f.name: other}).config_id == base.config_id, f.name
            continue
        if f.name == "post_groups":          # (tiny has one group a pixel: 16 lanes have 2)
            wide = base.replace(lanes_lo=12, lanes_hi=4)
            assert wide.replace(post_groups=2).config_id != wide.config_id
            continue
        v = getattr(base, f.name)
        other = {"act_bits": 5, "axi_data_width": 128, "acc_bits": 40, "mult_bits": 20,
                 "max_burst": 8, "axi_id_width": 6}.get(f.name, v * 2 if v else 1)
        assert base.replace(**{f.name: other}).config_id != base.config_id, f.name


@pytest.mark.parametrize("field,value,message", [
    ("tn", 0, r"^HWConfig\.tn = 0 is not allowed: tn must be in \[1, 64\]$"),
    ("lanes_hi", 0, r"lanes_hi must be in \[1, 1024\]"),
    ("act_bits", 6, r"act_bits must be one of \(4, 5, 8\)"),
    ("axi_data_width", 48, r"axi_data_width must be 32, 64 or 128"),
    ("acc_depth", 100, r"acc_depth must be a power of two"),
    ("max_burst", 32, r"max_burst must be 1, 2, 4, 8 or 16"),
    ("tn", 2.0, r"tn must be an integer"),
    ("wbuf_depth", 4, r"wbuf_depth = 4 is too small: one weight set needs"),
])
def test_invalid_fields_are_named(field, value, message):
    kwargs = {field: value}
    if field == "wbuf_depth":
        kwargs.update(lanes_lo=64, tn=16)
    with pytest.raises(ConfigError, match=message):
        HWConfig(**kwargs)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match=r"unknown hardware configuration 'z999'; presets are: "
                                          r"tiny, tiny2p, z020, z045"):
        get_config("z999")


def test_lanes_lo_dsp_is_validated_and_not_part_of_the_config_id():
    base = get_config("tiny")
    assert base.lanes_lo_dsp == 0
    assert base.replace(lanes_lo_dsp=2).config_id == base.config_id
    for preset in PRESETS.values():
        assert 0 <= preset.lanes_lo_dsp <= preset.lanes_lo and preset.lanes_lo_dsp % 2 == 0
    for bad in (1, -2, 4):
        with pytest.raises(ConfigError, match=rf"^HWConfig\.lanes_lo_dsp = {bad} is not allowed: "
                                              r"lanes_lo_dsp must be even and in \[0, "
                                              r"lanes_lo = 3\]$"):
            base.replace(lanes_lo_dsp=bad)


def test_memory_system_fields_are_validated_and_not_part_of_the_config_id():
    base = get_config("tiny")
    assert base.axi_ports == 1 and get_config("tiny2p").axi_ports == 2
    # the same programs run on every port count and FIFO depth
    assert get_config("tiny2p").config_id == base.config_id
    assert base.replace(axi_ports=4, read_fifo_beats=128).config_id == base.config_id
    for bad in (0, 3, 8):
        with pytest.raises(ConfigError, match=rf"^HWConfig\.axi_ports = {bad} is not allowed: "
                                              r"axi_ports must be 1, 2 or 4$"):
            base.replace(axi_ports=bad)
    for bad in (8, 5000):
        with pytest.raises(ConfigError, match=r"read_fifo_beats must be in \[max\(max_burst"):
            base.replace(read_fifo_beats=bad)
