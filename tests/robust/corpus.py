"""The bad-input corpus: files a user (or an attacker) can hand to ilmpq.

:func:`build_corpus` writes every file into a directory and returns their paths by name. Each
file is a valid artefact with exactly one thing wrong, so the error the tool reports must name
that thing. The generators are deterministic (fixed seeds).
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config

__all__ = ["build_corpus", "small_qmodel", "conv_onnx", "external_onnx", "wide_onnx",
           "edit_npz", "npy_with_header", "npz_with_meta_text"]

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


def external_onnx(location: str, *, where: str = "initializer", offset=None, length=None,
                  weight=None) -> bytes:
    """:func:`conv_onnx` whose conv weight ``w`` (4 x 3 x 3 x 3 float32) keeps its bytes in the
    external file ``location``: as an initializer (``where="initializer"``), as the ``value`` of
    a ``Constant`` node (``"constant"``), or as a tensor attribute of another node
    (``"attribute"``: a ``ConstantOfShape`` whose ``value`` is external)."""
    m = onnx.ModelProto()
    m.ParseFromString(conv_onnx())
    g = m.graph
    w = next(t for t in g.initializer if t.name == "w")
    t = onnx.TensorProto()
    t.CopyFrom(w)
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    nbytes = 4 * 3 * 3 * 3 * 4
    for k, v in (("location", location), ("offset", str(offset or 0)),
                 ("length", str(nbytes if length is None else length))):
        e = t.external_data.add()
        e.key, e.value = k, v
    if where == "initializer":
        w.CopyFrom(t)
    elif where == "constant":
        g.initializer.remove(w)
        t.name = ""
        g.node.insert(0, helper.make_node("Constant", [], ["w"], name="wconst", value=t))
    elif where == "attribute":
        t.name = ""
        t.ClearField("dims")
        t.dims.append(1)
        e = next(e for e in t.external_data if e.key == "length")
        e.value = "4"
        g.node.insert(0, helper.make_node("ConstantOfShape", ["shp"], ["unused"], name="cos",
                                          value=t))
        g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "shp"))
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


def npy_with_header(shape, dtype="<f8", payload: bytes = b"") -> bytes:
    """An ``.npy`` file whose header declares ``shape``/``dtype`` followed by ``payload``
    (a TiB-sized shape with a few bytes of data: the header lies)."""
    hdr = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, hdr)   # magic, version and header
    return buf.getvalue() + payload


def npz_with_meta_text(src: str, dst: str, text: str) -> None:
    """Copy a model file replacing its ``__meta__`` JSON by ``text`` verbatim."""
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["__meta__"] = np.frombuffer(text.encode(), np.uint8)
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
    put("softsign.onnx", conv_onnx(tail="Softsign"))
    put("dynamic.onnx", conv_onnx(in_shape=("N", 3, "H", "W")))
    put("huge.onnx", conv_onnx(in_shape=(1, 3, 1 << 20, 1 << 20)))
    put("no_weight.onnx", conv_onnx(drop_weight=True))
    os.makedirs(path("a_directory.onnx"), exist_ok=True)
    rng = np.random.default_rng(3)
    put("bad_string_weight.onnx", _string_weight_onnx())
    put("zero_channels.onnx", _zero_channel_onnx())
    put("gemm_alpha0.onnx", _gemm_onnx(alpha=0.0))
    put("conv_pads_4.onnx", _conv_pads_onnx([4, 1, 1, 1]))
    put("deep_metadata.onnx", _meta_onnx("[" * 100_000 + "]" * 100_000))

    # -- ONNX external data: only regular files inside the model's directory -------------------
    ext = path("ext")                      # the models live in ext/, the secret one level up
    os.makedirs(ext, exist_ok=True)
    put("secret.bin", rng.normal(0, 0.3, 108).astype(np.float32).tobytes())
    with open(os.path.join(ext, "weights.bin"), "wb") as f:   # other values than the secret
        f.write(rng.normal(0, 0.3, 108).astype(np.float32).tobytes())
    link = os.path.join(ext, "link.bin")
    if not os.path.lexists(link):
        os.symlink(os.path.join("..", "secret.bin"), link)
    fifo = os.path.join(ext, "fifo.bin")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    for name, loc, where, kw in (
            ("ext_ok.onnx", "weights.bin", "initializer", {}),
            ("ext_ok_constant.onnx", "weights.bin", "constant", {}),
            ("ext_init_dotdot.onnx", "../secret.bin", "initializer", {}),
            ("ext_const_dotdot.onnx", "../secret.bin", "constant", {}),
            ("ext_const_abs.onnx", p["secret.bin"], "constant", {}),
            ("ext_const_symlink.onnx", "link.bin", "constant", {}),
            ("ext_const_cwd.onnx", "etc/passwd", "constant", {}),
            ("ext_attr_dotdot.onnx", "../secret.bin", "attribute", {}),
            ("ext_const_fifo.onnx", "fifo.bin", "constant", {}),
            ("ext_const_devzero.onnx", "/dev/zero", "constant", {}),
            ("ext_length.onnx", "weights.bin", "initializer", {"length": 4096}),
            ("ext_offset.onnx", "weights.bin", "initializer", {"offset": 400}),
    ):
        p[name] = os.path.join(ext, name)
        with open(p[name], "wb") as f:
            f.write(external_onnx(loc, where=where, **kw))

    # -- special files: refused before reading, never a hang ------------------------------------
    p["fifo"] = fifo
    p["devzero"] = "/dev/zero"

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
    # headers that lie: TiB-sized arrays declared in tiny files
    put("calib_tib_header.npy", npy_with_header((1 << 20, 3, 1 << 12, 1 << 12), "<f8",
                                                bytes(64)))
    put("images_tib_header.npy", npy_with_header((1 << 38, 3, 4, 4), "|u1", bytes(16)))
    # ... and 3 GiB ones, which a machine could allocate (the peak-memory tests)
    put("calib_4g_header.npy", npy_with_header((1 << 21, 3, 8, 8), "<f8", bytes(64)))
    put("images_4g_header.npy", npy_with_header((1 << 26, 3, 4, 4), "|u1", bytes(16)))
    # many calibration images for a model with wide activations: 576 KB of pixels that cost
    # 1.1 GB as float64 activations kept whole
    put("wide.onnx", wide_onnx())
    np.save(path("calib_3000.npy"), rng.integers(0, 256, (3000, 3, 8, 8)).astype(np.uint8))

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
    # lying .npy headers inside the archive: a stored member, and a deflated member whose ZIP
    # directory entry claims far more bytes than deflate can produce
    w_hdr = npy_with_header((1 << 20, 1 << 10, 1 << 10, 1), "|i1", bytes(64))
    _npz_replace_member(p["model.npz"], path("model_tib_header.npz"), "c1.weight.npy", w_hdr)
    _npz_replace_member(p["model.npz"], path("model_deflate_claim.npz"), "c1.weight.npy",
                        w_hdr, deflate_claim=0xFFFF_FFF0)
    _npz_replace_member(p["model.npz"], path("model_4g_header.npz"), "c1.weight.npy",
                        npy_with_header((1 << 20, 1 << 10, 3, 1), "|i1", bytes(64)))
    npz_with_meta_text(p["model.npz"], path("model_deep_json.npz"),
                       '{"format": "ilmpq-qmodel", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    meta = json.loads(np.load(p["model.npz"])["__meta__"].tobytes())
    for name, field, value in (("model_scale_nan.npz", "scale", "NaN"),
                               ("model_scale_inf.npz", "scale", "1e400"),
                               ("model_ratio_inf.npz", "ratio", "Infinity")):
        m = json.loads(json.dumps(meta))
        if field == "scale":
            m["tensors"][1]["scale"] = "@@"
        else:
            m["ratio"] = "@@"
        npz_with_meta_text(p["model.npz"], path(name), json.dumps(m).replace('"@@"', value))
    edit_npz(p["model.npz"], path("model_pad_kernel.npz"), meta=_big_pad)
    put("a_file", b"x")
    return p


def _big_pad(m):
    """c2 is a 1x1 conv: padding 1 on every side would be a border of padding-only windows."""
    for layer in m["layers"]:
        if layer["name"] == "c2":
            layer["padding"] = [1, 1, 1, 1]
    for t in m["tensors"]:
        if t["name"] == "c2":
            t["shape"] = [t["shape"][0], t["shape"][1] + 2, t["shape"][2] + 2]


def _npz_replace_member(src: str, dst: str, member: str, data: bytes, *,
                        deflate_claim: int | None = None) -> None:
    """Copy a ZIP archive with one member's bytes replaced; with ``deflate_claim`` that member is
    deflated and its directory entries claim ``deflate_claim`` uncompressed bytes."""
    with zipfile.ZipFile(src) as z:
        items = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(dst, "w") as z:
        for info, raw in items:
            if info.filename == member:
                raw = data
                info = zipfile.ZipInfo(member, date_time=info.date_time)
                if deflate_claim:
                    info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, raw)
    if deflate_claim:
        buf = bytearray(open(dst, "rb").read())
        name = member.encode()
        for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            pos = 0
            while (pos := buf.find(sig, pos)) >= 0:
                name_at = 30 if sig == b"PK\x03\x04" else 46
                if buf[pos + name_at:pos + name_at + len(name)] == name:
                    buf[pos + size_at:pos + size_at + 4] = deflate_claim.to_bytes(4, "little")
                pos += 4
        with open(dst, "wb") as f:
            f.write(buf)


def _one_node_model(nodes, inits, in_shape, out_shape, opset=13, meta=None) -> bytes:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    for k, v in (meta or {}).items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    return m.SerializeToString()


def wide_onnx(c: int = 32, hw: int = 8) -> bytes:
    """Three 3x3 convs of ``c`` channels with ReLU, global pooling and an FC of 10 outputs on a
    3 x ``hw`` x ``hw`` input: small weights, wide activations."""
    rng = np.random.default_rng(4)
    inits, nodes, x, cin = [], [], "x", 3
    for i in range(3):
        inits.append(numpy_helper.from_array(
            rng.normal(0, 0.3, (c, cin, 3, 3)).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}",
                                   pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x, cin = f"r{i}", c
    inits.append(numpy_helper.from_array(rng.normal(0, 0.3, (10, c)).astype(np.float32), "fw"))
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1)]
    return _one_node_model(nodes, inits, (1, 3, hw, hw), (1, 10))


def _string_weight_onnx() -> bytes:
    """A Conv whose weight initializer is a STRING tensor."""
    w = helper.make_tensor("w", TensorProto.STRING, [4, 3, 3, 3], [b"0.5"] * 108)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1])
    return _one_node_model([node], [w], (1, 3, 8, 8), (1, 4, 8, 8))


def _zero_channel_onnx() -> bytes:
    """A Conv with 0 output channels (weight shape (0, 3, 3, 3))."""
    w = numpy_helper.from_array(np.zeros((0, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1])
    return _one_node_model([node], [w], (1, 3, 8, 8), (1, 0, 8, 8))


def _gemm_onnx(alpha: float) -> bytes:
    """Flatten + Gemm(alpha) with a nonzero bias C."""
    rng = np.random.default_rng(5)
    b = numpy_helper.from_array(rng.normal(0, 0.3, (10, 48)).astype(np.float32), "B")
    c = numpy_helper.from_array(np.full(10, 0.5, np.float32), "C")
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "B", "C"], ["y"], name="fc", transB=1,
                              alpha=alpha)]
    return _one_node_model(nodes, [b, c], (1, 3, 4, 4), (1, 10))


def _conv_pads_onnx(pads) -> bytes:
    """A 3x3 Conv with ``pads`` (top, left, bottom, right)."""
    w = numpy_helper.from_array(
        np.random.default_rng(6).normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3],
                            pads=list(pads))
    relu = helper.make_node("Relu", ["c"], ["y"], name="relu")
    oh = 8 + pads[0] + pads[2] - 2
    ow = 8 + pads[1] + pads[3] - 2
    return _one_node_model([node, relu], [w], (1, 3, 8, 8), (1, 4, oh, ow))


def _meta_onnx(value: str) -> bytes:
    """:func:`conv_onnx` with ``ilmpq.input_mean`` metadata ``value`` (verbatim text)."""
    m = onnx.ModelProto()
    m.ParseFromString(conv_onnx())
    e = m.metadata_props.add()
    e.key, e.value = "ilmpq.input_mean", value
    return m.SerializeToString()
