"""The bad-input corpus through the ``ilmpq`` command line, one subprocess per case.

Every case must end with exit status 2 and exactly one ``error: ...`` line, the last one on
stderr, that names the problem (the expected fragments) -- argparse's usage or a command's
progress messages may precede it -- and never a Python traceback. Files come from
:func:`corpus.build_corpus` (each a valid artefact with one thing wrong).
"""

import os
import re
import resource
import subprocess
import sys

import pytest

from corpus import build_corpus
from ilmpq.golden.model import QModel

# (id, argv with {name} placeholders for corpus paths and {out} for a fresh output path,
#  fragments the error line must contain)
CASES = [
    # -- top level ------------------------------------------------------------------------------
    ("no_command", [], ["required", "COMMAND"]),
    ("unknown_command", ["frobnicate"], ["invalid choice", "frobnicate"]),
    # -- golden ---------------------------------------------------------------------------------
    ("golden_negative_seed", ["golden", "--seed", "-1"],
     ["--seed must be a non-negative integer, not -1"]),
    ("golden_seed_not_int", ["golden", "--seed", "abc"], ["invalid int value: 'abc'"]),
    ("golden_ratio_out_of_range", ["golden", "--ratio", "5"], ["ratio 5", "[0, 1]"]),
    ("golden_input_hw_0", ["golden", "--input-hw", "0"], ["--input-hw", "positive", "0"]),
    ("golden_resnet_too_small", ["golden", "--model", "resnet18", "--input-hw", "8"],
     ["input_hw", ">= 32", "8"]),
    ("golden_act_bits", ["golden", "--act-bits", "9"], ["--act-bits", "invalid choice: 9"]),
    ("golden_save_into_missing_dir", ["golden", "--input-hw", "4", "--save",
                                      "{missing_dir}/m.npz"], ["No such file or directory"]),
    # -- regmap ---------------------------------------------------------------------------------
    ("regmap_unknown_config", ["regmap", "--format", "c", "--config", "z7000"],
     ["unknown hardware configuration 'z7000'", "tiny, tiny2p, z020, z045"]),
    ("regmap_unknown_format", ["regmap", "--format", "vhdl"], ["--format", "invalid choice"]),
    ("regmap_output_is_directory", ["regmap", "--format", "c", "-o", "{dir}"],
     ["Is a directory"]),
    # -- quantize: ONNX files -------------------------------------------------------------------
    ("quantize_missing_onnx", ["quantize", "{dir}/nope.onnx", "--calib", "{calib.npy}",
                               "-o", "{out}"], ["No such file or directory", "nope.onnx"]),
    ("quantize_onnx_is_directory", ["quantize", "{a_directory.onnx}", "--calib",
                                    "{calib.npy}", "-o", "{out}"], ["Is a directory"]),
    ("quantize_empty_onnx", ["quantize", "{empty.onnx}", "--calib", "{calib.npy}", "-o",
                             "{out}"], ["empty.onnx", "empty, not an ONNX model"]),
    ("quantize_truncated_onnx", ["quantize", "{truncated.onnx}", "--calib", "{calib.npy}", "-o",
                                 "{out}"], ["truncated.onnx", "not a valid ONNX model"]),
    ("quantize_non_onnx_bytes", ["quantize", "{not_onnx.onnx}", "--calib", "{calib.npy}", "-o",
                                 "{out}"], ["not_onnx.onnx", "ONNX"]),
    ("quantize_text_file", ["quantize", "{text.onnx}", "--calib", "{calib.npy}", "-o",
                            "{out}"], ["text.onnx", "ONNX"]),
    ("quantize_old_opset", ["quantize", "{opset3.onnx}", "--calib", "{calib.npy}", "-o",
                            "{out}"], ["opset 3 is not supported", "opsets 7 to"]),
    ("quantize_future_opset", ["quantize", "{opset99.onnx}", "--calib", "{calib.npy}", "-o",
                               "{out}"], ["opset 99 is not supported"]),
    ("quantize_unsupported_op", ["quantize", "{softsign.onnx}", "--calib", "{calib.npy}", "-o",
                                 "{out}"], ["'Softsign' is not supported", "supported ops: Conv"]),
    ("quantize_dynamic_shape", ["quantize", "{dynamic.onnx}", "--calib", "{calib.npy}", "-o",
                                "{out}"], ["dynamic H dimension", "only the batch"]),
    ("quantize_huge_dimensions", ["quantize", "{huge.onnx}", "--calib", "{calib.npy}", "-o",
                                  "{out}"], ["1048576", "(4, 3, 8, 8)"]),
    ("quantize_missing_initializer", ["quantize", "{no_weight.onnx}", "--calib", "{calib.npy}",
                                      "-o", "{out}"], ["reads 'w'", "missing initializer"]),
    # -- quantize: calibration data and options -------------------------------------------------
    ("quantize_calib_missing", ["quantize", "{good.onnx}", "--calib", "{dir}/c.npy", "-o",
                                "{out}"], ["No such file or directory"]),
    ("quantize_calib_not_npy", ["quantize", "{good.onnx}", "--calib", "{good.onnx}", "-o",
                                "{out}"], ["not a readable .npy array", "no .npy header"]),
    ("quantize_calib_npz", ["quantize", "{good.onnx}", "--calib", "{arrays.npz}", "-o",
                            "{out}"], [".npz archive", "single .npy array"]),
    ("quantize_calib_pickled", ["quantize", "{good.onnx}", "--calib", "{pickled.npy}", "-o",
                                "{out}"], ["pickled.npy", "Object arrays cannot be loaded"]),
    ("quantize_calib_shape", ["quantize", "{good.onnx}", "--calib", "{calib_shape.npy}", "-o",
                              "{out}"], ["must have shape (N, 3, 8, 8)", "(4, 3, 9, 9)"]),
    ("quantize_calib_nan", ["quantize", "{good.onnx}", "--calib", "{calib_nan.npy}", "-o",
                            "{out}"], ["NaN"]),
    ("quantize_calib_negative", ["quantize", "{good.onnx}", "--calib", "{calib_negative.npy}",
                                 "-o", "{out}"], ["raw pixels in [0, 255]"]),
    ("quantize_ratio_range", ["quantize", "default", "-o", "{out}", "--ratio", "2"],
     ["ratio = 2 is not allowed", "[0, 1]"]),
    ("quantize_ratio_text", ["quantize", "default", "-o", "{out}", "--ratio", "1/0"],
     ["ratio '1/0' is not a number"]),
    ("quantize_ratio_and_config", ["quantize", "default", "-o", "{out}", "--ratio", "0.5",
                                   "--config", "tiny"], ["not allowed with argument --ratio"]),
    ("quantize_act_bits", ["quantize", "default", "-o", "{out}", "--act-bits", "3"],
     ["invalid choice: 3", "4, 5, 8"]),
    ("quantize_act_clip", ["quantize", "default", "-o", "{out}", "--act-clip", "200"],
     ["percentile 200.0", "(0, 100]"]),
    ("quantize_input_std_zero", ["quantize", "{good.onnx}", "--calib", "{calib.npy}", "-o",
                                 "{out}", "--input-std", "0"], ["input_std must be positive"]),
    ("quantize_input_mean_count", ["quantize", "default", "-o", "{out}", "--input-mean",
                                   "1,2,3,4"], ["one value per input channel", "4 values"]),
    ("quantize_output_is_directory", ["quantize", "default", "-o", "{dir}"], ["Is a directory"]),
    # -- quantize: special files, lying headers, hostile ONNX content (issue 19 items 3, 5, 6) ---
    ("quantize_onnx_fifo", ["quantize", "{fifo}", "--calib", "{calib.npy}", "-o", "{out}"],
     ["fifo.bin", "is a FIFO (named pipe), not a regular file"]),
    ("quantize_onnx_dev_zero", ["quantize", "/dev/zero", "--calib", "{calib.npy}", "-o", "{out}"],
     ["/dev/zero", "is a character device, not a regular file"]),
    ("quantize_calib_fifo", ["quantize", "{good.onnx}", "--calib", "{fifo}", "-o", "{out}"],
     ["fifo.bin", "is a FIFO (named pipe)"]),
    ("quantize_calib_dev_zero", ["quantize", "{good.onnx}", "--calib", "/dev/zero", "-o",
                                 "{out}"], ["/dev/zero", "is a character device"]),
    ("quantize_calib_tib_header", ["quantize", "{good.onnx}", "--calib",
                                   "{calib_tib_header.npy}", "-o", "{out}"],
     ["header declares a float64 array of shape (1048576, 3, 4096, 4096)",
      "holds only 64 bytes"]),
    ("quantize_string_weight", ["quantize", "{bad_string_weight.onnx}", "--calib",
                                "{calib.npy}", "-o", "{out}"],
     ["weight 'w' has element type", "STRING", "numeric"]),
    ("quantize_zero_output_channels", ["quantize", "{zero_channels.onnx}", "--calib",
                                       "{calib.npy}", "-o", "{out}"],
     ["weight of shape [0, 3, 3, 3] is empty"]),
    ("quantize_gemm_alpha_0", ["quantize", "{gemm_alpha0.onnx}", "--calib", "{calib.npy}",
                               "-o", "{out}"], ["(Gemm): alpha = 0", "alpha must be nonzero"]),
    ("quantize_pads_larger_than_kernel", ["quantize", "{conv_pads_4.onnx}", "--calib",
                                          "{calib.npy}", "-o", "{out}"],
     ["padding (4, 1, 1, 1) must be smaller than the 3x3 kernel"]),
    ("quantize_deeply_nested_metadata", ["quantize", "{deep_metadata.onnx}", "--calib",
                                         "{calib.npy}", "-o", "{out}"],
     ["ilmpq.input_mean", "JSON nested 100000 levels deep"]),
    ("quantize_external_initializer_dotdot", ["quantize", "{ext_init_dotdot.onnx}", "--calib",
                                              "{calib.npy}", "-o", "{out}"],
     ["initializer 'w'", "'../secret.bin' leads out of the model's directory"]),
    ("quantize_external_constant_dotdot", ["quantize", "{ext_const_dotdot.onnx}", "--calib",
                                           "{calib.npy}", "-o", "{out}"],
     ["(Constant) attribute 'value'", "'../secret.bin' leads out"]),
    ("quantize_external_constant_absolute", ["quantize", "{ext_const_abs.onnx}", "--calib",
                                             "{calib.npy}", "-o", "{out}"],
     ["(Constant) attribute 'value'", "is an absolute path"]),
    ("quantize_external_constant_dev_zero", ["quantize", "{ext_const_devzero.onnx}", "--calib",
                                             "{calib.npy}", "-o", "{out}"],
     ["'/dev/zero' is an absolute path"]),
    ("quantize_external_constant_symlink", ["quantize", "{ext_const_symlink.onnx}", "--calib",
                                            "{calib.npy}", "-o", "{out}"],
     ["'link.bin' resolves to", "secret.bin, outside the model's directory"]),
    ("quantize_external_attribute_dotdot", ["quantize", "{ext_attr_dotdot.onnx}", "--calib",
                                            "{calib.npy}", "-o", "{out}"],
     ["(ConstantOfShape) attribute 'value'", "'../secret.bin' leads out"]),
    ("quantize_external_constant_fifo", ["quantize", "{ext_const_fifo.onnx}", "--calib",
                                         "{calib.npy}", "-o", "{out}"],
     ["(Constant) attribute 'value'", "fifo.bin: is a FIFO"]),
    ("quantize_external_length_past_end", ["quantize", "{ext_length.onnx}", "--calib",
                                           "{calib.npy}", "-o", "{out}"],
     ["external data bytes [0, 4096) are not inside 'weights.bin' (432 bytes)"]),
    ("quantize_external_offset_past_end", ["quantize", "{ext_offset.onnx}", "--calib",
                                           "{calib.npy}", "-o", "{out}"],
     ["external data bytes [400, 832) are not inside 'weights.bin'"]),
    ("quantize_no_output", ["quantize", "default"], ["required", "-o/--output"]),
    # -- compile: quantized-model files ---------------------------------------------------------
    ("compile_missing_model", ["compile", "{dir}/m.npz", "-o", "{out}"],
     ["No such file or directory"]),
    ("compile_onnx_instead", ["compile", "{good.onnx}", "-o", "{out}"],
     ["not a readable ilmpq model file", "not a ZIP archive"]),
    ("compile_not_zip", ["compile", "{model_not_zip.npz}", "-o", "{out}"],
     ["not a readable ilmpq model file", "not a ZIP archive"]),
    ("compile_single_npy", ["compile", "{model_single.npy}", "-o", "{out}"],
     ["single .npy array, not an .npz archive"]),
    ("compile_truncated_model", ["compile", "{model_truncated.npz}", "-o", "{out}"],
     ["not a readable ilmpq model file"]),
    ("compile_bitflip_model", ["compile", "{model_bitflip.npz}", "-o", "{out}"],
     ["Bad CRC-32", "c1.weight"]),
    ("compile_encrypted_flag", ["compile", "{model_encrypted_flag.npz}", "-o", "{out}"],
     ["not a readable ilmpq model file", "encrypted"]),
    ("compile_newer_version", ["compile", "{model_v99.npz}", "-o", "{out}"],
     ["format version 99 is newer", "version 1"]),
    ("compile_other_format", ["compile", "{model_format.npz}", "-o", "{out}"],
     ["format name is 'keras-h5'", "ilmpq-qmodel"]),
    ("compile_weight_out_of_range", ["compile", "{model_weight_range.npz}", "-o", "{out}"],
     ["= 9 is outside the range", "LO (4-bit): [-7, 7]"]),
    ("compile_weight_dtype", ["compile", "{model_weight_dtype.npz}", "-o", "{out}"],
     ["'c1.weight' is float32", "must be int8"]),
    ("compile_shift_range", ["compile", "{model_shift_range.npz}", "-o", "{out}"],
     ["shift[0] = 200", "[1, 47]"]),
    ("compile_precision_share", ["compile", "{model_all_hi.npz}", "-o", "{out}"],
     ["5 of 5 rows are HI", "needs exactly"]),
    ("compile_missing_array", ["compile", "{model_missing_array.npz}", "-o", "{out}"],
     ["missing array 'c2.mult'"]),
    ("compile_extra_array", ["compile", "{model_extra_array.npz}", "-o", "{out}"],
     ["unexpected array 'payload'"]),
    ("compile_huge_model", ["compile", "{model_huge.npz}", "-o", "{out}"],
     ["does not fit the 32-bit address space", "tensor 'input'"]),
    ("compile_act_bits_mismatch", ["compile", "{model_a4.npz}", "-o", "{out}"],
     ["4-bit activations", "act_bits = 8"]),
    ("compile_model_fifo", ["compile", "{fifo}", "-o", "{out}"], ["is a FIFO (named pipe)"]),
    ("compile_model_dev_zero", ["compile", "/dev/zero", "-o", "{out}"],
     ["/dev/zero: is a character device"]),
    ("compile_tib_header_member", ["compile", "{model_tib_header.npz}", "-o", "{out}"],
     ["member 'c1.weight.npy': the header declares a int8 array of shape "
      "(1048576, 1024, 1024, 1)"]),
    ("compile_deflate_size_claim", ["compile", "{model_deflate_claim.npz}", "-o", "{out}"],
     ["member 'c1.weight.npy': claims 4294967280 bytes", "more than deflate can expand"]),
    ("compile_deeply_nested_json", ["compile", "{model_deep_json.npz}", "-o", "{out}"],
     ["JSON nested 100001 levels deep; at most 64"]),
    ("compile_scale_nan", ["compile", "{model_scale_nan.npz}", "-o", "{out}"],
     ["NaN is not a valid JSON number"]),
    ("compile_scale_overflow", ["compile", "{model_scale_inf.npz}", "-o", "{out}"],
     ["number 1e400 overflows a float"]),
    ("compile_ratio_infinity", ["compile", "{model_ratio_inf.npz}", "-o", "{out}"],
     ["Infinity is not a valid JSON number"]),
    ("compile_pads_larger_than_kernel", ["compile", "{model_pad_kernel.npz}", "-o", "{out}"],
     ["layer 'c2' (conv): padding (1, 1, 1, 1) must be smaller than the 1x1 kernel"]),
    ("compile_unknown_config", ["compile", "{model.npz}", "--config", "z7000", "-o", "{out}"],
     ["--config", "invalid choice: 'z7000'"]),
    ("compile_output_is_file", ["compile", "{model.npz}", "-o", "{a_file}"],
     ["File exists", "a_file"]),
    ("compile_output_under_file", ["compile", "{model.npz}", "-o", "{a_file}/sub"],
     ["Not a directory"]),
    # -- simulate -------------------------------------------------------------------------------
    ("simulate_images_missing", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                                 "{dir}/i.npy"], ["cannot read images", "No such file"]),
    ("simulate_images_not_npy", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                                 "{model.npz}"], ["is not a .npy array file"]),
    ("simulate_images_truncated", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                                   "{images_truncated.npy}"], ["cannot read images"]),
    ("simulate_images_pickled", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                                 "{pickled.npy}"], ["Object arrays cannot be loaded"]),
    ("simulate_images_shape", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                               "{images_shape.npy}"], ["(2, 3, 5, 5)", "(N, 3, 4, 4)"]),
    ("simulate_images_float", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                               "{images_float.npy}"], ["integer pixels in [0, 255]"]),
    ("simulate_images_out_of_range", ["simulate", "{model.npz}", "--sim", "amaranth",
                                      "--images", "{images_300.npy}"],
     ["integer pixels in [0, 255]"]),
    ("simulate_images_empty", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                               "{images_empty.npy}"], ["holds no images"]),
    ("simulate_images_fifo", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                              "{fifo}"], ["is a FIFO (named pipe)"]),
    ("simulate_images_dev_zero", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                                  "/dev/zero"], ["/dev/zero: is a character device"]),
    ("simulate_images_tib_header", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                                    "{images_tib_header.npy}"],
     ["header declares a uint8 array of shape (274877906944, 3, 4, 4)", "holds only 16 bytes"]),
    ("simulate_model_fifo", ["simulate", "{fifo}", "--sim", "amaranth"],
     ["is a FIFO (named pipe)"]),
    ("simulate_count_0", ["simulate", "{model.npz}", "--sim", "amaranth", "--count", "0"],
     ["--count must be at least 1"]),
    ("simulate_negative_seed", ["simulate", "{model.npz}", "--sim", "amaranth", "--seed", "-5"],
     ["--seed must be a non-negative integer, not -5"]),
    ("simulate_random_mem_on_verilator", ["simulate", "{model.npz}", "--sim", "verilator",
                                          "--mem", "random"], ["--mem random needs --sim"]),
    ("simulate_unknown_simulator", ["simulate", "{model.npz}", "--sim", "iverilog"],
     ["--sim", "invalid choice: 'iverilog'"]),
    ("simulate_corrupt_model", ["simulate", "{model_bitflip.npz}", "--sim", "amaranth"],
     ["Bad CRC-32"]),
    # -- run ------------------------------------------------------------------------------------
    ("run_images_0", ["run", "--images", "0"], ["--images must be at least 1"]),
    ("run_images_negative", ["run", "--images", "-3", "--sim", "none"],
     ["--images must be at least 1"]),
    ("run_unknown_config", ["run", "--config", "z7000"], ["invalid choice: 'z7000'"]),
    ("run_act_bits", ["run", "--act-bits", "6"], ["invalid choice: 6"]),
    # -- verilog and build ----------------------------------------------------------------------
    ("verilog_unknown_config", ["verilog", "--config", "z7000", "-o", "{out}"],
     ["unknown hardware configuration 'z7000'"]),
    ("verilog_bad_module_name", ["verilog", "--config", "tiny", "-o", "{out}", "--name", "1x"],
     ["module name '1x' is not allowed"]),
    ("verilog_output_is_file", ["verilog", "--config", "tiny", "-o", "{a_file}"],
     ["File exists"]),
    ("build_unknown_board", ["build", "--board", "zedboard", "-o", "{out}"],
     ["--board", "invalid choice: 'zedboard'"]),
    ("build_unknown_config", ["build", "--board", "zc706", "--config", "z7000", "--plan-only",
                              "--no-estimate", "-o", "{out}"],
     ["unknown hardware configuration 'z7000'"]),
    ("build_clock_out_of_range", ["build", "--board", "zc706", "--plan-only", "--no-estimate",
                                  "--fclk-mhz", "900", "-o", "{out}"],
     ["fclk_mhz = 900.0 is not allowed", "10 to 250 MHz"]),
    ("build_negative_estimate_timeout", ["build", "--board", "zc706", "--plan-only",
                                         "--estimate-timeout", "-1", "-o", "{out}"],
     ["--estimate-timeout -1.0 is not allowed"]),
    ("build_bad_design_name", ["build", "--board", "zc706", "--plan-only", "--no-estimate",
                               "--name", "a b", "-o", "{out}"], ["design name 'a b'"]),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    return str(d), build_corpus(str(d))


