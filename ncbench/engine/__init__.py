"""Training: the method base class and its context, optimisation helpers, the epoch loop with
validation-based model selection."""
