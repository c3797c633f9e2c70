"""``clean_oracle``: the clean-subset upper reference (the papers' "SGR-C").

Exactly the ``vanilla`` recipe, but trained only on the pairs that are truly clean under the
injected noise (the ground-truth mask, which no real method can see). Every leaderboard gets an
upper reference: a robust method that approaches it has recovered what the noise took away.
With real noise (CC152K) the clean mask is unknown and the oracle equals vanilla.
"""

from __future__ import annotations

import numpy as np

from ncbench.registry import METHODS

from .vanilla import Vanilla


@METHODS.register("clean_oracle")
class CleanOracle(Vanilla):
    """Upper reference: the vanilla recipe on the truly clean pairs only (uses the ground truth)."""

    uses_ground_truth = True
    recipe_of = "vanilla"  # the same recipe as vanilla, so the gap between them is the noise alone

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.train_ids = np.flatnonzero(ctx.train.clean)
