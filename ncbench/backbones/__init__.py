"""Similarity models. Each encodes images and captions and scores pairs; see ``base.Backbone``.
Every module here registers its backbones in ``ncbench.registry.BACKBONES`` when imported."""
