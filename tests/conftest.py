"""Shared test settings.

One intra-op thread: the tests run many tiny ops, and on a 2-core machine that is also
running something else, OpenMP's spin-waiting barriers can make them 10-50x slower.
"""
import torch

torch.set_num_threads(1)
