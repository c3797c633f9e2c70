"""Data: the precomp loader, tokenizer and vocabulary, noise injection, the synthetic dataset,
dataset cards and batching. Nothing here trains or evaluates."""
