"""Graph canonicalization before ONNX import: the shape you meant, constants folded, no clutter.

Exporters (older PyTorch, tf2onnx, Paddle) write a classifier with machinery around its layers:
symbolic spatial dimensions, shape-arithmetic subgraphs (``Shape -> Gather -> Unsqueeze ->
Concat -> Reshape`` for a flatten), ``Constant``/``Cast`` chains, ``Identity`` nodes and branches
that feed nothing. :func:`canonicalize` rewrites such a graph into the plain form the importer
(:mod:`ilmpq.golden.onnx_import`) reads, and says what it did:

1. **Input shape.** The one image input gets a static per-image shape ``(C, H, W)`` — from the
   model, or from ``input_shape`` where the model leaves ``H``/``W`` (or ``C``) symbolic — and
   batch 1. ilmpq runs one image at a time; shape arithmetic folds to per-image constants.
2. **Shape inference** (``onnx.shape_inference`` with data propagation), then **constant
   folding**: every node whose inputs are all constants is evaluated once with
   ``onnx.reference`` and replaced by an initializer; ``Shape`` and ``Size`` of a tensor whose
   shape is static become constants. This repeats until nothing changes.
3. **No-ops removed**: ``Identity``, ``Dropout`` (inference; its mask unused), ``Cast`` to the
   float type the tensor already has, ``Reshape``/``Flatten`` to the shape the tensor already has.
4. **Dead nodes** (not on a path to the graph output) and unused initializers removed.

The float semantics of the graph are unchanged: ``tests/golden/test_canonicalize.py`` checks
that ``onnx.reference`` gives the same output before and after on every case.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .errors import IlmpqValueError

__all__ = ["CanonicalizeError", "canonicalize", "parse_input_shape", "MAX_FOLD_ELEMENTS"]

#: A folded constant larger than this many elements is left as a node (a constant-producing
#: subgraph of that size is not shape arithmetic; folding it would only cost memory).
MAX_FOLD_ELEMENTS = 1 << 24

#: Ops whose output is no larger than their inputs (or a shape vector): folded whenever their
#: inputs are constant. Any other op is folded only when shape inference bounds its output to
#: ``MAX_FOLD_ELEMENTS`` (so a ``ConstantOfShape`` of a huge shape is never materialized).
_SIZE_BOUNDED = frozenset({
    "Abs", "Add", "And", "ArgMax", "ArgMin", "Cast", "CastLike", "Ceil", "Clip", "Concat", "Div",
    "Equal", "Erf", "Exp", "Flatten", "Floor", "Gather", "GatherElements", "Greater",
    "GreaterOrEqual", "Identity", "Less", "LessOrEqual", "Log", "Max", "Mean", "Min", "Mod", "Mul",
    "Neg", "Not", "Or", "Pow", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceProd", "ReduceSum", "Relu", "Reshape", "Round", "Shape", "Sigmoid", "Sign", "Size",
    "Slice", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Transpose", "Unsqueeze", "Where", "Xor"})

#: Ops never folded even when their inputs are constant (random, or with side effects).
_NO_FOLD = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                      "Multinomial", "Bernoulli", "If", "Loop", "Scan"})


class CanonicalizeError(IlmpqValueError):
    """The graph cannot be canonicalized (e.g. ``input_shape`` contradicts the model)."""


def parse_input_shape(text) -> tuple[int, int, int]:
    """``"C,H,W"`` (or a sequence of three ints) -> ``(C, H, W)``; a clear error otherwise."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace("x", ",").split(",")]
        try:
            vals = tuple(int(p) for p in parts)
        except ValueError:
            raise CanonicalizeError(
                f"input shape {text!r} is not three positive integers C,H,W "
                f"(e.g. 3,224,224)") from None
    else:
        try:
            vals = tuple(int(v) for v in text)
        except (TypeError, ValueError):
            raise CanonicalizeError(
                f"input shape {text!r} is not three positive integers (C, H, W)") from None
    if len(vals) != 3 or min(vals) < 1:
        raise CanonicalizeError(
            f"input shape {text!r} must be three positive integers C,H,W (e.g. 3,224,224)")
    return vals


def _real_input(graph):
    inits = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in inits]


