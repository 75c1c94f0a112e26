"""The bad-input corpus: files a user (or an attacker) can hand to ilmpq.

:func:`build_corpus` writes every file into a directory and returns their paths by name. Each
file is a valid artefact with exactly one thing wrong, so the error the tool reports must name
that thing. The generators are deterministic (fixed seeds).
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config

__all__ = ["build_corpus", "small_qmodel", "conv_onnx", "edit_npz"]

TINY = get_config("tiny")


def small_qmodel(seed: int = 7, act_bits: int = 8):
    """A two-layer quantized model for the tiny configuration (3 x 4 x 4 input)."""
    cfg = TINY.replace(act_bits=act_bits)
    b = ModelBuilder(np.random.default_rng(seed), spec=cfg.numeric, ratio=cfg.ratio,
                     input_shape=(3, 4, 4))
    x = b.conv("c1", "input", 5, 3, padding=1)
    return b.build(b.conv("c2", x, 4, 1))


def conv_onnx(*, opset=13, in_shape=(1, 3, 8, 8), tail=None, drop_weight=False):
    """Conv 3x3 (+ bias) + Relu [+ ``tail`` node reading ``r``, writing ``y``] as ONNX."""
    rng = np.random.default_rng(0)
    cout = 4
    w = numpy_helper.from_array(
        rng.normal(0, 0.3, (cout, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r" if tail else "y"], name="relu")]
    if tail:
        nodes.append(helper.make_node(tail, ["r"], ["y"], name="tail"))
    inits = [b] if drop_weight else [w, b]
    out_shape = [in_shape[0], cout, *in_shape[2:]]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


def edit_npz(src: str, dst: str, *, meta=None, arrays=None, drop=()) -> None:
    """Copy a model file, changing its JSON metadata (``meta(dict)``), arrays (``arrays``: name
    -> new array) or dropping arrays, and writing a valid ``.npz`` again."""
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    m = json.loads(data["__meta__"].tobytes())
    if meta is not None:
        meta(m)
    data["__meta__"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    for k, v in (arrays or {}).items():
        data[k] = v
    for k in drop:
        data.pop(k)
    with open(dst, "wb") as f:
        np.savez(f, **data)


def _member_offset(path: str, name: str) -> int:
    """Byte offset of an array's data inside a stored (uncompressed) .npz member."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    raw = open(path, "rb").read()
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    return start + raw[start:start + info.compress_size].index(b"\n") + 1


def build_corpus(d: str) -> dict[str, str]:
    """Write the corpus into directory ``d``; return ``{name: path}``."""
    os.makedirs(d, exist_ok=True)
    p = {}

    def put(name, data: bytes):
        p[name] = os.path.join(d, name)
        with open(p[name], "wb") as f:
            f.write(data)

    def path(name):
        p[name] = os.path.join(d, name)
        return p[name]

    # -- ONNX -----------------------------------------------------------------------------------
    good = conv_onnx()
    put("good.onnx", good)
    put("truncated.onnx", good[:len(good) // 2])
    put("empty.onnx", b"")
    put("not_onnx.onnx", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    put("text.onnx", b"this is a text file, not a model\n")
    put("opset3.onnx", conv_onnx(opset=3))
    put("opset99.onnx", conv_onnx(opset=99))
    put("tanh.onnx", conv_onnx(tail="Tanh"))
    put("dynamic.onnx", conv_onnx(in_shape=("N", 3, "H", "W")))
    put("huge.onnx", conv_onnx(in_shape=(1, 3, 1 << 20, 1 << 20)))
    put("no_weight.onnx", conv_onnx(drop_weight=True))
    os.makedirs(path("a_directory.onnx"), exist_ok=True)

    # -- calibration and image arrays ----------------------------------------------------------
    rng = np.random.default_rng(1)
    np.save(path("calib.npy"), rng.integers(0, 256, (4, 3, 8, 8)).astype(np.uint8))
    np.save(path("calib_shape.npy"), np.zeros((4, 3, 9, 9), np.uint8))
    np.save(path("calib_nan.npy"), np.full((4, 3, 8, 8), np.nan))
    np.save(path("calib_negative.npy"), -np.ones((4, 3, 8, 8)))
    np.save(path("pickled.npy"), np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    np.savez(path("arrays.npz"), x=np.zeros((1, 3, 4, 4), np.uint8))
    np.save(path("images.npy"), rng.integers(0, 256, (2, 3, 4, 4)).astype(np.uint8))
    np.save(path("images_shape.npy"), np.zeros((2, 3, 5, 5), np.uint8))
    np.save(path("images_float.npy"), np.full((1, 3, 4, 4), 0.5))
    np.save(path("images_300.npy"), np.full((1, 3, 4, 4), 300))
    np.save(path("images_empty.npy"), np.zeros((0, 3, 4, 4), np.uint8))
    put("images_truncated.npy", open(p["images.npy"], "rb").read()[:100])

    # -- quantized models ------------------------------------------------------------------------
    model = small_qmodel()
    model.save(path("model.npz"))
    raw = open(p["model.npz"], "rb").read()
    put("model_truncated.npz", raw[:len(raw) // 2])
    bad = bytearray(raw)
    bad[_member_offset(p["model.npz"], "c1.weight.npy") + 3] ^= 0x01
    put("model_bitflip.npz", bytes(bad))
    bad = bytearray(raw)
    cd = raw.rindex(b"PK\x01\x02")              # last central directory entry
    bad[cd + 8] ^= 0x01                         # general purpose flag bit 0: "encrypted"
    put("model_encrypted_flag.npz", bytes(bad))
    put("model_not_zip.npz", b"ilmpq model? no.\n" * 8)
    np.save(path("model_single.npy"), np.zeros(3))
    edit_npz(p["model.npz"], path("model_v99.npz"), meta=lambda m: m.update(version=99))
    edit_npz(p["model.npz"], path("model_format.npz"),
             meta=lambda m: m.update(format="keras-h5"))
    w = np.array(model.layers[0].weight)
    lo_row = int(np.flatnonzero(np.asarray(model.layers[0].precision) == 0)[0])
    w[lo_row, 0, 0, 0] = 9                      # a 4-bit row holding 9
    edit_npz(p["model.npz"], path("model_weight_range.npz"), arrays={"c1.weight": w})
    edit_npz(p["model.npz"], path("model_weight_dtype.npz"),
             arrays={"c1.weight": w.astype(np.float32)})
    shift = np.array(model.layers[1].shift)
    shift[0] = 200
    edit_npz(p["model.npz"], path("model_shift_range.npz"), arrays={"c2.shift": shift})
    prec = np.ones_like(np.asarray(model.layers[0].precision))
    edit_npz(p["model.npz"], path("model_all_hi.npz"), arrays={"c1.precision": prec})
    edit_npz(p["model.npz"], path("model_missing_array.npz"), drop=("c2.mult",))
    edit_npz(p["model.npz"], path("model_extra_array.npz"), arrays={"payload": np.zeros(9)})

    def huge(m):
        for t in m["tensors"]:
            t["shape"][1] = t["shape"][2] = 200_000
    edit_npz(p["model.npz"], path("model_huge.npz"), meta=huge)
    small_qmodel(act_bits=4).save(path("model_a4.npz"))
    put("a_file", b"x")
    return p
