"""cigt trellises in PyTorch: load(path) -> Trellis (an nn.Module), save(module, path),
loss(out, labels, ig_weight, ig_beta), from_config(path) for a fresh model, and the training
schedule of `cigt train` (apply_schedule). See python/README.md."""

import hashlib
import json
import os
import warnings

import torch

from .. import __version__
from .. import format as cfmt
from .loss import entropy, information_gain, loss
from .model import (BatchNorm, Expert, RouterRows, Trellis, TrellisOutput, apply_schedule,
                    schedule_lr, schedule_temperature)

POINTS_KEY = "operating_points"  # the __metadata__ key of cigt tune's table
QUANT_KEY = "quantization"  # the __metadata__ key of cigt quantize's int8 calibration

__all__ = ["load", "save", "loss", "information_gain", "entropy", "from_config",
           "Trellis", "TrellisOutput", "RouterRows", "apply_schedule", "schedule_lr",
           "schedule_temperature", "read_config"]


def load(path, map_location=None):
    """Reads and validates a model file (the C reader's checks, cigt.format.FormatError on a
    bad one) and returns a Trellis in eval mode holding its tensors (float32). The file's
    architecture text and provenance are kept as module.architecture / module.provenance."""
    mf = cfmt.load(path)
    m = Trellis(mf.arch, provenance=mf.provenance)
    m.architecture = mf.architecture
    m.extra_metadata = {k: v for k, v in mf.metadata.items()
                        if k not in ("format", "architecture", "provenance")}
    sd = {k: torch.from_numpy(v) for k, v in mf.tensors.items()}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    if unexpected or any(k in {n for n, _, _ in cfmt.tensor_list(mf.arch)} for k in missing):
        raise RuntimeError("state dict mismatch: %s %s" % (missing, unexpected))
    m.loaded_digest = _digest(m.tensors())  # save() tells fine-tuned weights by it
    if map_location is not None:
        m = m.to(map_location)
    return m.eval()


def _digest(tensors):
    """sha256 over a file's tensors (name -> float32 array), in their order."""
    h = hashlib.sha256()
    for name, v in tensors.items():
        h.update(name.encode())
        h.update(v.tobytes())
    return h.hexdigest()


def read_config(path):
    """A config file (architecture + train section, what `cigt train --config` reads) ->
    (architecture dict, train dict or None). Validates the architecture."""
    with open(path, encoding="utf-8") as f:
        root = cfmt._loads(f.read())
    cfmt.parse_arch(root)
    return root, root.get("train")


def from_config(config, seed=None, classes=None):
    """A freshly initialised Trellis from a config file path or an architecture dict (a
    `train` member is ignored), with PyTorch's default initialisation (uniform within
    1/sqrt(fan_in), as cigt init) after torch.manual_seed(seed) when seed is given. classes
    replaces the architecture's class names (same count)."""
    if isinstance(config, (str, os.PathLike)):
        config, _ = read_config(config)
    arch = {k: v for k, v in config.items() if k != "train"}
    if classes is not None:
        arch["classes"] = list(classes)
    if seed is not None:
        torch.manual_seed(seed)
    return Trellis(cfmt.parse_arch(arch), provenance=None)


def save(module, path, classes=None, provenance=None, metadata=None, keep_points=False):
    """Writes module (a Trellis, or a DistributedDataParallel / DataParallel wrapping one) as a
    cigt model file: its architecture (classes, if given, replace the class names: same count),
    its tensors as float32 little-endian, and provenance: a dict or JSON text, or None for
    module.provenance when it has one, else {"tool": "cigt.torch", "version": ...}. Validated
    as the C reader validates (cigt.format.FormatError). metadata: other __metadata__ strings
    (name -> text), written as given; None writes back those the loaded file had
    (module.extra_metadata) except its operating points (`cigt tune`'s accuracies and MACs,
    measured on the weights as loaded) when the weights changed since load (fine-tuning,
    running statistics included): those are dropped with a warning unless keep_points=True."""
    module = getattr(module, "module", module)
    arch = json.loads(module.architecture)
    if classes is not None:
        classes = list(classes)
        if len(classes) != len(arch["classes"]):
            raise ValueError("%d classes given, the architecture has %d"
                             % (len(classes), len(arch["classes"])))
        arch["classes"] = classes
        text = cfmt.dumps_json(arch)
    else:
        text = module.architecture
    if provenance is None:
        provenance = module.provenance or {"tool": "cigt.torch", "version": __version__,
                                           "torch": torch.__version__}
    tensors = module.tensors()
    if metadata is None:
        metadata = dict(getattr(module, "extra_metadata", {}))
        points = metadata.get(POINTS_KEY)
        if points is not None and not keep_points and \
                _digest(tensors) != getattr(module, "loaded_digest", None):
            del metadata[POINTS_KEY]
            warnings.warn("cigt.torch.save(%s): dropped the %d operating points the model was "
                          "loaded with: its weights changed since (fine-tuning), so their "
                          "validation accuracies and MACs no longer hold; run cigt tune on the "
                          "new file, or pass keep_points=True to keep them"
                          % (path, len(json.loads(points))), stacklevel=2)
        # The int8 calibration (proto/model-format.md section 7) measured the old weights'
        # activations: dropped as well when they changed (whatever keep_points says).
        if QUANT_KEY in metadata and \
                _digest(tensors) != getattr(module, "loaded_digest", None):
            del metadata[QUANT_KEY]
            warnings.warn("cigt.torch.save(%s): dropped the int8 calibration the model was "
                          "loaded with: its weights changed since; run cigt quantize on the "
                          "new file" % path, stacklevel=2)
    cfmt.save(path, text, tensors, provenance, metadata)
