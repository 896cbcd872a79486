"""Sampling in one process: window maths, the token sampler and window/level/song generation. Tensors in, tensors out."""
