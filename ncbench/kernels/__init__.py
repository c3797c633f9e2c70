"""Pure tensor functions: no state, no I/O, CPU or CUDA. The numerical heart of every method and
the unit of the performance benchmarks; each has a slow, obviously-correct reference in the tests."""
