"""Make auto_LiRPA 0.3 (PyPI, 2022) import and run under numpy 2 and torch 2.x.

Measured failures without these shims (numpy 2.x, torch 2.13):

1. ``import auto_LiRPA`` -> ``ModuleNotFoundError: numpy.lib.arraysetops`` (operators/base.py
   does ``from numpy.lib.arraysetops import isin``; numpy 2 made the module private).
2. ``BoundedModule(...)`` -> ``ImportError`` on ``torch.onnx.symbolic_helper._set_opset_version``
   (parse_graph.py; torch 2.x keeps the opset in ``GLOBALS.export_onnx_opset_version``).
3. ``BoundedModule(...)`` -> ``TypeError: 'torch._C.Node' object is not subscriptable``
   (parse_graph.py reads node attributes as ``n[k]``; torch 2.x dropped ``Node.__getitem__``).

``import_auto_lirpa()`` applies them (idempotently) and returns the module.
"""

from __future__ import annotations

import sys
import types
import warnings

_APPLIED = False


def _shim_numpy() -> None:
    import numpy as np

    name = "numpy.lib.arraysetops"
    if name in sys.modules:
        return
    try:  # numpy < 2 still has the real module
        __import__(name)
        return
    except ImportError:
        pass
    mod = types.ModuleType(name)
    for fn in ("isin", "unique", "intersect1d", "setdiff1d", "union1d", "setxor1d", "ediff1d"):
        if hasattr(np, fn):
            setattr(mod, fn, getattr(np, fn))
    mod.in1d = getattr(np, "in1d", np.isin)
    sys.modules[name] = mod


def _shim_torch() -> None:
    import torch
    import torch.onnx.symbolic_helper as helper

    if not hasattr(helper, "_set_opset_version"):
        try:
            from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
        except ImportError:  # pragma: no cover - older torch 2.x layout
            from torch.onnx._globals import GLOBALS

        def _set_opset_version(version: int) -> None:
            GLOBALS.export_onnx_opset_version = version

        helper._set_opset_version = _set_opset_version

    if not hasattr(torch._C.Node, "__getitem__"):

        def _node_getitem(self, key):
            # kindOf gives the attribute type ("i", "f", "s", "t", "is", ...), which is
            # also the name of the accessor method
            return getattr(self, self.kindOf(key))(key)

        torch._C.Node.__getitem__ = _node_getitem


def import_auto_lirpa():
    """Apply the shims once and return the ``auto_LiRPA`` module."""
    global _APPLIED
    if not _APPLIED:
        _shim_numpy()
        _shim_torch()
        _APPLIED = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import auto_LiRPA
    return auto_LiRPA
