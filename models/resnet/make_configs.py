#!/usr/bin/env python3
"""Writes the residual configs of issue 26 (models/README.md, "Residual trellises").

  models/resnet/make_configs.py [--check]     (from anywhere; --check: fail when a file differs)

CIFAR-10, the authors' network (their published ufukcbicici/cigt, cigt/resnet_cigt_constants.py
and the ResNet trellis it configures): a 3x3 stem conv 3 -> 16, BasicBlocks (conv3x3-BN-ReLU-
conv3x3-BN plus the shortcut: identity, or conv 1x1 + BN where the stride or width changes, then
ReLU), 54 in depth with stride 2 at blocks 18 and 36; the trellis [1, 2, 4] cuts them into
9@16 | 9@12 + 18@16 | 18@16; each leaf ends in global average pooling and a linear layer.
  cifar10_resnet110_trellis.json   [1, 2, 4], our routers (a conv before the pool)
  cifar10_resnet110_thick.json     ResNet-110: 18 blocks each at 16, 32, 64 channels
  cifar10_resnet110_thin.json      one path of the trellis as a plain network
Fashion-MNIST residual family (28x28 gray, our widths; the reference model of issue 26):
  fashion_mnist_resnet.json, fashion_mnist_resnet_thin.json, fashion_mnist_resnet_thick.json
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(HERE)

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def conv(out, k=3, s=1, p=None, bias=False):
    return {"type": "conv", "out": out, "kernel": k, "stride": s,
            "padding": k // 2 if p is None else p, "bias": bias}


BN = {"type": "batchnorm"}
RELU = {"type": "relu"}


def block(cin, cout, stride):
    """A BasicBlock (He et al. 2016): the shortcut is a 1x1 conv + BN where shape changes."""
    b = {"type": "residual", "main": [conv(cout, 3, stride), BN, RELU, conv(cout, 3, 1), BN]}
    if stride != 1 or cin != cout:
        b["shortcut"] = [conv(cout, 1, stride, 0), BN]
    return b


class Chain:
    """Blocks of the authors' network in depth order: stride 2 at the given depths."""

    def __init__(self, cin, double_stride):
        self.c, self.depth, self.double = cin, 0, double_stride

    def blocks(self, count, width):
        out = []
        for _ in range(count):
            stride = 2 if self.depth in self.double else 1
            out.append(block(self.c, width, stride))
            self.c, self.depth = width, self.depth + 1
        return out


def head(classes):
    return [{"type": "globalavgpool"}, {"type": "linear", "out": len(classes)}]


def stem(out):
    return [conv(out, 3, 1), BN, RELU]


def router(pool, hidden=128, conv_out=None, conv_stride=1):
    r = {"pool": pool, "hidden": hidden}
    if conv_out:
        r["ops"] = [conv(conv_out, 3, conv_stride), BN, RELU]
    return r


# The training recipe for CIFAR-10: SGD 0.1, momentum 0.9, weight decay 5e-4, batch 128, the
# step schedule of He et al. scaled to 300 epochs, random crop (4-pixel shift) and flip; the
# trellis warms up for 30 epochs and routes with the information gain after that.
CIFAR_TRAIN = {
    "epochs": 300, "warmup_epochs": 30, "batch_size": 128, "lr": 0.1,
    "lr_schedule": [[0, 1.0], [150, 0.1], [225, 0.01]],
    "momentum": 0.9, "weight_decay": 0.0005,
    "information_gain_weight": 1.0, "information_gain_beta": 1.0,
    "temperature": {"initial": 25.0, "decay": 0.9999, "min": 0.1},
    "routing_randomization": 0.5, "validation_samples": 5000, "seed": 1,
    "augment": {"flip": True, "shift": 4},
}


def cifar_input():
    return {"channels": 3, "height": 32, "width": 32, "range": [0.0, 1.0]}


def cifar_trellis():
    ch = Chain(16, {18, 36})
    l0 = stem(16) + ch.blocks(9, 16)
    l1 = ch.blocks(9, 12) + ch.blocks(18, 16)
    c1 = ch.c
    l2 = ch.blocks(18, 16) + head(CIFAR_CLASSES)
    # every expert of a layer starts from the same width: the chain above ran once
    assert c1 == 16
    return {"name": "cifar10_resnet110_trellis", "input": cifar_input(),
            "classes": CIFAR_CLASSES,
            "layers": [
                {"experts": 1, "ops": l0, "router": router(2, conv_out=16, conv_stride=2)},
                {"experts": 2, "ops": l1, "router": router(2, conv_out=16)},
                {"experts": 4, "ops": l2}],
            "train": CIFAR_TRAIN}


