"""cigt for Python: read, validate and write cigt model files (cigt.format, numpy only) and
move trellises to and from PyTorch (cigt.torch). See python/README.md."""

__version__ = "0.1.0"
