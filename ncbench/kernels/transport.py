"""Partial optimal transport for L2RM's rematching (methods-beyond §2.2), pure tensor functions.

L2RM turns a noisy batch's ``B×B`` cost ``C ≥ 0`` (a learned function of the score matrix) into soft
rematching targets by **partial** optimal transport: only mass ``ρ`` of the uniform marginals ``1/B``
moves between real pairs; the rest goes to a dummy row and a dummy column of cost ``ξ = 100·max C``
(their corner ``2ξ + max C``), and the diagonal, the given and suspected-false pairing, is forbidden
when the data are noisy. The official code (``SGRAF.partial_ot`` / ``sinkhorn_log_domain``) runs the
log-domain Sinkhorn iteration on that ``(B+1)×(B+1)`` problem in NumPy on the CPU, once per training
iteration, from ``u = v = 0``::

    u ← ε (log p − lse_j((−C_ij + v_j)/ε))      v ← ε (log q − lse_i((−C_ij + u_i)/ε))

at most 1,000 times, stopping once ``‖u − u_prev‖ < 10⁻³``; then ``π = exp((−C + u ⊕ v)/ε)``.

Here the **same iterates** are computed in torch on the training device, in the scaling form: the
dummy row's and column's constant ``ξ`` is absorbed analytically (subtracting ``ξ`` from a whole row
or column changes no plan, only the potentials, and ``v = 0`` becomes a dummy scaling of
``exp(−ξ/ε)``), which leaves a kernel ``K = exp(−C'/ε)`` with entries in ``[0, 1]`` (the dummy
column is 1: every row's largest entry, so no row underflows). Each iteration is then two
matrix-vector products, ``a = p / K b`` and ``b = q / Kᵀ a``, with ``u = ε log a`` (+ the absorbed
shift): the official stopping rule ``ε ‖log(a / a_prev)‖ < 10⁻³`` is evaluated exactly, so the plan is
the official one (the parity suite compares them on the same costs), not a more or less converged
one. ``partial_ot_plan`` takes one ``B×B`` cost or a batch ``(N, B, B)``; in a batch each problem stops
at its own iteration, as it would alone. It computes in float64 (the official NumPy precision).

``transport_targets`` row-normalises the plan after the official ``max(π, 10⁻¹⁰)``: a row that
received no mass becomes the **uniform** target ``1/B`` (official; ``massless="drop"`` gives such rows
weight 0 instead; see ``methods/l2rm.py``).
"""

from __future__ import annotations

import torch

from .loops import accelerated, blocks

SINKHORN_TOL = 1e-3
SINKHORN_ITERS = 1000
PLAN_FLOOR = 1e-10
CHUNK = 8  # iterations between two checks of the stopping rule on the CPU (the first block elsewhere)


