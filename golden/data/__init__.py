"""Data shipped with ilmpq: the embedded default model and its data set.

``digits.npz``
    scikit-learn's copy of the UCI handwritten digits (1797 grayscale 8x8 images, pixels 0..16),
    stored as ``uint8`` 0..255 (``round(p * 255 / 16)``) and split once by a seeded permutation
    (seed 0) into 1257 ``train``, 180 ``calib`` and 360 ``test`` images. Entries ``x_<split>``
    ``(N, 8, 8)`` uint8 and ``y_<split>`` ``(N,)`` uint8. Shipped so that the runtime needs no
    scikit-learn.
``default_model.onnx``
    A small float CNN trained on the ``train`` split by ``tools/train_default_model.py``
    (PyTorch, development only): conv3x3(1->16)+BN+ReLU, conv3x3(16->32)+BN+ReLU, maxpool 2,
    conv3x3(32->32)+BN+ReLU, a residual block of two conv3x3(32->32)+BN, global average pool,
    FC(32->10); about 0.75 M MACs and 33 k parameters. Its input is ``pixels / input_std`` (mean
    0), recorded in the ONNX metadata properties ``ilmpq.input_mean`` / ``ilmpq.input_std``.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from ..errors import IlmpqValueError

__all__ = ["SPLITS", "default_model_path", "load_default_model", "load_digits"]

#: The splits of ``digits.npz``.
SPLITS = ("train", "calib", "test")


def _path(name: str):
    return resources.files(__name__).joinpath(name)


def default_model_path():
    """Path of the embedded float ONNX model (a :class:`pathlib.Path`-like resource)."""
    return _path("default_model.onnx")


def load_default_model():
    """The embedded default model as a :class:`~ilmpq.golden.float_model.FloatModel`."""
    from ..onnx_import import load_onnx

    with resources.as_file(default_model_path()) as p:
        return load_onnx(p)


def load_digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """One split of the digits data set.

    Parameters
    ----------
    split : "train", "calib" or "test"

    Returns
    -------
    (images, labels)
        ``images`` uint8 ``(N, 1, 8, 8)`` pixels 0..255 (NCHW, the model's input layout),
        ``labels`` int64 ``(N,)`` in 0..9.
    """
    if split not in SPLITS:
        raise IlmpqValueError(f"unknown digits split {split!r}; splits are: {', '.join(SPLITS)}")
    with resources.as_file(_path("digits.npz")) as p, np.load(p) as d:
        x = d[f"x_{split}"]
        y = d[f"y_{split}"]
    return x[:, None, :, :].astype(np.uint8), y.astype(np.int64)