def _argv(template, corpus_dir, files, out):
    subs = dict(files)
    subs.update(dir=corpus_dir, out=out, missing_dir=os.path.join(corpus_dir, "no", "such"))
    return [re.sub(r"\{([^{}]+)\}", lambda m: subs[m.group(1)], a) for a in template]


def _run_cli(argv, cwd, *, memory_limit=None):
    env = dict(os.environ, AMARANTH_USE_YOSYS="builtin", OPENBLAS_NUM_THREADS="1")
    env.pop("ILMPQ_DEBUG", None)

    def limit():   # in the child only: its whole address space, imports included
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run([sys.executable, "-m", "ilmpq.firmware.cli", *argv], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit if memory_limit else None)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cli_rejects_bad_input(corpus, tmp_path, case):
    name, template, fragments = case
    corpus_dir, files = corpus
    argv = _argv(template, corpus_dir, files, str(tmp_path / "out"))
    proc = _run_cli(argv, tmp_path)
    _check_error(name, proc, fragments)


def _check_error(name, proc, fragments):
    err = proc.stderr
    assert "Traceback" not in err, f"{name}: traceback instead of an error line:\n{err}"
    assert proc.returncode == 2, f"{name}: exit status {proc.returncode}\n{err}"
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, f"{name}: expected one 'error:' line, got:\n{err}"
    # the error line ends the output (argparse's usage or a command's progress may precede it)
    assert lines[-1] == errors[0], f"{name}: the error line is not the last line:\n{err}"
    for fragment in fragments:
        assert fragment in errors[0], f"{name}: {fragment!r} not in {errors[0]!r}"


