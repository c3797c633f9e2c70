"""Reference data shipped with ncbench (installed as ``ncbench.reference``).

* ``reported.csv``: the papers' published retrieval numbers, one row per (source, method,
  benchmark, noise). These are **reported, not reproduced** by ncbench; the leaderboard shows them
  only with ``--with-reported`` and always marks them as such.
* ``noise-index.json``: the sha256 of the canonical noise-index file per dataset and noise ratio,
  which ``ncbench submit`` requires a submitted result to have trained with.
"""
