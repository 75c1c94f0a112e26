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
   float type the tensor already has, ``Reshape``/``Flatten`` to the shape the tensor already has,
   a ``MaxPool``/``AveragePool`` with a 1x1 window, stride 1 and no padding (VGG's adaptive
   average pool on a 7x7 map).
4. **BatchNormalization folded wherever it is affine-foldable** (the importer itself folds a
   BN that directly follows a Conv/Gemm/MatMul): a BN after a residual ``Add`` whose two inputs
   are each produced by a Conv (or a BN) that feeds only that ``Add`` is pushed into both
   producers (scale into both, shift into one); a BN feeding a ``Gemm``/``MatMul`` (a
   ``BatchNorm1d`` before the classifier) or a ``Conv`` without padding is folded into that
   consumer's weights and bias. A BN elsewhere (before a padded conv, after an identity
   shortcut) is left for the importer to name.
5. **auto_pad** ``SAME_UPPER``/``SAME_LOWER`` of Conv/MaxPool/AveragePool becomes explicit pads
   (from the static input shape).
6. **Dead nodes** (not on a path to the graph output) and unused initializers removed.

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


def _infer(model):
    """One shape inference (with data propagation): ``(shapes, elem_types)`` — tensor name ->
    static shape tuple for every tensor whose shape inference could fix, and tensor name -> ONNX
    element type for every typed tensor."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is best effort; the importer validates later
        inferred = model
    shapes, elems = {}, {}
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        if not vi.type.HasField("tensor_type"):
            continue
        elems.setdefault(vi.name, vi.type.tensor_type.elem_type)
        if not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    return shapes, elems


def _static_shapes(model):
    """Tensor name -> static shape tuple, for every tensor shape inference could fix."""
    return _infer(model)[0]


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
    g = model.graph
    shapes, elem = _infer(model)
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
            elif node.op_type in ("MaxPool", "AveragePool") and len(node.output) == 1:
                # a 1x1 window with stride 1 and no padding (VGG's adaptive pool on 7x7)
                a = {x.name: list(x.ints) for x in node.attribute if x.ints}
                auto = next((x.s for x in node.attribute if x.name == "auto_pad"), b"NOTSET")
                noop = (a.get("kernel_shape") == [1, 1] and a.get("strides", [1, 1]) == [1, 1]
                        and not any(a.get("pads", [])) and auto in (b"NOTSET", b"VALID")
                        and a.get("dilations", [1, 1]) == [1, 1])
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


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _set_attr(node, name, value):
    from onnx import helper
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


class _Consts:
    """Initializers by name, read and written as NumPy arrays."""

    def __init__(self, graph):
        from onnx import numpy_helper
        self.nh, self.g = numpy_helper, graph
        self.by_name = {i.name: i for i in graph.initializer if i.data_location != 1}
        self.taken = {i.name for i in graph.initializer} | {
            o for n in graph.node for o in n.output} | {i.name for i in graph.input}

    def get(self, name):
        return self.nh.to_array(self.by_name[name]) if name in self.by_name else None

    def add(self, base, arr):
        name, k = f"{base}_bnfold", 0
        while name in self.taken:
            k += 1
            name = f"{base}_bnfold{k}"
        t = self.nh.from_array(np.asarray(arr), name)
        self.g.initializer.append(t)
        self.by_name[name] = t
        self.taken.add(name)
        return name


def _bn_affine(node, consts):
    """``(s, t)`` with ``BN(x) = s * x + t`` per channel (float64), or None if not foldable."""
    if node.op_type != "BatchNormalization" or len(node.input) < 5:
        return None
    a = _attrs(node)
    if a.get("training_mode", 0) or any(o for o in node.output[1:]):
        return None
    vals = [consts.get(n) for n in node.input[1:5]]
    if any(v is None for v in vals):
        return None
    gamma, beta, mean, var = (np.asarray(v, np.float64).reshape(-1) for v in vals)
    if not (gamma.shape == beta.shape == mean.shape == var.shape):
        return None
    eps = float(a.get("epsilon", 1e-5))
    if not np.all(var + eps > 0):
        return None
    s = gamma / np.sqrt(var + eps)
    return s, beta - mean * s


def _can_scale(node, s, consts):
    """Whether :func:`_scale_producer` can rewrite ``node`` for a per-channel ``s``."""
    if node.op_type == "Conv":
        w = consts.get(node.input[1])
        has_b = len(node.input) > 2 and bool(node.input[2])
        return (w is not None and w.ndim == 4 and w.shape[0] == s.size
                and (not has_b or consts.get(node.input[2]) is not None))
    if node.op_type == "BatchNormalization":
        gamma, beta = consts.get(node.input[1]), consts.get(node.input[2])
        return gamma is not None and beta is not None and gamma.size == beta.size == s.size
    return False


def _scale_producer(node, s, t, consts):
    """Make ``node`` (a Conv with constant weights, or a BN) compute ``s * node(x) + t``."""
    dt = None
    if node.op_type == "Conv":
        w = consts.get(node.input[1])
        if w is None or w.ndim != 4 or w.shape[0] != s.size:
            return False
        dt = w.dtype
        b = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else \
            np.zeros(w.shape[0], dt)
        if b is None:
            return False
        w2 = (w.astype(np.float64) * s[:, None, None, None]).astype(dt)
        b2 = (b.astype(np.float64) * s + t).astype(dt)
        node.input[1] = consts.add(node.input[1], w2)
        while len(node.input) < 3:
            node.input.append("")
        node.input[2] = consts.add(node.input[2] or node.input[1], b2)
        return True
    if node.op_type == "BatchNormalization":
        gamma, beta = consts.get(node.input[1]), consts.get(node.input[2])
        if gamma is None or beta is None or gamma.size != s.size:
            return False
        dt = gamma.dtype
        node.input[1] = consts.add(node.input[1], (gamma.astype(np.float64) * s).astype(dt))
        node.input[2] = consts.add(node.input[2],
                                   (beta.astype(np.float64) * s + t).astype(dt))
        return True
    return False


def _fold_into_consumer(bn, s, t, consumer, consts, shapes):
    """Fold ``x = s * z + t`` into a Gemm/MatMul/unpadded Conv that reads ``x``."""
    x = bn.output[0]
    op = consumer.op_type
    if op in ("Gemm", "MatMul") and consumer.input[0] == x and shapes.get(x, ()) and \
            len(shapes[x]) == 2:
        a = _attrs(consumer)
        w = consts.get(consumer.input[1])
        if w is None or w.ndim != 2 or a.get("transA", 0):
            return False
        dt = w.dtype
        wk = w.astype(np.float64).T if a.get("transB", 0) else w.astype(np.float64)  # (K, M)
        if wk.shape[0] != s.size:
            return False
        alpha = float(a.get("alpha", 1.0)) if op == "Gemm" else 1.0
        beta = float(a.get("beta", 1.0)) if op == "Gemm" else 1.0
        m = wk.shape[1]
        c = None
        if op == "Gemm" and len(consumer.input) > 2 and consumer.input[2]:
            c = consts.get(consumer.input[2])
            if c is None or c.size not in (1, m):
                return False
        c = np.zeros(m) if c is None else np.broadcast_to(
            np.asarray(c, np.float64).reshape(-1), (m,)) * beta
        c = c + alpha * (t @ wk)
        w2 = wk * s[:, None]
        if op == "Gemm" and a.get("transB", 0):
            w2 = w2.T
        new_w = consts.add(consumer.input[1], w2.astype(dt))
        new_c = consts.add(consumer.input[2] if op == "Gemm" and len(consumer.input) > 2
                           and consumer.input[2] else consumer.input[1] + "_bias",
                           c.astype(dt))
        if op == "MatMul":
            consumer.op_type = "Gemm"
        del consumer.input[:]
        consumer.input.extend([bn.input[0], new_w, new_c])
        _set_attr(consumer, "beta", 1.0)
        return True
    if op == "Conv" and consumer.input[0] == x:
        a = _attrs(consumer)
        w = consts.get(consumer.input[1])
        if w is None or w.ndim != 4 or w.shape[1] != s.size or a.get("group", 1) != 1:
            return False
        if any(a.get("pads", [0, 0, 0, 0])) or a.get("auto_pad", b"NOTSET") not in (
                b"NOTSET", "NOTSET", b"VALID", "VALID"):
            return False  # zero padding of x is not zero padding of z
        dt = w.dtype
        b = consts.get(consumer.input[2]) if len(consumer.input) > 2 and consumer.input[2] \
            else np.zeros(w.shape[0], dt)
        if b is None:
            return False
        w64 = w.astype(np.float64)
        b2 = b.astype(np.float64) + np.einsum("mckl,c->m", w64, t)
        w2 = w64 * s[None, :, None, None]
        new_w = consts.add(consumer.input[1], w2.astype(dt))
        new_b = consts.add(consumer.input[2] if len(consumer.input) > 2 and consumer.input[2]
                           else consumer.input[1] + "_bias", b2.astype(dt))
        del consumer.input[:]
        consumer.input.extend([bn.input[0], new_w, new_b])
        return True
    return False


def _fold_batchnorms(model, counts):
    """Fold BatchNormalization nodes the importer cannot (see the module docstring, item 4)."""
    g = model.graph
    consts = _Consts(g)
    shapes = _static_shapes(model)
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output if o}
    users: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            if t:
                users.setdefault(t, []).append(n)
    drop = []
    for bn in g.node:
        aff = _bn_affine(bn, consts)
        if aff is None:
            continue
        s, t = aff
        src = bn.input[0]
        prod = producer.get(src)
        if prod is not None and prod.op_type in ("Conv", "Gemm", "MatMul"):
            continue  # the importer folds it into that layer
        done = False
        if (prod is not None and prod.op_type == "Add" and len(users.get(src, [])) == 1
                and src not in outputs and len(prod.input) == 2):
            sides = [producer.get(i) for i in prod.input]
            if (all(p is not None and p.op_type in ("Conv", "BatchNormalization")
                    and len(users.get(p.output[0], [])) == 1 and p.output[0] not in outputs
                    for p in sides) and sides[0] is not sides[1]):
                # both or neither: nothing is rewritten unless both sides can take the scale
                if all(_can_scale(p, s, consts) for p in sides):
                    _scale_producer(sides[0], s, t, consts)
                    _scale_producer(sides[1], s, np.zeros_like(t), consts)
                    done = True
        if not done:
            us = users.get(bn.output[0], [])
            if len(us) == 1 and bn.output[0] not in outputs:
                done = _fold_into_consumer(bn, s, t, us[0], consts, shapes)
                if done:
                    drop.append(bn)
                    counts["BatchNormalization into its consumer"] += 1
                    continue
        if done:
            # the BN is now the identity: its consumers read the Add directly
            for u in users.get(bn.output[0], []):
                for i, x in enumerate(u.input):
                    if x == bn.output[0]:
                        u.input[i] = src
            if bn.output[0] in outputs:
                prod.output[0] = bn.output[0]
                for u in users.get(src, []):
                    for i, x in enumerate(u.input):
                        if x == src:
                            u.input[i] = bn.output[0]
            drop.append(bn)
            counts["BatchNormalization through a residual Add"] += 1
    if drop:
        ids = {id(n) for n in drop}
        keep = [n for n in g.node if id(n) not in ids]
        del g.node[:]
        g.node.extend(keep)
    return bool(drop)


def _explicit_auto_pad(model, counts):
    """``auto_pad`` SAME_UPPER / SAME_LOWER -> explicit ``pads`` from the static input shape."""
    g = model.graph
    shapes = _static_shapes(model)
    consts = _Consts(g)
    for node in g.node:
        if node.op_type not in ("Conv", "MaxPool", "AveragePool"):
            continue
        a = _attrs(node)
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            continue
        shp = shapes.get(node.input[0])
        if shp is None or len(shp) != 4:
            continue
        kernel = a.get("kernel_shape")
        if kernel is None and node.op_type == "Conv":
            w = consts.get(node.input[1])
            kernel = None if w is None else list(w.shape[2:])
        if kernel is None or len(kernel) != 2:
            continue
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        begin, end = [], []
        for i in range(2):
            n_in, k, st, d = shp[2 + i], kernel[i], strides[i], dil[i]
            out = -(-n_in // st)
            total = max((out - 1) * st + (k - 1) * d + 1 - n_in, 0)
            small, big = total // 2, total - total // 2
            if auto == "SAME_UPPER":
                begin.append(small), end.append(big)
            else:
                begin.append(big), end.append(small)
        _set_attr(node, "auto_pad", "NOTSET")
        _set_attr(node, "pads", [int(v) for v in begin + end])
        counts[f"auto_pad {auto} of {node.op_type}"] += 1


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
    rewrites = Counter()
    _explicit_auto_pad(m, rewrites)
    for _ in range(8):  # a fold can expose the next (BN after BN)
        if not _fold_batchnorms(m, rewrites):
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
    for what, n in sorted(rewrites.items()):
        actions.append(f"{what}: {n} node{'s' if n != 1 else ''}" if what.startswith("auto_pad")
                       else f"folded {n} {what}")
    if dead.get("dead"):
        actions.append(f"removed {dead['dead']} node{'s' if dead['dead'] != 1 else ''} that do "
                       f"not reach the output")
    if dead.get("initializer"):
        actions.append(f"dropped {dead['initializer']} unused initializer"
                       f"{'s' if dead['initializer'] != 1 else ''}")
    return m, actions
