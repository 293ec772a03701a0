"""The accuracy benchmark: real near-duplicates, every hash, exact pairwise evaluation.

``python benchmarks/accuracy/run.py [--quick]``; see :mod:`accuracy.run`.
"""
