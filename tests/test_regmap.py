"""The accelerator register map and its generated host views (Python, C, markdown, JSON).

The committed ``firmware/board/c/ilmpq_regs.h`` and ``docs/registers.md`` must equal what the
generator produces now; the header is compiled with ``-std=c99 -Wall -Wextra -Werror`` and a
small program prints every symbol and exercises the accessors, compared with the map in Python.
"""

import dataclasses
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from ilmpq.firmware.cli import main as cli_main
from ilmpq.firmware.regmap import (FORMATS, HardwareIdentity, generate, generate_c_header,
                                   generate_markdown, generate_python, load)
from ilmpq.golden.errors import IlmpqTypeError, IlmpqValueError
from ilmpq.hdl.config import PRESETS, ConfigError, get_config
from ilmpq.hdl.csr import Access, RegisterMap, RegisterMapError
from ilmpq.hdl.regmap import ID_MAGIC, accelerator_regmap, version_tuple
from ilmpq.hdl.status import ErrorCode

ROOT = Path(__file__).resolve().parents[1]
Z020 = get_config("z020")


def regenerate_hint(fmt, path):
    return (f"{path} is out of date; regenerate it with: ilmpq regmap --config z020 --format "
            f"{fmt} -o {path}")


@pytest.mark.parametrize("fmt,path", [("c", "firmware/board/c/ilmpq_regs.h"),
                                      ("md", "docs/registers.md")])
def test_generated_files_are_up_to_date(fmt, path):
    assert (ROOT / path).read_text() == generate(Z020, fmt), regenerate_hint(fmt, path)


# -- the map -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_accelerator_map_layout(name):
    cfg = get_config(name)
    m = accelerator_regmap(cfg)
    assert m.addr_width == 12
    assert m["id"].reset == ID_MAGIC == int.from_bytes(b"ILMQ", "big")
    assert m["config_id"].reset == cfg.config_id
    g = {k: int(v) for r in ("geometry", "datapath", "buffers")
         for k, v in m.decode(r, m[r].reset).items()}
    assert g == {"lanes_lo": cfg.lanes_lo, "lanes_hi": cfg.lanes_hi, "tn": cfg.tn,
                 "act_bits": cfg.act_bits, "acc_bits": cfg.acc_bits, "mult_bits": cfg.mult_bits,
                 "wbuf_word_beats": cfg.wbuf_word_beats,
                 "wbuf_depth_log2": cfg.wbuf_depth.bit_length() - 1,
                 "act_depth_log2": cfg.act_depth.bit_length() - 1,
                 "acc_depth_log2": cfg.acc_depth.bit_length() - 1,
                 "mac": int(cfg.weight_mac and cfg.axi_data_width == 64)}
    assert tuple(m.decode("version", m["version"].reset).values()) == version_tuple()[::-1]
    kinds = {(r.name, f.name): f.access for r in m for f in r.fields}
    assert kinds[("ctrl", "start")] is kinds[("ctrl", "soft_reset")] is Access.W1P
    assert kinds[("ctrl", "irq_en")] is Access.RW and kinds[("status", "done")] is Access.W1C
    assert kinds[("status", "busy")] is kinds[("status", "error")] is Access.RO
    assert m.field("status", "error_code").enum is ErrorCode
    assert m.field("status", "error_code").width == ErrorCode.as_shape().width
    for reg in ("prog_addr", "prog_len", "win_base", "win_limit", "watchdog"):
        assert [f.access for f in m[reg].fields] == [Access.RW] and m[reg].fields[0].width == 32
    assert [r.name for r in m.counters] == [
        "cycles", "pe_busy", "stall_weight", "stall_act", "stall_store", "stall_dep",
        "bytes_read", "bytes_written", "instructions"]
    for r in m.counters:
        assert 0x100 <= r.offset < 0x200 and r.offset % 8 == 0
        inc = r.fields[0].inc_width
        assert (1 << inc) - 1 >= (cfg.beat_bytes if r.name.startswith("bytes") else 1)
    assert RegisterMap.from_dict(m.to_dict()) == m


def test_byte_counter_width_follows_axi_width():
    m = accelerator_regmap(get_config("tiny").replace(axi_data_width=128))
    assert m.field("bytes_read", "count").inc_width == 5   # up to 16 bytes per cycle


def test_version_tuple():
    assert version_tuple("1.2.3rc1") == (1, 2, 3)
    with pytest.raises(RegisterMapError, match=r"^package version '1\.2' is not of the form "
                                               r"MAJOR\.MINOR\.PATCH$"):
        version_tuple("1.2")
    with pytest.raises(RegisterMapError, match=r"each part must be < 256"):
        version_tuple("1.256.0")


