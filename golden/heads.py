"""Output heads: a Softmax, LogSoftmax or Sigmoid at a classifier's output.

A trained classifier often ends in a normalization of its logits. Each of these is a monotonic
function of the logits (per image for Softmax/LogSoftmax, per element for Sigmoid), so it never
changes which class ranks first: ilmpq computes the integer logits on the accelerator and applies
the head on the host, in float, to the dequantized logits (``q * scale``) — the importer records
it (:attr:`ilmpq.golden.float_model.FloatModel.meta` ``["output_head"]``), the quantizer carries
it into the quantized model's meta, and :func:`apply_head` is the one definition both use.
"""

from __future__ import annotations

import numpy as np

from .errors import IlmpqValueError

__all__ = ["HEADS", "apply_head", "describe_head"]

#: ONNX ops accepted as the output head.
HEADS = ("Softmax", "LogSoftmax", "Sigmoid")


def describe_head(head) -> str:
    """One line for reports: what runs on the host after the accelerator."""
    if not head:
        return "none"
    return (f"{head['op']} over the classes, on the host in float after the accelerator "
            f"(monotonic: the ranking of the classes is unchanged)")


def apply_head(logits, head) -> np.ndarray:
    """Apply an output head to real-valued logits ``(N, K)`` (or ``(N, K, 1, 1)``), float64."""
    x = np.asarray(logits, dtype=np.float64)
    if not head:
        return x
    op = head.get("op") if isinstance(head, dict) else None
    if op not in HEADS:
        raise IlmpqValueError(f"unknown output head {head!r}; known: {', '.join(HEADS)}")
    if op == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    shape = x.shape
    flat = x.reshape(shape[0], -1)
    z = flat - flat.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    out = z - lse if op == "LogSoftmax" else np.exp(z - lse)
    return out.reshape(shape)