def _set_input_shape(model, input_shape, label, actions):
    """Give the single image input batch 1 and a static (C, H, W)."""
    ins = _real_input(model.graph)
    if len(ins) != 1:
        return  # the importer names this problem
    inp = ins[0]
    if not inp.type.HasField("tensor_type") or not inp.type.tensor_type.HasField("shape"):
        if input_shape is None:
            return
        dims = None
    else:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) != 4:
            return  # the importer names the rank problem
    if input_shape is not None:
        if dims is not None:
            for axis, d, want in zip("CHW", list(dims)[1:], input_shape):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != want:
                    raise CanonicalizeError(
                        f"{label}: input shape {tuple(input_shape)} does not match the model: "
                        f"its input {inp.name!r} has {axis} = {d.dim_value}")
        new = (1, *input_shape)
    else:
        vals = []
        for d in dims:
            vals.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
        if any(v is None for v in vals[1:]):
            return  # symbolic C/H/W without input_shape: the importer names --input-shape
        new = (1, *vals[1:])
    shape_proto = inp.type.tensor_type.shape
    old = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
           for d in shape_proto.dim]
    del shape_proto.dim[:]
    for v in new:
        shape_proto.dim.add().dim_value = int(v)
    if list(old) != list(new):
        actions.append(f"input {inp.name!r}: shape {tuple(old)} -> {new} (one image at a time)")


