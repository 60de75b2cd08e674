#!/usr/bin/env python3
"""Train a trellis in PyTorch on an image folder (ROOT/<class>/*.png|jpg, torchvision's
ImageFolder layout; ROOT/train/<class>/... and ROOT/test|val/<class>/... when present) for one
epoch, save it as a cigt model file, and print the commands that serve it with cigt / cigtd.

As `cigt train --data ROOT` does, the images are read in cigt's order and the last
--validation N of them are held out: the model is chosen on them (the best epoch) and the
provenance records the split (data.train, data.validation, data.images, data.dir), so that
`cigt tune` tunes on those images and `cigt eval` refuses to score the folder it trained on.

    PYTHONPATH=python /usr/bin/python3 python/examples/train_folder.py ROOT --out my.safetensors

Across processes or machines (DistributedDataParallel), launch the same script with torchrun;
each process trains on its own share of the images and rank 0 writes the file:

    torchrun --nproc_per_node 2 python/examples/train_folder.py ROOT --out my.safetensors

The architecture is a small trellis (1-2-4 experts) sized from --channels and --size, or the
one in --config (a cigt config: its train section gives the learning rate, momentum,
information-gain weight and beta, temperature and re-routing ratio; its classes and last
linear's width are set from the folder). Images are read with PIL (Debian's python3-pil)."""

import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cigt  # noqa: E402
import cigt.torch as ct  # noqa: E402
from cigt import data  # noqa: E402

DEFAULT_TRAIN = {  # cigt's reference values (models/fashion_mnist.json), one-epoch warm-up share
    "lr": 0.02726, "lr_schedule": [[0, 1.0]], "momentum": 0.9, "weight_decay": 0.0,
    "information_gain_weight": 0.06344, "information_gain_beta": 2.115,
    "temperature": {"initial": 25.0, "decay": 0.999848, "min": 0.01},
    "routing_randomization": 0.491, "warmup_epochs": 1,
}


def small_arch(name, channels, size, classes, std=None, mean=None):
    """A 1-2-4 trellis for size x size inputs: conv5 16 + BN + ReLU + maxpool2, router,
    conv3 16 + ..., router, conv1 16 + ... -> linear 64 -> linear classes."""
    s1 = size // 2
    s2 = s1 // 2
    block = lambda k, pad: [{"type": "conv", "out": 16, "kernel": k, "padding": pad},  # noqa: E731
                            {"type": "batchnorm"}, {"type": "relu"},
                            {"type": "maxpool", "kernel": 2}]
    inp = {"channels": channels, "height": size, "width": size}
    if mean is not None:
        inp["mean"], inp["std"] = mean, std
    else:
        inp["range"] = [0.0, 1.0]
    return {
        "name": name, "input": inp, "classes": classes,
        "layers": [
            {"experts": 1, "ops": block(5, 2), "router": {"pool": s1, "hidden": 32}},
            {"experts": 2, "ops": block(3, 1), "router": {"pool": s2, "hidden": 32}},
            {"experts": 4, "ops": [{"type": "conv", "out": 16, "kernel": 1},
                                   {"type": "batchnorm"}, {"type": "relu"},
                                   {"type": "flatten"}, {"type": "linear", "out": 64},
                                   {"type": "relu"}, {"type": "dropout", "p": 0.1},
                                   {"type": "linear", "out": len(classes)}]},
        ],
    }


def from_config(path, classes):
    arch, train = ct.read_config(path)
    arch = {k: v for k, v in arch.items() if k != "train"}
    arch["classes"] = classes
    last = arch["layers"][-1]["ops"][-1]
    if last.get("type") != "linear":
        sys.exit("%s: the last op must be a linear to set its width to %d classes"
                 % (path, len(classes)))
    last["out"] = len(classes)
    return arch, dict(DEFAULT_TRAIN, **(train or {}))


