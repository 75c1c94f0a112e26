"""Train the embedded default model and write golden/data/{digits.npz, default_model.onnx}.

Development tool only, not part of the installed package. It needs **PyTorch** (training) and
**scikit-learn** (only for its bundled copy of the UCI digits data set, no download):

    python -m venv /tmp/train && /tmp/train/bin/pip install torch==2.13.0 scikit-learn onnx numpy
    /tmp/train/bin/python tools/train_default_model.py

The package itself never imports torch or scikit-learn: the data split is shipped as
``golden/data/digits.npz`` and the model as ``golden/data/default_model.onnx``, which is written
node by node with ``onnx.helper`` (no torch exporter), keeping the BatchNormalization nodes so
that the importer's folding is exercised.

Data: scikit-learn's digits, 1797 grayscale 8x8 images with pixels 0..16, stored as uint8
0..255 (``round(p * 255 / 16)``), split once by a seeded permutation (seed 0) into 1257 train,
180 calibration and 360 test images.

Model (input: x = (pixels - 0) / INPUT_STD, NCHW 1x8x8):

    conv3x3(1->16)+BN+ReLU, conv3x3(16->32)+BN+ReLU, maxpool 2x2,
    conv3x3(32->32)+BN+ReLU,
    residual block: conv3x3(32->32)+BN+ReLU, conv3x3(32->32)+BN, + skip, ReLU,
    global average pool, FC(32->10)

The mean is 0 so that folding the normalization into the zero-padded first convolution is exact
(the accelerator pads raw pixels with 0). Everything is seeded; the script prints the float test
accuracy of the exported ONNX model (evaluated with onnx.reference).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from sklearn.datasets import load_digits
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "golden" / "data"
SEED = 0
N_TRAIN, N_CALIB, N_TEST = 1257, 180, 360


def make_split():
    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8), 0..255
    labels = d.target.astype(np.uint8)
    assert images.shape[0] == N_TRAIN + N_CALIB + N_TEST
    perm = np.random.default_rng(SEED).permutation(images.shape[0])
    idx = {"train": perm[:N_TRAIN], "calib": perm[N_TRAIN:N_TRAIN + N_CALIB],
           "test": perm[N_TRAIN + N_CALIB:]}
    out = {}
    for split, ix in idx.items():
        out[f"x_{split}"] = images[ix]
        out[f"y_{split}"] = labels[ix]
    out["seed"] = np.array(SEED)
    return out


class Net(nn.Module):
    def __init__(self):
        super().__init__()

        def cbr(cin, cout):
            return nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)

        self.conv1, self.bn1 = cbr(1, 16)
        self.conv2, self.bn2 = cbr(16, 32)
        self.conv3, self.bn3 = cbr(32, 32)
        self.conv4, self.bn4 = cbr(32, 32)
        self.conv5, self.bn5 = cbr(32, 32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        r = torch.relu
        x = r(self.bn1(self.conv1(x)))
        x = r(self.bn2(self.conv2(x)))
        x = nn.functional.max_pool2d(x, 2)
        x = r(self.bn3(self.conv3(x)))
        y = r(self.bn4(self.conv4(x)))
        y = self.bn5(self.conv5(y))
        x = r(y + x)
        x = x.mean(dim=(2, 3))
        return self.fc(x)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts by up to one pixel (zero fill)."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
    return out


def train(data, input_std, epochs, log):
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(SEED)
    x = torch.tensor(data["x_train"][:, None].astype(np.float32) / input_std)
    y = torch.tensor(data["y_train"].astype(np.int64))
    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * 20)
    lossf = nn.CrossEntropyLoss(label_smoothing=0.05)
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(x.shape[0], generator=gen)
        bs = -(-x.shape[0] // 20)
        tot = 0.0
        for i in range(20):
            ix = perm[i * bs:(i + 1) * bs]
            xb = augment(x[ix], gen)
            opt.zero_grad()
            loss = lossf(net(xb), y[ix])
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(ix)
        if log and (ep % 20 == 0 or ep == epochs - 1):
            print(f"epoch {ep:3d}  loss {tot / x.shape[0]:.4f}")
    net.eval()
    return net


def to_onnx(net: Net, input_std: float, meta: dict) -> onnx.ModelProto:
    inits, nodes = [], []

    def add(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def conv_bn(idx, x, relu):
        conv, bn = getattr(net, f"conv{idx}"), getattr(net, f"bn{idx}")
        w = add(f"conv{idx}.weight", conv.weight.detach().numpy())
        nodes.append(helper.make_node("Conv", [x, w], [f"conv{idx}_out"], name=f"conv{idx}",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                      strides=[1, 1]))
        ps = [add(f"bn{idx}.{k}", getattr(bn, a).detach().numpy())
              for k, a in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                           ("var", "running_var"))]
        nodes.append(helper.make_node("BatchNormalization", [f"conv{idx}_out"] + ps,
                                      [f"bn{idx}_out"], name=f"bn{idx}", epsilon=bn.eps))
        if not relu:
            return f"bn{idx}_out"
        nodes.append(helper.make_node("Relu", [f"bn{idx}_out"], [f"relu{idx}_out"],
                                      name=f"relu{idx}"))
        return f"relu{idx}_out"

    x = conv_bn(1, "input", True)
    x = conv_bn(2, x, True)
    nodes.append(helper.make_node("MaxPool", [x], ["pool_out"], name="pool",
                                  kernel_shape=[2, 2], strides=[2, 2]))
    x = conv_bn(3, "pool_out", True)
    y = conv_bn(4, x, True)
    y = conv_bn(5, y, False)
    nodes.append(helper.make_node("Add", [y, x], ["res_out"], name="res_add"))
    nodes.append(helper.make_node("Relu", ["res_out"], ["res_relu"], name="res_relu"))
    nodes.append(helper.make_node("GlobalAveragePool", ["res_relu"], ["gap_out"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap_out"], ["flat"], name="flatten", axis=1))
    w = add("fc.weight", net.fc.weight.detach().numpy())
    b = add("fc.bias", net.fc.bias.detach().numpy())
    nodes.append(helper.make_node("Gemm", ["flat", w, b], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "ilmpq_digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="ilmpq tools/train_default_model.py")
    model.ir_version = 8
    props = {"ilmpq.input_mean": json.dumps([0.0]), "ilmpq.input_std": json.dumps([input_std]),
             **{f"ilmpq.{k}": json.dumps(v) for k, v in meta.items()}}
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--out-dir", type=Path, default=DATA)
    args = ap.parse_args()
    data = make_split()
    # normalization: mean 0 (exact fold with zero padding), std = RMS of the training pixels
    input_std = float(np.round(np.sqrt(np.mean(data["x_train"].astype(np.float64) ** 2)), 1))
    print(f"split: train {len(data['y_train'])}, calib {len(data['y_calib'])}, "
          f"test {len(data['y_test'])}; input_std {input_std}")
    net = train(data, input_std, args.epochs, log=True)
    with torch.no_grad():
        xt = torch.tensor(data["x_test"][:, None].astype(np.float32) / input_std)
        torch_acc = float((net(xt).argmax(1).numpy() == data["y_test"]).mean())
    meta = {"dataset": "scikit-learn digits, 8x8, pixels 0..16 scaled to 0..255",
            "split_seed": SEED, "epochs": args.epochs, "torch_test_accuracy": torch_acc}
    model = to_onnx(net, input_std, meta)
    sess = ReferenceEvaluator(model)
    xt = data["x_test"][:, None].astype(np.float32) / np.float32(input_std)
    logits = sess.run(None, {"input": xt})[0]
    acc = float((logits.argmax(1) == data["y_test"]).mean())
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                   "ilmpq.onnx_test_accuracy": json.dumps(acc)})
    args.out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out_dir / "digits.npz", **data)
    onnx.save(model, args.out_dir / "default_model.onnx")
    size = (args.out_dir / "default_model.onnx").stat().st_size
    print(f"float test accuracy: torch {torch_acc:.4f}, onnx.reference {acc:.4f} "
          f"({int(round(acc * len(xt)))}/{len(xt)}); model {size} bytes")


if __name__ == "__main__":
    main()