# -- peak memory: small files with large headers, many calibration images ------------------------

#: Address-space limit of the child process: a Python with numpy, onnx and amaranth imported
#: runs every command below in 512 MiB; the files declare 3 GiB.
MEMORY_LIMIT = 1 << 30

MEMORY_CASES = [
    ("compile_4g_member_header", ["compile", "{model_4g_header.npz}", "-o", "{out}"],
     ["member 'c1.weight.npy': the header declares a int8 array of shape (1048576, 1024, 3, 1) "
      "(3221225472 bytes)"]),
    ("quantize_calib_4g_header", ["quantize", "{good.onnx}", "--calib", "{calib_4g_header.npy}",
                                  "-o", "{out}"],
     ["(2097152, 3, 8, 8) (3221225472 bytes)", "holds only 64 bytes"]),
    ("simulate_images_4g_header", ["simulate", "{model.npz}", "--sim", "amaranth", "--images",
                                   "{images_4g_header.npy}"],
     ["(67108864, 3, 4, 4) (3221225472 bytes)", "holds only 16 bytes"]),
]


@pytest.mark.parametrize("case", MEMORY_CASES, ids=[c[0] for c in MEMORY_CASES])
def test_large_headers_are_rejected_before_allocating(corpus, tmp_path, case):
    """A file of a few hundred bytes whose header declares gigabytes: one error line within a
    1 GiB address space (allocating first used to cost the declared size, or a MemoryError
    traceback)."""
    name, template, fragments = case
    corpus_dir, files = corpus
    proc = _run_cli(_argv(template, corpus_dir, files, str(tmp_path / "out")), tmp_path,
                    memory_limit=MEMORY_LIMIT)
    _check_error(name, proc, fragments)