def _kernel(cost: torch.Tensor, reg: float, forbid_diagonal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, ξ)`` of the augmented problems ``(N, B+1, B+1)`` with the dummy costs absorbed:
    ``exp(−C/ε)`` (0 on a forbidden diagonal), dummy row and column 1, corner ``exp(−max C/ε)``."""
    n, b = cost.shape[0], cost.shape[-1]
    peak = cost.reshape(n, -1).amax(dim=1)
    k = torch.empty(n, b + 1, b + 1, dtype=cost.dtype, device=cost.device)
    torch.exp(cost / -reg, out=k[:, :b, :b])
    if forbid_diagonal:
        k[:, :b, :b].diagonal(dim1=-2, dim2=-1).zero_()
    k[:, :b, b] = 1.0
    k[:, b, :b] = 1.0
    k[:, b, b] = torch.exp(peak / -reg)
    return k, 100.0 * peak


def partial_ot_plan(cost: torch.Tensor, mass: float = 0.1, reg: float = 0.01, forbid_diagonal: bool = True,
                    max_iter: int = SINKHORN_ITERS, tol: float = SINKHORN_TOL, chunk: int = CHUNK,
                    grow: bool | None = None) -> torch.Tensor:
    """L2RM's plan ``π`` (``B×B``, or ``N×B×B`` for a batch of costs): the official partial OT of
    ``mass`` between uniform marginals ``1/B`` under ``cost ≥ 0`` (dummy row and column, the diagonal
    forbidden if ``forbid_diagonal``), with the dummy block removed; float64."""
    c = cost.detach().to(torch.float64).reshape(-1, *cost.shape[-2:])
    n, b = c.shape[0], c.shape[-1]
    k, xi = _kernel(c, reg, forbid_diagonal)
    marg = torch.full((n, b + 1), 1.0 / b, dtype=c.dtype, device=c.device)
    marg[:, b] = 1.0 - mass
    # u = v = 0 of the original problem, as scalings of the absorbed one: 1, and exp(−ξ/ε) for the
    # dummy row and column; then u = ε log a up to that shift, and ‖Δu‖ = ε ‖log(a / a_prev)‖
    log_start = torch.zeros_like(marg)
    log_start[:, b] = xi / -reg  # exact, even where its exp underflows
    if n == 1:
        sa, sb = _iterate_one(k[0], marg[0], log_start[0], reg, max_iter, tol, chunk, grow)
        return (k[0, :b, :b] * sa[:b, None] * sb[None, :b]).reshape(*cost.shape[:-2], b, b)
    sa, sb = log_start.exp(), log_start.exp()
    kt = k.transpose(-2, -1)
    active = torch.ones(n, dtype=torch.bool, device=c.device)
    for m in blocks(max_iter, chunk, accelerated(c.device, grow)):
        for _ in range(m):
            a_new = marg / torch.bmm(k, sb.unsqueeze(-1)).squeeze(-1)
            b_new = marg / torch.bmm(kt, a_new.unsqueeze(-1)).squeeze(-1)
            err = reg * torch.linalg.vector_norm(torch.log(a_new / sa), dim=1)
            keep = active[:, None]  # a problem that has converged keeps its iterate
            sa, sb = torch.where(keep, a_new, sa), torch.where(keep, b_new, sb)
            active = active & (err >= tol)
        # one read per block: a stopped problem is frozen, so iterations after it change nothing
        if not bool(active.any()):
            break
    plan = k[:, :b, :b] * sa[:, :b, None] * sb[:, None, :b]
    return plan.reshape(*cost.shape[:-2], b, b)


def _iterate_one(k: torch.Tensor, marg: torch.Tensor, log_start: torch.Tensor, reg: float, max_iter: int,
                 tol: float, chunk: int = CHUNK, grow: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The scalings ``(a, b)`` of one problem (a training step's) at the official stopping iterate.
    The iterations run in blocks (``blocks``) without a host synchronisation: each stores ``log a`` in
    a buffer, then one check per block finds the first iteration whose ``ε ‖log a − log a_prev‖`` fell
    below ``tol``, and that iteration's state is rebuilt from its ``log a`` (``b = q / Kᵀa``): less
    overhead per iteration on the CPU and a bounded number of syncs on a GPU. Matrix-vector products
    into reused buffers (the batched loop does the same with ``bmm`` and a mask)."""
    kt = k.T
    sb = log_start.exp()
    sa, prod = torch.empty_like(marg), torch.empty_like(marg)
    sizes = list(blocks(max_iter, chunk, accelerated(marg.device, grow)))
    logs = torch.empty(max(sizes, default=0) + 1, len(marg), dtype=marg.dtype, device=marg.device)
    logs[0] = log_start
    for m in sizes:
        for j in range(1, m + 1):
            torch.div(marg, torch.mv(k, sb, out=prod), out=sa)
            torch.div(marg, torch.mv(kt, sa, out=prod), out=sb)
            torch.log(sa, out=logs[j])
        err = torch.linalg.vector_norm(logs[1:m + 1] - logs[:m], dim=1) * reg
        below = torch.nonzero(err < tol)
        if below.numel():
            j = int(below[0, 0]) + 1
            if j < m:  # back to the iteration that met the rule
                sa = torch.exp(logs[j])
                sb = marg / torch.mv(kt, sa)
            break
        logs[0] = logs[m]
    return sa, sb


def transport_targets(plan: torch.Tensor, massless: str = "uniform",
                      floor: float = PLAN_FLOOR) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(T_i2t, T_t2i, w_i2t, w_t2i)``: row-normalised ``max(π, floor)`` for images over captions and
    ``max(πᵀ, floor)`` for captions over images, and a weight per row: 1 everywhere
    (``massless="uniform"``, official: a row without mass is a uniform target) or, with ``"drop"``,
    0 for rows whose every entry is below ``floor`` (nothing was transported from them)."""
    if massless not in ("uniform", "drop"):
        raise ValueError(f"massless must be 'uniform' or 'drop', not {massless!r}")
    out = []
    for pi in (plan, plan.transpose(-2, -1)):
        clipped = pi.clamp_min(floor)
        if massless == "drop":
            weight = (pi >= floor).any(dim=-1).to(pi.dtype)
        else:
            weight = torch.ones(pi.shape[:-1], dtype=pi.dtype, device=pi.device)
        out.append((clipped / clipped.sum(dim=-1, keepdim=True), weight))
    (t_i2t, w_i2t), (t_t2i, w_t2i) = out
    return t_i2t, t_t2i, w_i2t, w_t2i