def test_encode_keeps_other_fields_and_decode_names_error_codes():
    m = accelerator_regmap(Z020)
    ctrl = m.encode("ctrl", irq_en=1)
    assert m.encode("ctrl", ctrl, start=1) == ctrl | m.field("ctrl", "start").mask
    status = m.encode("status", busy=0, done=1, error=1, error_code=ErrorCode.WPKG_CRC)
    assert m.decode("status", status) == {"busy": 0, "done": 1, "error": 1,
                                          "bus_abandoned": 0,
                                          "error_code": ErrorCode.WPKG_CRC}
    with pytest.raises(RegisterMapError, match=r"^register map 'ilmpq' has no register 'ctl'; "
                                               r"registers are: id, version, "):
        m.encode("ctl", start=1)
    with pytest.raises(RegisterMapError, match=r"^register 'cycles' is a counter"):
        m.encode("cycles", count=1)
    assert m.offset("cycles") == m.offset("cycles_lo") == m.offset("cycles_hi") - 4
    assert m.word_at(m.offset("cycles_hi") + 2) == (m["cycles"], "cycles_hi")
    assert m.word_at(0xFFC) is None


# -- identification ------------------------------------------------------------------------------

def test_hardware_identity_explains_a_mismatch():
    tiny = HardwareIdentity.expected(accelerator_regmap(get_config("tiny")))
    z020 = HardwareIdentity.expected(accelerator_regmap(Z020))
    assert z020.mismatch(z020) is None
    msg = tiny.mismatch(z020)
    assert msg.startswith("the bitstream is built for another configuration: hardware has "
                          "3 lo + 1 hi lanes x tn=4")
    assert "the program needs 56 lo + 8 hi lanes x tn=16" in msg
    assert f"{Z020.config_id:#010x}" in msg
    assert dataclasses.replace(z020, magic=0xFFFF_FFFF).mismatch(z020) == (
        f"no ilmpq accelerator found: ID reads 0xffffffff, expected {ID_MAGIC:#010x}")
    newer = dataclasses.replace(z020, version=(z020.version[0] + 1, 0, 0))
    assert "incompatible" in newer.mismatch(z020)


# -- generated Python and JSON -------------------------------------------------------------------

def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_python_module(tmp_path):
    m = accelerator_regmap(get_config("tiny"))
    path = tmp_path / "regs_tiny.py"
    path.write_text(generate_python(m))
    mod = _import(path, "regs_tiny")
    symbols = m.symbols()
    assert len(symbols) > 150
    for sym, value, _what in symbols:
        assert getattr(mod, sym) == value, sym
    assert mod.CTRL_OFFSET == 0x020 and mod.STATUS_DONE_MASK == 0b10
    assert {e.name: e.value for e in mod.ErrorCode} == {e.name: e.value for e in ErrorCode}
    assert load(mod) == m and load(path) == m and load(str(path)) == m
    loaded = load(path)
    assert loaded.enums["ErrorCode"] == m.enums["ErrorCode"]     # member docs survive
    assert "import ilmpq" not in path.read_text()                  # self-contained


def test_json_roundtrip(tmp_path):
    m = accelerator_regmap(Z020)
    path = tmp_path / "regs.json"
    path.write_text(generate(m, "json"))
    assert load(path) == m


def test_load_sources_and_errors(tmp_path):
    tiny = get_config("tiny")
    assert load("tiny") == load(tiny) == accelerator_regmap(tiny)
    m = load("z020")
    assert load(m) is m and load(m.to_dict()) == m
    with pytest.raises(IlmpqTypeError, match=r"^cannot load a register map from 42"):
        load(42)
    with pytest.raises(ConfigError, match=r"unknown hardware configuration 'nope'"):
        load("nope")
    bad = tmp_path / "bad.py"
    bad.write_text("X = 1\n")
    with pytest.raises(RegisterMapError, match=r"bad\.py has no 'REGMAP = \{\.\.\.\}' "
                                               r"assignment"):
        load(bad)
    bad.write_text("REGMAP = dict(a=1)\n")
    with pytest.raises(RegisterMapError, match=r"REGMAP is not a plain literal"):
        load(bad)
    with pytest.raises(RegisterMapError, match=r"^malformed register map data: KeyError"):
        load({"name": "x"})
    data = m.to_dict()
    data["registers"][0]["fields"][0]["reset"] = -1
    with pytest.raises(RegisterMapError, match=r"reset = -1 is out of range"):
        load(data)
    with pytest.raises(IlmpqValueError, match=r"^unknown register map format 'rst'; formats "
                                              r"are: py, c, md, json$"):
        generate(m, "rst")


# -- markdown ------------------------------------------------------------------------------------

