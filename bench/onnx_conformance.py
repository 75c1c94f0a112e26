"""Benchmark: ONNX's own node conformance cases through the float importer.

ONNX ships, for every operator, small test cases (one node, inputs, expected outputs) generated
in Python by ``onnx.backend.test.case.node`` — no data files. This runs the cases of the
operators a CNN importer should take (:data:`OPS`) through
:func:`ilmpq.golden.onnx_import.load_onnx` and the imported float model's own forward
(``FloatModel.predict``, then the output head the importer recorded,
:func:`ilmpq.golden.heads.apply_head`), compares with the case's expected
output (float tolerance ``rtol 1e-3, atol 1e-5``: this is the float import, not the integer
path) and classifies each case:

* ``right``: imported and the output matches;
* ``rejected``: :class:`OnnxImportError` — the message is kept;
* ``wrong``: imported but the output (or its shape) differs;
* ``crash``: any other exception;
* ``out_of_scope``: outside the importer's graph contract, with the reason (the first input is
  not a float ``(N, C, H, W)`` image or ``(N, K)`` vector, several activation inputs, a
  non-tensor type, an opset older than the importer reads).

How a case becomes a model the importer's contract covers (what an exporter would write):

* the first input is the image; every other input the case feeds (weights, bias, shape, pads,
  slice bounds, clip bounds ...) becomes an initializer holding the case's value. For the
  elementwise ops of two or more tensors (``Add``, ``Mul``, ``Concat`` ...) a further input with
  the shape of the first is a second activation: out of scope (a one-node graph cannot produce
  it from the image); a smaller, broadcast one is a constant;
* a rank-2 first input ``(N, K)`` is fed as ``(N, K, 1, 1)`` through a ``Flatten`` (how a CNN
  reaches a Gemm/MatMul); for an elementwise op (:data:`_ELEMENTWISE`, no axis semantics) a
  rank-3 case ``(N, C, L)`` runs as ``(N, C, 1, L)`` (its broadcast operands reshaped the same
  way) and a rank-1 case ``(L,)`` as ``(1, 1, 1, L)``. Both are recorded in ``adapted``.

Only the single-node cases (not the ``_expanded`` function bodies) are run. Writes
``bench/results/onnx_conformance.json`` and ``.md`` (``--out DIR`` elsewhere); ``--before FILE``
adds a before/after column per op from an earlier JSON.

Usage: ``python bench/onnx_conformance.py [--out DIR] [--before FILE]``
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: ONNX op -> module of ``onnx.backend.test.case.node`` holding its cases. The ops of a CNN:
#: layers, pooling, shapes, activations, normalization, heads, and the elementwise arithmetic
#: of hard-swish / SE blocks. Not here: ConvTranspose, recurrent, attention, resize ops.
OPS = {
    "Conv": "conv", "Gemm": "gemm", "MatMul": "matmul", "MaxPool": "maxpool",
    "AveragePool": "averagepool", "GlobalAveragePool": "globalaveragepool",
    "GlobalMaxPool": "globalmaxpool", "Flatten": "flatten", "Reshape": "reshape",
    "Squeeze": "squeeze", "Unsqueeze": "unsqueeze", "Relu": "relu", "Clip": "clip",
    "LeakyRelu": "leakyrelu", "PRelu": "prelu", "Elu": "elu", "Sigmoid": "sigmoid",
    "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Tanh": "tanh",
    "Softplus": "softplus", "Erf": "erf", "Neg": "neg", "Add": "add", "Sub": "sub",
    "Mul": "mul", "Div": "div", "Pow": "pow", "Concat": "concat", "Slice": "slice",
    "Split": "split", "Transpose": "transpose", "Pad": "pad",
    "BatchNormalization": "batch_normalization", "Identity": "identity", "Dropout": "dropout",
    "Softmax": "softmax", "LogSoftmax": "logsoftmax", "ReduceMean": "reducemean",
}

#: Ops whose further inputs are activations when they have the first input's shape.
_MULTI_ACT = {"Add", "Sub", "Mul", "Div", "Pow", "Concat", "PRelu"}

#: Elementwise ops (no axis semantics): a rank-3 case ``(N, C, L)`` runs as ``(N, C, 1, L)``.
_ELEMENTWISE = {"Relu", "Clip", "LeakyRelu", "PRelu", "Elu", "Sigmoid", "HardSigmoid",
                "HardSwish", "Tanh", "Softplus", "Erf", "Neg", "Add", "Sub", "Mul", "Div", "Pow",
                "Identity", "Dropout"}
#: ... and these of them broadcast their further inputs against the first (operands, slopes).
_BROADCAST_OPERANDS = {"PRelu", "Add", "Sub", "Mul", "Div", "Pow"}

RTOL, ATOL = 1e-3, 1e-5
CLASSES = ("right", "rejected", "wrong", "crash", "out_of_scope")


def collect(ops=None):
    """The single-node conformance cases of ``ops`` (default :data:`OPS`): a list of
    ``onnx.backend.test.case.node`` ``TestCase``, generated in Python (importing only the
    modules of these ops)."""
    import onnx.backend.test.case.node as node_cases

    ops = list(OPS) if ops is None else list(ops)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np_state = np.random.get_state()
        for op in ops:
            importlib.import_module(f"onnx.backend.test.case.node.{OPS[op]}")
        np.random.set_state(np_state)
    out, seen = [], set()
    for case in node_cases._NodeTestCases:
        nodes = case.model.graph.node
        if len(nodes) == 1 and nodes[0].op_type in ops and case.name not in seen:
            seen.add(case.name)
            out.append(case)
    return out


def _tensor_rank(vi):
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return len(t.tensor_type.shape.dim)


def prepare(case):
    """``(model, x, expected, adapted)`` ready for ``load_onnx``, or ``(None, reason)``."""
    import onnx
    from onnx import helper, numpy_helper

    from ilmpq.golden.onnx_import import MIN_OPSET

    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    g = m.graph
    node = g.node[0]
    op = node.op_type
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        return None, f"opset {opset} (the importer reads ai.onnx opsets {MIN_OPSET} and newer)"
    inputs, outputs = case.data_sets[0]
    if len(g.output) != 1 or len(outputs) != 1:
        return None, f"{len(g.output)} graph outputs (the contract: one output)"
    if not inputs or len(g.input) != len(inputs):
        return None, "no graph input (the contract: one image input)"
    if any(not vi.type.HasField("tensor_type") for vi in list(g.input) + list(g.output)):
        return None, "a sequence or optional value (the contract: tensors)"
    x = inputs[0]
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        return None, f"the first input is not a float tensor ({getattr(x, 'dtype', type(x))})"
    rank3 = x.ndim in (1, 3) and op in _ELEMENTWISE
    if x.ndim not in (2, 4) and not rank3:
        return None, (f"the first input has rank {x.ndim} (the contract: an (N, C, H, W) image, "
                      f"or (N, K) behind a Flatten; ranks 1 and 3 only for elementwise ops)")
    first = g.input[0]
    extra = list(g.input[1:])
    if op in _MULTI_ACT:
        for vi, arr in zip(extra, inputs[1:]):
            if np.asarray(arr).shape == x.shape:
                return None, "several activation inputs (the contract: one image input)"
    want = np.asarray(outputs[0])
    for vi, arr in zip(extra, inputs[1:]):
        arr = np.asarray(arr)
        if rank3 and x.ndim == 3 and op in _BROADCAST_OPERANDS and 0 < arr.ndim <= 3:
            # right-aligned broadcast against (N, C, L): the same against (N, C, 1, L)
            arr = np.expand_dims(arr.reshape((1,) * (3 - arr.ndim) + arr.shape), 2)
        g.initializer.append(numpy_helper.from_array(arr, vi.name))
    del g.input[1:]
    if rank3:
        r = x.ndim
        if want.ndim != r:
            return None, f"an elementwise op of rank {r} with a rank-{want.ndim} output"
        # (N, C, L) -> (N, C, 1, L); (L,) -> (1, 1, 1, L): the same elementwise broadcast
        new = (lambda a: np.expand_dims(a, 2)) if r == 3 else (lambda a: a.reshape(1, 1, 1, -1))
        for vi in (first, g.output[0]):
            shape = vi.type.tensor_type.shape
            dims = [d.dim_value for d in shape.dim]
            del shape.dim[:]
            for d in new(np.zeros(dims)).shape:
                shape.dim.add().dim_value = d
        x, want = new(x), new(want)
        return (m, x, want, f"rank {r} as {'(N, C, 1, L)' if r == 3 else '(1, 1, 1, L)'}"), None
    adapted = "(N, K) as (N, K, 1, 1) through a Flatten" if x.ndim == 2 else False
    if adapted:
        n, k = x.shape
        inner = first.name
        outer = inner + "_nchw"
        del g.input[:]
        g.input.append(helper.make_tensor_value_info(outer, first.type.tensor_type.elem_type,
                                                     [n, k, 1, 1]))
        flat = helper.make_node("Flatten", [outer], [inner], name="adapter_flatten", axis=1)
        g.node.insert(0, flat)
        x = x.reshape(n, k, 1, 1)
    return (m, x, want, adapted), None


def run_case(case):
    """Classify one case: a dict with ``name``, ``op``, ``status`` and ``detail``."""
    from ilmpq.golden.heads import apply_head
    from ilmpq.golden.onnx_import import OnnxImportError, load_onnx

    op = case.model.graph.node[0].op_type
    row = {"name": case.name, "op": op, "adapted": False}
    prepared, why = prepare(case)
    if prepared is None:
        row.update(status="out_of_scope", detail=why)
        return row
    model, x, want, adapted = prepared
    row["adapted"] = adapted
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fm = load_onnx(model)
            got = apply_head(fm.predict(x), fm.meta.get("output_head"))
    except OnnxImportError as e:
        row.update(status="rejected", detail=str(e).replace("<ModelProto>: ", ""))
        return row
    except Exception as e:  # noqa: BLE001 - every other exception is a crash, reported
        row.update(status="crash", detail=f"{type(e).__name__}: {e}")
        return row
    if got.shape != want.shape:
        row.update(status="wrong", detail=f"output shape {got.shape}, expected {want.shape}")
    elif not np.allclose(got, want.astype(np.float64), rtol=RTOL, atol=ATOL):
        err = float(np.max(np.abs(got - want)))
        row.update(status="wrong", detail=f"max abs error {err:.3g}")
    else:
        row.update(status="right", detail="")
    return row


def run(ops=None):
    cases = collect(ops)
    rows = [run_case(c) for c in cases]
    per_op = {}
    for op in (OPS if ops is None else ops):
        c = Counter(r["status"] for r in rows if r["op"] == op)
        per_op[op] = {k: c.get(k, 0) for k in CLASSES}
    total = {k: sum(v[k] for v in per_op.values()) for k in CLASSES}
    return {"cases": rows, "per_op": per_op, "total": total}


def render_md(res, before=None) -> str:
    import onnx

    t = res["total"]
    n_adapted = sum(1 for r in res["cases"] if r["adapted"])
    lines = [
        "# ONNX node conformance cases through the float importer",
        "",
        f"`bench/onnx_conformance.py`, onnx {res['onnx']}, {res['date']}: the single-node "
        f"cases of ONNX's own backend tests for {len(res['per_op'])} CNN operators, through "
        f"`load_onnx` and the float model's forward, compared with the expected outputs "
        f"(rtol {RTOL:g}, atol {ATOL:g}). A rank-2 input is fed as (N, K, 1, 1) through a "
        f"Flatten, a rank-3 (rank-1) input of an elementwise op as (N, C, 1, L) "
        f"((1, 1, 1, L)); inputs other than the first become initializers. {n_adapted} cases "
        f"adapted so.",
        "",
        f"**{t['right']} right, {t['rejected']} rejected, {t['wrong']} wrong, {t['crash']} "
        f"crashes, {t['out_of_scope']} out of scope** (of {sum(t.values())})."
        + (f" Before ({before['source']}): {before['total']['right']} right, "
           f"{before['total']['rejected']} rejected, {before['total']['wrong']} wrong, "
           f"{before['total']['crash']} crash(es)." if before else ""),
        "",
        "| op | right | rejected | wrong | crash | out of scope |"
        + (" before: right / rejected / wrong / crash |" if before else ""),
        "|---|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    for op, c in res["per_op"].items():
        row = f"| {op} | {c['right']} | {c['rejected']} | {c['wrong']} | {c['crash']} | " \
              f"{c['out_of_scope']} |"
        if before:
            b = before.get("per_op", {}).get(op)
            row += (f" {b['right']} / {b['rejected']} / {b['wrong']} / {b['crash']} |" if b
                    else " — |")
        lines.append(row)
    for status, title in (("rejected", "Rejected (the importer's message)"),
                          ("wrong", "Wrong"), ("crash", "Crashes"),
                          ("out_of_scope", "Out of scope")):
        rows = [r for r in res["cases"] if r["status"] == status]
        if not rows:
            continue
        lines += ["", f"## {title}", ""]
        for r in rows:
            d = r["detail"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"- `{r['name']}`: {d}")
    del onnx
    return "\n".join(lines) + "\n"


def main(argv=None):
    import onnx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--before", type=Path, default=None,
                    help="an earlier onnx_conformance.json for a before/after column")
    ap.add_argument("--before-label", default=None,
                    help="what the earlier run was (e.g. the importer's commit)")
    args = ap.parse_args(argv)
    t0 = time.time()
    res = run()
    res["onnx"] = onnx.__version__
    res["date"] = time.strftime("%Y-%m-%d")
    res["seconds"] = round(time.time() - t0, 1)
    if args.before:
        # per-op counts of the earlier run, kept in the JSON for the before/after table
        b = json.loads(args.before.read_text())
        res["before"] = {"source": args.before_label or
                         f"onnx_conformance.json of {b.get('date', '?')}",
                         "per_op": b["per_op"], "total": b["total"]}
    before = res.get("before")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onnx_conformance.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "onnx_conformance.md").write_text(render_md(res, before))
    t = res["total"]
    print(f"{sum(t.values())} cases in {res['seconds']} s: " +
          ", ".join(f"{k} {v}" for k, v in t.items()))
    for op, c in res["per_op"].items():
        print(f"  {op:20s} " + " ".join(f"{k}={v}" for k, v in c.items() if v))
    return 1 if t["wrong"] or t["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
