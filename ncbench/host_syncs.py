"""Counting what a kernel makes the host wait for, on any device (issue 33 item 3).

A CUDA kernel runs asynchronously until Python needs a value from it: ``.item()``, ``float()``,
``bool()`` and ``int()`` of a tensor (``aten._local_scalar_dense``), ``torch.equal``, ``nonzero`` and
boolean masking (their output size depends on the data), and a copy to the CPU. Each such point
stalls the host until the GPU catches up; inside an iteration loop it stalls once per iteration.

``SyncCounter`` is a ``TorchDispatchMode`` that counts those operations as they are dispatched, so
the count is the same on the CPU as on a GPU (the CPU has nothing to wait for, but the code path
is the same): a test on the CPU proves that a kernel's synchronisations do not grow with its
number of iterations. It also counts the bytes an operation reads from ``watch``-ed tensors (their
storage, through any view), to state how many times a kernel reads a large matrix.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten

#: operations whose result the host must wait for on an asynchronous device
SYNC_OPS = frozenset({
    aten._local_scalar_dense.default,  # .item(), float(t), int(t), bool(t), `if t:`
    aten.equal.default,  # torch.equal returns a Python bool
    aten.is_nonzero.default,
    aten.nonzero.default,  # data-dependent output size
    aten.masked_select.default,
    aten.unique_consecutive.default,
    aten._unique2.default,
})


def _storage_key(t: torch.Tensor):
    try:
        return t.untyped_storage().data_ptr(), t.device
    except (RuntimeError, NotImplementedError):
        return None


class SyncCounter(TorchDispatchMode):
    """``with SyncCounter(watch=[sims]) as c: kernel(...)``; then ``c.syncs`` (total),
    ``c.by_op`` (per operation name) and ``c.bytes_read`` (bytes read from the watched tensors)."""

    def __init__(self, watch: list[torch.Tensor] | tuple[torch.Tensor, ...] = ()):
        super().__init__()
        self.by_op: Counter[str] = Counter()
        self.bytes_read = 0
        self._watched = {_storage_key(t) for t in watch}

    @property
    def syncs(self) -> int:
        return sum(self.by_op.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNC_OPS:
            self.by_op[func.__name__] += 1
        elif func in (aten._to_copy.default, aten.copy_.default):
            src = args[1] if func is aten.copy_.default else args[0]
            dst = args[0].device if func is aten.copy_.default else kwargs.get("device", src.device)
            if isinstance(src, torch.Tensor) and src.device.type != "cpu" and torch.device(dst).type == "cpu":
                self.by_op["device_to_host"] += 1
        out = func(*args, **kwargs)
        if self._watched and func not in _VIEWS:
            for a in tree_flatten((args, kwargs))[0]:
                if isinstance(a, torch.Tensor) and _storage_key(a) in self._watched:
                    # a gather reads what it returns; any other operation reads its whole input
                    read = out if func in _GATHERS else a
                    self.bytes_read += read.numel() * read.element_size()
        return out


#: operations that read only the elements they return
_GATHERS = frozenset({aten.index.Tensor, aten.gather.default, aten.index_select.default})

#: operations that only make a view (they read nothing)
_VIEWS = frozenset({aten.slice.Tensor, aten.select.int, aten.view.default, aten._unsafe_view.default,
                    aten.as_strided.default, aten.t.default, aten.transpose.int, aten.expand.default,
                    aten.unsqueeze.default, aten.squeeze.dim, aten.alias.default, aten.detach.default,
                    aten.permute.default, aten.reshape.default})