def _static_shapes(model):
    """Tensor name -> static shape tuple, for every tensor shape inference could fix."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is best effort; the importer validates later
        inferred = model
    shapes = {}
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _const_of(node, nh):
    """The value of a ``Constant`` node, or None when it has none we can read."""
    for a in node.attribute:
        if a.name == "value":
            return nh.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    return None


def _fold_pass(model, opsets, counts):
    """One sweep: fold constant nodes and Shape/Size of static tensors. True if it changed."""
    from onnx import numpy_helper as nh
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    consts = {}
    for init in g.initializer:
        if init.data_location == 1:  # external data not loaded: do not fold through it
            continue
        consts[init.name] = init
    shapes = _static_shapes(model)
    keep, new_inits, changed = [], [], False
    const_values: dict[str, np.ndarray] = {}

    def value(name):
        if name in const_values:
            return const_values[name]
        arr = nh.to_array(consts[name])
        const_values[name] = arr
        return arr

    for node in g.node:
        out = None
        if node.domain not in ("", "ai.onnx"):
            keep.append(node)
            continue
        if node.op_type == "Constant":
            if any(a.name == "value" and a.t.data_location == 1 for a in node.attribute):
                keep.append(node)  # external data: the importer confines or refuses it
                continue
            try:
                arr = _const_of(node, nh)
            except Exception:  # noqa: BLE001 - an unreadable Constant is the importer's error
                arr = None
            if arr is not None and len(node.output) == 1:
                out = [arr]
        elif node.op_type in ("Shape", "Size") and node.input and node.input[0] in shapes:
            shp = shapes[node.input[0]]
            if node.op_type == "Size":
                out = [np.array(int(np.prod(shp, dtype=np.int64)), dtype=np.int64)]
            else:
                attrs = {a.name: a.i for a in node.attribute}
                r = len(shp)
                start, end = attrs.get("start", 0), attrs.get("end", r)
                start = min(max(start + r if start < 0 else start, 0), r)
                end = min(max(end + r if end < 0 else end, 0), r)
                out = [np.array(shp[start:end], dtype=np.int64)]
        elif (node.op_type not in _NO_FOLD and node.input
              and all((not t) or t in consts for t in node.input)
              and not any(a.type in (5, 10) for a in node.attribute)  # no graph attributes
              and (node.op_type in _SIZE_BOUNDED or all(
                  o in shapes and int(np.prod(shapes[o], dtype=np.int64)) <= MAX_FOLD_ELEMENTS
                  for o in node.output if o))):
            feeds = {t: value(t) for t in node.input if t}
            try:
                ref = ReferenceEvaluator(node, opsets=opsets)
                out = ref.run(None, feeds)
            except Exception:  # noqa: BLE001 - not foldable here: keep the node
                out = None
            if out is not None and any(np.asarray(o).size > MAX_FOLD_ELEMENTS for o in out):
                out = None
        if out is None or len(out) != len(node.output):
            keep.append(node)
            continue
        for name, arr in zip(node.output, out):
            if not name:
                continue
            arr = np.asarray(arr)
            t = nh.from_array(arr, name)
            new_inits.append(t)
            consts[name] = t
            const_values[name] = arr
        counts[node.op_type] += 1
        changed = True
    if changed:
        del g.node[:]
        g.node.extend(keep)
        g.initializer.extend(new_inits)
    return changed


def _rename_input(graph, old, new):
    for n in graph.node:
        for i, t in enumerate(n.input):
            if t == old:
                n.input[i] = new


def _remove_noops(model, counts):
    """Identity, Dropout without a used mask, Cast to the same float type, Reshape/Flatten to the
    shape the tensor already has."""
    import onnx

    g = model.graph
    shapes = _static_shapes(model)
    elem = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        if vi.type.HasField("tensor_type"):
            elem[vi.name] = vi.type.tensor_type.elem_type
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        for vi in inferred.graph.value_info:
            if vi.type.HasField("tensor_type"):
                elem.setdefault(vi.name, vi.type.tensor_type.elem_type)
    except Exception:  # noqa: BLE001
        pass
    used = Counter(t for n in g.node for t in n.input if t)
    graph_outputs = {o.name for o in g.output}
    keep, changed = [], False
    for node in g.node:
        noop = False
        if node.domain in ("", "ai.onnx") and node.input and node.input[0]:
            src = node.input[0]
            if node.op_type == "Identity":
                noop = True
            elif node.op_type == "Dropout":
                noop = len(node.output) < 2 or not node.output[1] or not used[node.output[1]]
            elif node.op_type == "Cast":
                to = next((a.i for a in node.attribute if a.name == "to"), None)
                noop = to is not None and elem.get(src) == to
            elif node.op_type in ("Reshape", "Flatten"):
                noop = (src in shapes and node.output[0] in shapes
                        and shapes[src] == shapes[node.output[0]])
        if not noop:
            keep.append(node)
            continue
        out = node.output[0]
        if out in graph_outputs:
            # keep the graph output's name: rename the producer of the source instead
            producer = next((n for n in keep if src in n.output), None)
            if producer is None or src in graph_outputs or used[src] > 1:
                keep.append(node)
                continue
            producer.output[list(producer.output).index(src)] = out
            _rename_input(g, src, out)
        else:
            _rename_input(g, out, src)
        counts[node.op_type] += 1
        changed = True
    if changed:
        del g.node[:]
        g.node.extend(keep)
    return changed


def _remove_dead(model, counts):
    g = model.graph
    needed = {o.name for o in g.output}
    live = []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(t for t in node.input if t)
        else:
            counts["dead"] += 1
    live.reverse()
    del g.node[:]
    g.node.extend(live)
    inits = [i for i in g.initializer if i.name in needed]
    dropped = len(g.initializer) - len(inits)
    if dropped:
        counts["initializer"] += dropped
        del g.initializer[:]
        g.initializer.extend(inits)
    # graph inputs that are initializers no longer present go too (old exporters list them)
    names = {i.name for i in g.initializer}
    real = _real_input(g)
    ins = [i for i in g.input if i in real or i.name in names]
    if len(ins) != len(g.input):
        del g.input[:]
        g.input.extend(ins)
    del g.value_info[:]  # stale after rewriting; the importer re-derives shapes


def canonicalize(model, *, input_shape=None, label: str = "<model>"):
    """Canonicalize an ``onnx.ModelProto`` for import; returns ``(new_model, actions)``.

    ``input_shape`` is the per-image ``(C, H, W)`` for a model whose input has symbolic
    dimensions (a string ``"C,H,W"`` is accepted). ``actions`` lists, one line each, what was
    changed (empty when the graph was already canonical). The input model is not modified.
    """
    import onnx

    if input_shape is not None:
        input_shape = parse_input_shape(input_shape)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    actions: list[str] = []
    _set_input_shape(m, input_shape, label, actions)
    opsets = {(d.domain or ""): d.version for d in m.opset_import}
    folded, noops, dead = Counter(), Counter(), Counter()
    for _ in range(64):  # each pass folds at least one node; the bound is a safety net
        a = _fold_pass(m, opsets, folded)
        b = _remove_noops(m, noops)
        if not (a or b):
            break
    _remove_dead(m, dead)
    if folded:
        n = sum(folded.values())
        detail = ", ".join(f"{k} x{v}" for k, v in sorted(folded.items()))
        actions.append(f"folded {n} constant node{'s' if n != 1 else ''} ({detail})")
    if noops:
        n = sum(noops.values())
        detail = ", ".join(f"{k} x{v}" for k, v in sorted(noops.items()))
        actions.append(f"removed {n} no-op node{'s' if n != 1 else ''} ({detail})")
    if dead.get("dead"):
        actions.append(f"removed {dead['dead']} node{'s' if dead['dead'] != 1 else ''} that do "
                       f"not reach the output")
    if dead.get("initializer"):
        actions.append(f"dropped {dead['initializer']} unused initializer"
                       f"{'s' if dead['initializer'] != 1 else ''}")
    return m, actions
