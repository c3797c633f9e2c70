"""When an iterative kernel reads its stopping rule on the host (issue 33 item 3).

Reading a device scalar (``bool(t)``, ``float(t)``) makes the host wait for the device. An
iterative kernel (EM, k-means, Sinkhorn) therefore runs its iterations in **blocks** and reads the
rule once per block; whatever it computed past the stopping iteration is discarded or frozen, so
the result is the one of stopping at once. On the CPU a read costs nothing and blocks stay short
(no wasted iterations); on an accelerator they double (first, 2·first, 4·first, …), so a loop
reads the device at most ``⌈log2(max_iter / first)⌉ + 1`` times whatever its iteration count, for
at most as many extra iterations as it needed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def accelerated(device: torch.device, grow: bool | None = None) -> bool:
    """Whether reads should be spaced out (an accelerator), unless ``grow`` forces the answer (the
    tests run the accelerator's schedule on the CPU)."""
    return torch.device(device).type != "cpu" if grow is None else bool(grow)


def blocks(max_iter: int, first: int, grow: bool) -> Iterator[int]:
    """Lengths of the blocks of iterations between two reads: ``first`` each, or ``first`` then
    doubling when ``grow``; they add up to ``max_iter``."""
    done, size = 0, max(1, first)
    while done < max_iter:
        m = min(size, max_iter - done)
        yield m
        done += m
        if grow:
            size *= 2
