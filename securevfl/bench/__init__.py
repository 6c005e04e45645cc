"""The overhead benchmark behind ``securevfl bench``.

One run measures, side by side on MNIST-sized messages, plaintext training, every CKKS key
holder with every preset it accepts, and a Paillier baseline, and reports time per step and per
epoch (as ratios to plaintext), bytes per step by message kind, where the time goes, and peak
memory. Modules, one job each:

- :mod:`~securevfl.bench.workload`: MNIST-shaped data and the geometry of an MNIST epoch;
- :mod:`~securevfl.bench.schemes`: which schemes, and whole epoch or a few steps each;
- :mod:`~securevfl.bench.measure`: timing one scheme in a fresh process;
- :mod:`~securevfl.bench.paillier`: Paillier and CKKS on the same message;
- :mod:`~securevfl.bench.report`: extrapolation, ratios, targets, JSON / Markdown / PNG;
- :mod:`~securevfl.bench.runner`: the whole run.
"""

from __future__ import annotations

from securevfl.bench.report import write_outputs
from securevfl.bench.runner import BenchSettings, run_bench

__all__ = ["BenchSettings", "run_bench", "write_outputs"]
