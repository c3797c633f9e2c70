"""Built-in method plugins, one file per method (installed as ``ncbench.methods``).

Every module here is imported when the method registry is first used; each registers its method
with ``@METHODS.register(name)``. See ``methods/README.md`` for how to add one.
"""