def cifar_single(name, plan):
    ch = Chain(16, {18, 36})
    ops = stem(16)
    for count, width in plan:
        ops += ch.blocks(count, width)
    train = dict(CIFAR_TRAIN, warmup_epochs=0)
    return {"name": name, "input": cifar_input(), "classes": CIFAR_CLASSES,
            "layers": [{"experts": 1, "ops": ops + head(CIFAR_CLASSES)}], "train": train}


# Fashion-MNIST residual family: 28x28 gray, a 3x3 stem at 16, blocks at 14x14 after a stride-2
# first block of layer 1 and 7x7 after layer 2's; the trellis [1, 2, 4].
FASHION_TRAIN = {
    "epochs": 100, "warmup_epochs": 10, "batch_size": 125, "lr": 0.05,
    "lr_schedule": [[0, 1.0], [50, 0.1], [75, 0.01]],
    "momentum": 0.9, "weight_decay": 0.0005,
    "information_gain_weight": 0.06344, "information_gain_beta": 2.115,
    "temperature": {"initial": 25.0, "decay": 0.9995, "min": 0.1},
    "routing_randomization": 0.25, "validation_samples": 5000, "seed": 1,
    "augment": {"flip": True, "shift": 2},
}


def fashion_input():
    return {"channels": 1, "height": 28, "width": 28, "range": [0.0, 1.0]}


def fashion(name, experts, widths, depth=(2, 3, 3)):
    """widths: channels of layer 0, 1, 2 experts; experts: [1, K1, K2]."""
    layers = []
    c = 16
    for l, (n, w) in enumerate(zip(depth, widths)):
        ops = stem(16) if l == 0 else []
        for i in range(n):
            stride = 2 if (l > 0 and i == 0) else 1
            ops.append(block(c, w, stride))
            c = w
        layer = {"experts": experts[l], "ops": ops}
        if l == len(depth) - 1:
            layer["ops"] += head(FASHION_CLASSES)
        layers.append(layer)
    train = dict(FASHION_TRAIN)
    if len(layers) == 3 and experts[1] > 1:
        layers[0]["router"] = router(7)
        layers[1]["router"] = router(7)
    else:
        # a baseline: one expert per layer, one layer
        ops = []
        for layer in layers:
            ops += layer["ops"]
        layers = [{"experts": 1, "ops": ops}]
        train["warmup_epochs"] = 0
    return {"name": name, "input": fashion_input(), "classes": FASHION_CLASSES,
            "layers": layers, "train": train}


def configs():
    return {
        "cifar10_resnet110_trellis.json": cifar_trellis(),
        "cifar10_resnet110_thick.json": cifar_single("cifar10_resnet110_thick",
                                                     [(18, 16), (18, 32), (18, 64)]),
        "cifar10_resnet110_thin.json": cifar_single("cifar10_resnet110_thin",
                                                    [(9, 16), (9, 12), (18, 16), (18, 16)]),
        "fashion_mnist_resnet.json": fashion("fashion_mnist_resnet", [1, 2, 4], (16, 24, 32)),
        "fashion_mnist_resnet_thin.json": fashion("fashion_mnist_resnet_thin", [1, 1, 1],
                                                  (16, 24, 32)),
        "fashion_mnist_resnet_thick.json": fashion("fashion_mnist_resnet_thick", [1, 1, 1],
                                                   (16, 48, 64)),
    }


def main():
    check = "--check" in sys.argv[1:]
    bad = 0
    for name, cfg in configs().items():
        path = os.path.join(MODELS, name)
        text = json.dumps(cfg, indent=1) + "\n"
        if check:
            old = open(path).read() if os.path.exists(path) else None
            if old != text:
                print(f"{path}: differs from models/resnet/make_configs.py", file=sys.stderr)
                bad = 1
            continue
        with open(path, "w") as f:
            f.write(text)
        print(path)
    return bad


if __name__ == "__main__":
    sys.exit(main())
