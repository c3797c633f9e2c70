"""Per-dataset recipes (``<dataset>.toml``): see ``ncbench.recipes``. Installed as ``ncbench.recipe_files``."""
