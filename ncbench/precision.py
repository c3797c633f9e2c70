"""Numeric precision and compilation of training and evaluation: one switch, ``--precision``.

* ``fp32``: float32 everywhere, matrix products included (TF32 off for cuBLAS and cuDNN). The
  default on the CPU, and what results made before ``--precision`` existed (``meta.amp`` ``off``) ran
  (on CUDA those left cuDNN's TF32 on, torch's default, for the GRU; fp32 now turns it off too).
* ``tf32``: float32 tensors, but CUDA's matrix products and cuDNN's convolutions and recurrent
  layers (the GRU) round their inputs to TensorFloat-32 (10 mantissa bits; float32 sums and
  outputs). CUDA only: the CPU has no TF32 units, and a result labelled ``tf32`` that ran in fp32
  would misstate what ran, so it is refused there (``check_precision``). The default on CUDA: on
  the H200 figures (``docs/gpu-2026-11-28.md``, SGR at F30K's shape) it is the fastest of the three,
  both in evaluation (200 × 1,000 pairs: 0.219 s; bf16 0.282 s; fp32 0.365 s) and in training
  (1,591 pairs/s; bf16 1,569; fp32 1,201), and its rounding is finer than bfloat16's (10 mantissa
  bits against 7, float32 outputs), so it stays within ``EVAL_TOLERANCE`` of fp32 wherever bf16 does.
* ``bf16``: matrix products and linear layers in bfloat16 under ``torch.autocast`` (CUDA for real
  runs; the CPU runs it too, which is how the path is tested); softmax, normalisation, losses and
  the mixture fits stay in float32, as autocast decides. bfloat16 has float32's range, so summed
  batch losses need no gradient scaling (float16 would; it is not offered). It saves memory
  (8,244 MB against 9,808 MB in the figures above) but is slower than tf32 there.

``compute(device, precision)`` is the one context that applies a precision; it sets the TF32 flags
on entry and restores the caller's on exit (nested uses restore the outer one's), so nothing leaks
out of a run. The precision is recorded in every result (``meta.precision``; results written before
it existed hold ``meta.amp``: ``off`` = fp32, ``bf16`` = bf16, read by ``recorded_precision``). It
is not part of a run's identity (its config hash): scores of the three agree within
``EVAL_TOLERANCE`` on the parity inputs, so results of any precision are pooled as they were.

``--compile`` compiles the backbones' pair-scoring kernel with ``torch.compile``. A compiled function
is traced again for each new variant it meets (training or evaluation mode, with or without
gradients, a chunk of one caption...): each is a full compilation (SAF's first had not finished
after 90 s on the H200).
``compile_limits`` caps that: at most ``COMPILE_LIMIT`` compilations of a kernel in a process,
whatever the number of batches and evaluation chunks; a variant met after the cap runs eagerly (the
same numbers, uncompiled). ``execution`` is the scope a run trains and evaluates in: its TF32
setting and, when compiling, the cap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: the command line reads the names without it
    import torch

PRECISIONS = ("fp32", "tf32", "bf16")
LEGACY_AMP = {"off": "fp32", "bf16": "bf16"}  # the deprecated ``--amp`` values and ``meta.amp`` of old results

EVAL_TOLERANCE = 1e-2
"""The largest absolute difference from fp32 of an evaluation score (SGR/SAF's sigmoid in [0, 1],
VSE's cosine in [-1, 1]) that a reduced precision may make on the parity inputs (the official
weights and inputs of ``tests/parity/golden``: sgraf_step's SGR and SAF, vse_inf). Measured on the
CPU: bf16 ≤ 5.9e-3 (SAF), TF32 emulated by truncating every matrix product's operands to 10
mantissa bits ≤ 1.1e-3; ``tests/test_precision.py`` checks both. bfloat16 keeps 8 significant bits
(a relative step of 2⁻⁸ ≈ 3.9e-3 per rounding), so a score passing a few roundings moves by up to
about 1e-2; TF32 (11 significant bits, a step of 2⁻¹⁰) by a fraction of that."""

COMPILE_LIMIT = 4
"""Compilations of one compiled kernel per process: training (gradients, training mode) and
evaluation (no gradients, eval mode) are the two a run needs; two more cover a per-sample loss
pass in another mode or a size-1 chunk (torch specialises a dimension of size 1). Every further
variant runs eagerly."""


def canonical(precision: str) -> str:
    """``precision`` as one of ``PRECISIONS``, the deprecated ``--amp`` names mapped (off → fp32)."""
    name = LEGACY_AMP.get(precision, precision)
    if name not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return name


def default_precision(device: torch.device | str) -> str:
    """tf32 on CUDA (the fastest within ``EVAL_TOLERANCE``; see the module's text), fp32 elsewhere."""
    import torch

    return "tf32" if torch.device(device).type == "cuda" else "fp32"


def check_precision(precision: str | None, device: torch.device | str) -> str:
    """The precision a run on ``device`` uses: ``precision`` (None: ``default_precision``), refused
    where the device cannot run it (tf32 off CUDA)."""
    import torch

    name = canonical(precision) if precision is not None else default_precision(device)
    kind = torch.device(device).type
    if name == "tf32" and kind != "cuda":
        raise ConfigError(f"--precision tf32 needs a CUDA device (TensorFloat-32 is a GPU tensor-core format; "
                          f"on {kind} it would run fp32): use --precision fp32 or bf16")
    return name


def recorded_precision(meta: dict) -> str:
    """The precision a result ran at: ``meta.precision``, or for a result written before it existed
    its ``meta.amp`` (off → fp32), or fp32 when neither is there (the only precision then)."""
    if meta.get("precision"):
        return canonical(meta["precision"])
    return canonical(meta.get("amp") or "off")


@contextlib.contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """TF32 for CUDA matrix products (``float32_matmul_precision`` high vs highest) and cuDNN's
    kernels (``cudnn.allow_tf32``) while inside; the caller's settings come back on exit."""
    import torch

    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn


@contextlib.contextmanager
def compute(device: torch.device | str, precision: str) -> Iterator[None]:
    """Compute at ``precision`` (or a deprecated ``--amp`` name) on ``device`` while inside: TF32
    on for tf32 and off otherwise, and bfloat16 autocast for bf16."""
    import torch

    name = canonical(precision)
    with contextlib.ExitStack() as stack:
        stack.enter_context(tf32_matmuls(name == "tf32"))
        if name == "bf16":
            stack.enter_context(torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16))
        yield


@contextlib.contextmanager
def compile_limits(limit: int = COMPILE_LIMIT) -> Iterator[None]:
    """At most ``limit`` compilations of each ``torch.compile``'d function while inside (further
    variants run eagerly); sizes that happen to be equal are not assumed equal (no recompilation when
    they differ later)."""
    import torch._dynamo.config as dynamo

    name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"  # before torch 2.6
    with contextlib.ExitStack() as stack:
        stack.enter_context(dynamo.patch(**{name: limit}))
        try:
            import torch.fx.experimental._config as fx

            stack.enter_context(fx.patch(use_duck_shape=False))
        except (ImportError, AttributeError):  # an older torch: duck sizing stays on
            pass
        yield


@contextlib.contextmanager
def execution(precision: str, compile: bool = False) -> Iterator[None]:
    """The scope a whole run trains and evaluates in: its TF32 setting (on for tf32, off otherwise, for
    every product of the run, the split fits and metrics included), and the compilation cap when
    ``compile``. Autocast (bf16) is not entered here: the trainer and the evaluation enter ``compute``
    around the steps and the scoring, where it applies."""
    with tf32_matmuls(canonical(precision) == "tf32"), (compile_limits() if compile else contextlib.nullcontext()):
        yield
