"""Every thread pool of a party process sized by ``train.threads``: torch's and numpy's BLAS.

torch.set_num_threads alone leaves numpy's OpenBLAS with one thread per core. Its threads wait
for each other by spinning, so on a machine whose cores are busy (a study's other workers, the
other parties of a run) a small LAPACK call waits for time slices: measured on the project's
2-core machine with two study workers, one ``np.linalg.matrix_rank`` of a 64 x 393 batch took
0.32 s with OpenBLAS's 2 threads and 1 ms with one, which made the end-of-run ``derivable``
rank check (~190 such calls on reduced MNIST) and gradient inversion's per-step ``lstsq`` cost
more than the encrypted training step itself. The work is per process and small: more threads
inside it buy nothing here, and a study gets its parallelism from processes (SEAL holds the GIL).
"""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits

__all__ = ["limit_threads"]


def limit_threads(threads: int) -> None:
    """Size torch's intra-op pool and every native pool numpy loaded (BLAS, OpenMP) to ``threads``, for the whole process."""
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