def test_quantize_memory_does_not_grow_with_calibration_images(corpus, tmp_path):
    """3000 calibration images (576 KB) of a model with 32-channel activations: run whole
    through the float model they peak at 645 MB of arrays (tracemalloc) and the command does
    not fit 768 MiB of address space; streamed in batches they peak at 157 MB and it does."""
    corpus_dir, files = corpus
    out = tmp_path / "wide.npz"
    proc = _run_cli(["quantize", files["wide.onnx"], "--calib", files["calib_3000.npy"], "-o",
                     str(out), "--ratio", "1/4", "--raw-pixels"], tmp_path,
                    memory_limit=768 << 20)
    assert proc.returncode == 0, proc.stderr
    assert "3000 calibration images" in proc.stdout
    QModel.load(out).validate()


def test_external_data_is_never_read_relative_to_the_working_directory(corpus, tmp_path):
    """The issue's reproduction: run from ``/``, a Constant's external data ``etc/passwd`` must
    be looked up next to the model (where there is none), never in the working directory."""
    corpus_dir, files = corpus
    proc = _run_cli(["quantize", files["ext_const_cwd.onnx"], "--calib", files["calib.npy"],
                     "-o", str(tmp_path / "q.npz")], "/")
    _check_error("cwd", proc, ["(Constant) attribute 'value'",
                               "cannot read external data 'etc/passwd': No such file"])
    assert not (tmp_path / "q.npz").exists()
    # inside the model's directory, external data works from any working directory
    proc = _run_cli(["quantize", files["ext_ok_constant.onnx"], "--calib", files["calib.npy"],
                     "-o", str(tmp_path / "ok.npz"), "--raw-pixels"], "/")
    assert proc.returncode == 0, proc.stderr