def accuracy(model, x, y, dev, batch=500):
    """Argmax-routed accuracy (eval mode) on uint8 images x, labels y; 0 when there are none."""
    if len(x) == 0:
        return 0.0
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            pred = model(model.preprocess(x[i:i + batch]).to(dev)).classes().cpu().numpy()
            right += int((pred == y[i:i + batch]).sum())
    model.train()
    return right / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="image folder: ROOT/<class>/*.png|jpg (or ROOT/train/...)")
    ap.add_argument("--out", required=True, help="model file to write")
    ap.add_argument("--config", help="cigt config (architecture + train section)")
    ap.add_argument("--name", default="folder", help="model name (default folder)")
    ap.add_argument("--channels", type=int, default=3, choices=(1, 3))
    ap.add_argument("--size", type=int, default=32, help="input height and width (default 32)")
    ap.add_argument("--input-stats", action="store_true",
                    help="normalise with the training images' per-channel mean/std "
                         "(input.mean/std) instead of range [0, 1]")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: all)")
    ap.add_argument("--warmup-fraction", type=float, default=0.3,
                    help="share of the first epoch's steps with full routing (default 0.3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--validation", type=int, default=None,
                    help="hold out the last N images (cigt's order) for model selection, as "
                         "cigt train does (default: the config's train.validation_samples, "
                         "else a tenth of the images)")
    ap.add_argument("--save-all-ranks", action="store_true",
                    help="with several processes, every rank writes OUT<rank> (for checks)")
    args = ap.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:  # launched by torchrun: one process per GPU (nccl) or per CPU share (gloo)
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) \
        if torch.cuda.is_available() else torch.device("cpu")
    log = (lambda s: print(s, flush=True)) if rank == 0 else (lambda s: None)

    root = args.root
    test_dir = next((os.path.join(root, d) for d in ("test", "val")
                     if os.path.isdir(os.path.join(root, "train"))
                     and os.path.isdir(os.path.join(root, d))), None)
    train_dir = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else root
    classes = data.folder_files(train_dir)[2]
    if args.config:
        arch, train = from_config(args.config, classes)
        c, h, w = arch["input"]["channels"], arch["input"]["height"], arch["input"]["width"]
    else:
        arch, train = small_arch(args.name, args.channels, args.size, classes), DEFAULT_TRAIN
        c, h, w = args.channels, args.size, args.size
    t0 = time.time()
    x, y, _, train_dir = data.load_folder_split(root, c, h, w, log=log)
    n = len(x)
    log("%s: %d images of %d classes decoded to %dx%dx%d in %.1f s"
        % (train_dir, n, len(classes), c, h, w, time.time() - t0))
    nval = args.validation if args.validation is not None \
        else train.get("validation_samples", max(1, n // 10))
    if not 0 <= nval < n:
        sys.exit("--validation %d leaves no training images (of %d)" % (nval, n))
    ntrain = n - nval
    xv, yv = x[ntrain:], y[ntrain:]
    if args.input_stats:
        px = x[:ntrain].reshape(-1, c).astype(np.float64) / 255.0
        arch["input"].pop("range", None)
        arch["input"]["mean"] = [round(v, 6) for v in px.mean(0).tolist()]
        arch["input"]["std"] = [round(max(v, 1e-3), 6) for v in px.std(0).tolist()]

    torch.manual_seed(args.seed)
    model = ct.from_config(arch, seed=args.seed).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=train["lr"], momentum=train["momentum"],
                          weight_decay=train["weight_decay"])
    net = model
    if world > 1:
        # Experts a step's rows never reached get no gradient: find_unused_parameters.
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=True)
    steps_per_epoch = max(1, ntrain // (args.batch * world))
    warm_steps = int(args.warmup_fraction * steps_per_epoch)
    it = 0
    g = torch.Generator().manual_seed(args.seed)
    best = (-1.0, 0, None)  # validation accuracy, epoch (from 1), state
    for epoch in range(args.epochs):
        order = torch.randperm(ntrain, generator=g).numpy()  # the same order on every rank
        for s in range(steps_per_epoch):
            if args.steps and it >= args.steps:
                break
            idx = order[(s * world + rank) * args.batch:(s * world + rank + 1) * args.batch]
            # cigt train's schedule, with the warm-up counted in steps of the first epoch
            ct.apply_schedule(model, train, epoch=0 if (epoch == 0 and s < warm_steps)
                              else max(train["warmup_epochs"], epoch), iteration=it,
                              optimizer=opt)
            xb = model.preprocess(x[idx]).to(dev)
            yb = torch.from_numpy(y[idx]).to(dev)
            out = net(xb)
            loss, ce, igs = ct.loss(out, yb, train["information_gain_weight"],
                                    train["information_gain_beta"], parts=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if it % 10 == 0:
                acc = (out.logits.argmax(1) == yb[out.sample]).float().mean().item()
                log("step %d %s T=%.3g loss %.4f ce %.4f ig %s row accuracy %.3f"
                    % (it, model.routing, model.temperature, loss.item(), ce.item(),
                       [round(v.item(), 4) for v in igs], acc))
            it += 1
        # Model selection as cigt train does it: the best epoch on the held-out images (every
        # epoch's model when there are none).
        vacc = accuracy(model, xv, yv, dev)
        if nval == 0 or vacc > best[0]:
            best = (vacc, epoch + 1, copy.deepcopy(model.state_dict()))
        log("epoch %d: validation accuracy %.4f on %d held-out images%s"
            % (epoch + 1, vacc, nval, " *" if best[1] == epoch + 1 else ""))
        if args.steps and it >= args.steps:
            break
    model.load_state_dict(best[2])
    model.eval()
    if args.save_all_ranks and rank > 0:
        ct.save(model, args.out + str(rank))
    if rank == 0:
        if args.save_all_ranks:
            args.out += "0"
        # The keys of cigt train's provenance (proto/model-format.md section 5), then this
        # script's own.
        config = dict(arch, train=dict(train, epochs=args.epochs, seed=args.seed,
                                       validation_samples=nval))
        prov = {"tool": "cigt.torch examples/train_folder.py", "version": cigt.__version__,
                "seed": args.seed, "epoch": best[1], "epochs": args.epochs,
                "validation_accuracy": best[0],
                "data": {"train": ntrain, "validation": nval, "images": n,
                         "dir": os.path.realpath(root)},
                "config": config, "steps": it, "processes": world, "torch": torch.__version__}
        ct.save(model, args.out, provenance=prov)
        log("wrote %s (%d steps)" % (args.out, it))
        if test_dir:
            xt, yt, _ = data.load_image_folder(test_dir, c, h, w, classes, log=log)
            with torch.no_grad():
                pred = model(model.preprocess(xt).to(dev)).classes().cpu().numpy()
            log("%s: accuracy %.4f on %d images" % (test_dir, float((pred == yt).mean()),
                                                     len(yt)))
        files = sorted(os.listdir(os.path.join(train_dir, classes[0])))
        example = os.path.join(train_dir, classes[0], next(
            (f for f in files if f.lower().endswith(".png")),
            next(f for f in files if f.lower().endswith(data.IMAGE_EXTENSIONS))))
        log("serve it:\n  cigt info %s\n  cigt classify %s %s\n"
            "  cigtd --model %s --listen 127.0.0.1:8080\n"
            "  curl -s --data-binary @%s -H 'Content-Type: image/png' "
            "http://127.0.0.1:8080/v1/classify"
            % (args.out, args.out, example, args.out, example))
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
