"""ncbench: one harness for noisy-correspondence image-text matching.

The library is organised as: ``registry`` (methods, backbones, datasets), ``config`` (typed run
configuration and its hash), ``data`` (precomp loader, synthetic data, noise index), ``kernels``
(pure tensor functions), ``backbones`` (similarity models), ``engine`` (training loop and method
base class), ``evaluate`` (retrieval protocol), ``results`` (result files), ``runner`` (sweeps)
and ``report`` (leaderboards). The ``ncbench`` command lives in ``cli``; no other module knows it.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = "1"
"""Bumped whenever data preparation, noise injection, evaluation or model selection changes in a
way that makes results incomparable with older ones. Every result records it."""