def test_markdown_has_a_table_per_register():
    m = accelerator_regmap(Z020)
    text = generate_markdown(m)
    lines = text.splitlines()
    for reg in m:
        assert f"### {reg.name.upper()}" in lines
        if not reg.is_counter:
            for f in reg.fields:
                assert any(line.startswith("| ") and f"| {f.name} | {f.access.name} |" in line
                           for line in lines), (reg.name, f.name)
    for e in ErrorCode:
        assert any(line.startswith(f"| `{e.value:#04x}` | {e.name} |") for line in lines)
    assert f"| ILMPQ_CONFIG_ID | `{Z020.config_id:#010x}` |" in text


# -- C header ------------------------------------------------------------------------------------

def _c_program(m: RegisterMap, rng) -> tuple[str, list[str]]:
    """A C program printing every symbol and accessor results; the lines Python expects."""
    body, expect = [], []
    for sym, value, _what in m.symbols():
        if isinstance(value, str):
            body.append(f'printf("%s\\n", ILMPQ_{sym});')
            expect.append(value)
        else:
            body.append(f'printf("%llu\\n", (unsigned long long)ILMPQ_{sym});')
            expect.append(str(value))
    for reg in m:
        if reg.is_counter:
            continue
        word = int(rng.integers(0, 2**32))
        for f in reg.fields:
            new = int(rng.integers(0, 2**32))   # wider than the field: _set masks it
            fn = f"ilmpq_{reg.name}_{f.name}"
            body.append(f'printf("%lu\\n", (unsigned long){fn}_get({word}u));')
            body.append(f'printf("%lu\\n", (unsigned long){fn}_set({word}u, {new}u));')
            expect.append(str(int(m.decode(reg.name, word)[f.name])))
            expect.append(str(m.encode(reg.name, word, **{f.name: new & ((1 << f.width) - 1)})))
    lo, hi = int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32))
    body += [
        f"window[ILMPQ_CYCLES_LO_OFFSET / 4u] = {lo}u;",
        f"window[ILMPQ_CYCLES_HI_OFFSET / 4u] = {hi}u;",
        'printf("%llu\\n", (unsigned long long)ilmpq_read_counter(window, '
        'ILMPQ_CYCLES_LO_OFFSET));',
        "ilmpq_write32(window, ILMPQ_PROG_ADDR_OFFSET, 0x1000u);",
        'printf("%lu\\n", (unsigned long)ilmpq_read32(window, ILMPQ_PROG_ADDR_OFFSET));',
        'printf("%s\\n", ilmpq_error_code_name(ILMPQ_STATUS_ERROR_CODE_MASK >> 8));',
        'printf("%s\\n", ilmpq_error_code_name(ILMPQ_ERROR_CODE_TIMEOUT));',
    ]
    expect += [str(hi << 32 | lo), str(0x1000), "UNKNOWN", "TIMEOUT"]
    src = "\n".join([
        "#include <stdio.h>", "#include <stdint.h>", '#include "ilmpq_regs.h"', "",
        "static uint32_t window[ILMPQ_CSR_SIZE / 4u];", "",
        "int main(void)", "{", *(f"    {line}" for line in body), "    return 0;", "}", ""])
    return src, expect


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler (gcc) on PATH")
def test_c_header_compiles_and_matches_the_map(tmp_path, rng):
    m = accelerator_regmap(Z020)
    header = ROOT / "firmware/board/c/ilmpq_regs.h"
    assert header.read_text() == generate_c_header(m), regenerate_hint("c", header)
    src, expect = _c_program(m, rng)
    (tmp_path / "check.c").write_text(src)
    exe = tmp_path / "check"
    cc = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                         "-I", str(header.parent), str(tmp_path / "check.c"), "-o", str(exe)],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines() == expect
    if shutil.which("g++"):   # the header is C++-clean too
        cxx = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror",
                              "-fsyntax-only", "-x", "c++", "-I", str(header.parent),
                              str(tmp_path / "check.c")], capture_output=True, text=True)
        assert cxx.returncode == 0, cxx.stderr


# -- CLI -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_writes_each_format(tmp_path, fmt):
    out = tmp_path / f"regs.{fmt}"
    assert cli_main(["regmap", "--config", "tiny", "--format", fmt, "-o", str(out)]) == 0
    assert out.read_text() == generate(get_config("tiny"), fmt)


def test_cli_stdout_default_config_and_errors(capsys):
    assert cli_main(["regmap", "--format", "c"]) == 0
    assert capsys.readouterr().out == generate(Z020, "c")      # default --config z020
    assert cli_main(["regmap", "--config", "nope", "--format", "c"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown hardware configuration 'nope'; presets are: "
        f"{', '.join(sorted(PRESETS))}\n")
    with pytest.raises(SystemExit) as exc:
        cli_main(["regmap", "--format", "vhdl"])
    assert exc.value.code == 2
    assert "invalid choice: 'vhdl'" in capsys.readouterr().err
