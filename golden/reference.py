"""Reference execution of a quantized model: the integer answer every other path must give.

:func:`run` executes the layers of a :class:`~ilmpq.golden.model.QModel` in order with the
integer operators of :mod:`ilmpq.golden.ops` and returns every tensor. The hardware, the compiler
and the simulators are checked against it layer by layer, bit for bit.

Tensors are returned in the dtype of their :class:`~ilmpq.golden.model.TensorSpec`
(``TensorSpec.dtype``: ``uint8`` for unsigned tensors, ``int8`` for signed ones), shape
``(C, H, W)``; batched results (:func:`run_batch`) have a leading batch axis.
"""

from __future__ import annotations

import time

import numpy as np

from .errors import IlmpqValueError
from .formats import NumericSpec
from .model import (
    AvgPoolLayer, ConcatLayer, ConvLayer, FlattenLayer, GlobalAvgPoolLayer, Layer, LutLayer,
    MaxPoolLayer, ModelFormatError, MulLayer, PermuteLayer, QModel, SliceLayer,
)
from .ops import (
    _int_array, avg_pool, concat_requant, conv2d_acc, flatten, global_avg_pool, lut_apply,
    max_pool, mul_requant, permute_channels, requantize, slice_chw,
)

__all__ = ["run", "run_layer", "run_batch", "predict"]


def run_layer(model: QModel, layer: Layer, tensors: dict[str, np.ndarray], *,
              spec: NumericSpec | None = None) -> np.ndarray:
    """Execute one layer on already computed tensors and return its output.

    Parameters
    ----------
    model : QModel
        Supplies the tensor specs (input width, output width and signedness).
    layer : Layer
        One of ``model.layers``.
    tensors : dict
        At least the layer's input (and residual) tensors, ``(C, H, W)`` integer arrays.
    spec : NumericSpec, optional
        Defaults to ``model.numeric``.

    Returns
    -------
    np.ndarray
        The output tensor, ``(C, H, W)``, in its spec's dtype.
    """
    spec = model.numeric if spec is None else spec
    out = model.tensors[layer.output]
    x = tensors[layer.input]
    xs = model.tensors[layer.input]
    if isinstance(layer, ConvLayer):
        acc = conv2d_acc(x, layer.weight, layer.bias, stride=layer.stride,
                         padding=layer.padding, spec=spec, precision=layer.precision,
                         in_bits=xs.bits, groups=layer.groups, in_signed=xs.signed)
        res = None if layer.residual is None else tensors[layer.residual]
        y = requantize(acc, layer.mult, layer.shift, res=res, res_mult=layer.res_mult,
                       relu=layer.relu, out_bits=out.bits, out_signed=out.signed, spec=spec)
    elif isinstance(layer, MaxPoolLayer):
        y = max_pool(x, layer.kernel, layer.stride, layer.padding)
    elif isinstance(layer, AvgPoolLayer):
        y = avg_pool(x, layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode,
                     count_include_pad=layer.count_include_pad)
    elif isinstance(layer, GlobalAvgPoolLayer):
        y = global_avg_pool(x)
    elif isinstance(layer, FlattenLayer):
        y = flatten(x)
    elif isinstance(layer, LutLayer):
        y = lut_apply(x, layer.table, in_bits=xs.bits, in_signed=xs.signed)
    elif isinstance(layer, MulLayer):
        gs = model.tensors[layer.gate]
        y = mul_requant(x, tensors[layer.gate], x_bits=xs.bits, x_signed=xs.signed,
                        g_bits=gs.bits, g_signed=gs.signed, mult=layer.mult, shift=layer.shift,
                        out_bits=out.bits, out_signed=out.signed, spec=spec)
    elif isinstance(layer, ConcatLayer):
        y = concat_requant([tensors[t] for t in layer.inputs], mults=layer.mults,
                           shifts=layer.shifts, out_bits=out.bits, out_signed=out.signed,
                           spec=spec)
    elif isinstance(layer, SliceLayer):
        y = slice_chw(x, layer.starts, layer.stops, layer.steps)
    elif isinstance(layer, PermuteLayer):
        y = permute_channels(x, layer.perm)
    else:
        raise ModelFormatError(f"unknown layer object {layer!r}")
    return y.astype(out.dtype)


def run(model: QModel, image, *, spec: NumericSpec | None = None, validate: bool = True,
        timings: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Run one image through the model and return every tensor.

    Parameters
    ----------
    model : QModel
    image : integer array ``(C, H, W)``
        The network input: unsigned 8-bit pixels of the input tensor's shape.
    spec : NumericSpec, optional
        Widths to execute with; defaults to ``model.numeric``.
    validate : bool
        Run :meth:`QModel.validate` first (the operators check their own inputs either way).
    timings : dict, optional
        If given, filled with ``{layer name: seconds}``.

    Returns
    -------
    dict[str, np.ndarray]
        ``{tensor name: array}`` for every tensor, the input included, in execution order.
    """
    spec = model.numeric if spec is None else spec
    if validate:
        model.validate(spec)
    tin = model.tensors[model.input]
    img = _int_array("image", image, *tin.range, ndim=3, what="8-bit pixels")
    if img.shape != tin.shape:
        raise IlmpqValueError(
            f"image has shape {img.shape} but the model input {model.input!r} is {tin.shape} "
            f"(C, H, W)")
    tensors = {model.input: img.astype(tin.dtype)}
    for layer in model.layers:
        t0 = time.perf_counter()
        tensors[layer.output] = run_layer(model, layer, tensors, spec=spec)
        if timings is not None:
            timings[layer.name] = time.perf_counter() - t0
    return tensors


def run_batch(model: QModel, images, *, spec: NumericSpec | None = None,
              validate: bool = True) -> dict[str, np.ndarray]:
    """Run a batch ``(N, C, H, W)``; every tensor gets a leading batch axis ``(N, C, H, W)``."""
    imgs = np.asarray(images)
    if imgs.ndim != 4:
        raise IlmpqValueError(f"images must have shape (N, C, H, W), not {imgs.shape}")
    if validate:
        model.validate(model.numeric if spec is None else spec)
    outs = [run(model, img, spec=spec, validate=False) for img in imgs]
    return {name: np.stack([o[name] for o in outs]) if outs else
            np.zeros((0,) + model.tensors[name].shape, model.tensors[name].dtype)
            for name in model.tensors}


def predict(model: QModel, images, *, spec: NumericSpec | None = None):
    """Class index (argmax of the flattened output tensor; the lowest index wins a tie).

    Returns an ``int`` for one image ``(C, H, W)`` and an int64 array ``(N,)`` for a batch
    ``(N, C, H, W)``.
    """
    imgs = np.asarray(images)
    if imgs.ndim == 3:
        out = run(model, imgs, spec=spec)[model.output]
        return int(np.argmax(out.reshape(-1)))
    if imgs.ndim != 4:
        raise IlmpqValueError(
            f"images must have shape (C, H, W) or (N, C, H, W), not {imgs.shape}")
    outs = run_batch(model, imgs, spec=spec)[model.output]
    return np.argmax(outs.reshape(len(imgs), -1), axis=1).astype(np.int64)
