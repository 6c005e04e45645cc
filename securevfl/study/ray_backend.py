"""The Ray backend of ``securevfl study``: each run is one Ray task, on this machine or a cluster.

Why Ray and not a scheduler of our own: a study of many hours outgrows one machine, and Ray
already places tasks on free CPUs across nodes, restarts a task whose node died, and lets a
user attach to a cluster they run anyway (``ray start --head``). What the study needs from it
is small, so this module is small:

- a task runs :func:`securevfl.study.worker.train_one`, the very function a local worker runs,
  so a run writes the same ``result.json`` / ``failed.json`` / ``checkpoint.pt`` / ``crash.txt``
  into the same folder, and resume and failure handling are the local pool's;
- a task asks for one CPU and runs in its own Ray worker process (SEAL holds Python's GIL, so
  two runs in one process would not overlap);
- at most ``workers`` tasks are in flight, submitted in the study's order (seed by seed), so an
  interrupted study has whole seeds first, as with the local pool;
- every task changes into the driver's working directory and extends ``sys.path`` as the driver
  has it (what a spawned local worker inherits), so relative ``--out`` and ``data.dir`` paths
  mean the same on every node — which requires the same folders at the same paths on every
  node (a shared filesystem), as docs/study.md says;
- Ctrl-C or an error in the driver cancels the unfinished tasks (a task killed mid-epoch keeps
  its last checkpoint, so the next invocation resumes it) and shuts down the Ray instance this
  study started (an existing cluster is only disconnected from).

A task whose worker process dies (killed, out of memory, its node lost) is retried
``SYSTEM_RETRIES`` times by Ray — the retry resumes from the run's checkpoint — and is then
recorded as ``crashed`` with Ray's reason in ``crash.txt``, like a local worker's bug.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from securevfl.errors import ConfigError
from securevfl.files import atomic_write_text
from securevfl.study.worker import ProgressDisplay, RunOutcome, TrainJob, run_dir, train_one
from securevfl.study.spec import PlannedRun, import_plugins
from securevfl.study.status import RunStatus

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["RAY_INSTALL_HINT", "SYSTEM_RETRIES", "require_ray", "train_with_ray"]

RAY_INSTALL_HINT = "pip install 'securevfl[ray]' (or pip install -c constraints.txt ray)"
#: Ray retries a task whose worker process died this many times (each retry resumes from the checkpoint).
SYSTEM_RETRIES = 1
#: How long the driver waits for a finished task before draining epoch ticks again (seconds).
POLL_SECONDS = 0.5


def require_ray() -> ModuleType:
    """The ``ray`` module, or one ``ConfigError`` line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"study --backend ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


#: How many times a local Ray instance is started before the study gives up (see :func:`_start`).
LOCAL_START_ATTEMPTS = 3
#: What Ray says when a local node was too slow to start (the node's registration, the GCS server's port file).
START_TIMEOUTS = ("timed out during startup", "Timed out waiting for file")
#: Seconds a local start waits for its GCS server's port file (Ray's default, 30, ran out on a loaded 2-core machine in CI).
LOCAL_GCS_WAIT_SECONDS = 120


def _ray_train(job: TrainJob, plugins: tuple[str, ...], cwd: str, sys_path: list[str]) -> RunOutcome:
    """Ray task body: the driver's working directory and import path, the study's plugins, one run."""
    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    import_plugins(plugins)
    return train_one(job)


def _start(ray: ModuleType, workers: int, address: str | None) -> bool:
    """Connect to ``address`` or start a quiet local instance of ``workers`` CPUs; True if this call started it.

    Ray waits a fixed 30 s for a new local node to register and then raises a bare ``Exception``
    ("The current node timed out during startup"); on a loaded two-core machine that happens now and
    then, so a local start is tried :data:`LOCAL_START_ATTEMPTS` times before it is one error line.
    """
    if ray.is_initialized():  # a caller (a notebook, a test) already chose the cluster
        return False
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
    where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
    attempts = 1 if address else LOCAL_START_ATTEMPTS
    if address is None:  # its GCS server's port file: Ray waits 30 s by default (an operator's own setting wins)
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(LOCAL_GCS_WAIT_SECONDS))
    for attempt in range(1, attempts + 1):
        try:
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
            return True
        except Exception as exc:  # noqa: BLE001 - Ray's start-up timeout is a bare Exception
            started_too_slowly = any(sign in str(exc) for sign in START_TIMEOUTS)
            if not started_too_slowly and isinstance(exc, ConnectionError | ValueError | RuntimeError):
                raise ConfigError(f"study --backend ray: cannot start or reach {where}: {str(exc).splitlines()[0]}") from None
            if not started_too_slowly:
                raise
            ray.shutdown()  # stop what the failed start left running before the next try
            if attempt == attempts:
                raise ConfigError(
                    f"study --backend ray: cannot start or reach {where}: its node did not register within Ray's "
                    f"start-up wait, {attempts} times (is the machine overloaded?)"
                ) from None
    raise AssertionError("unreachable")


def train_with_ray(
    pending: list[PlannedRun],
    out: Path,
    workers: int,
    address: str | None,
    display: ProgressDisplay,
    plugins: tuple[str, ...],
) -> None:
    """Train ``pending`` as Ray tasks, at most ``workers`` at once, reporting to ``display``."""
    ray = require_ray()
    from ray.util.queue import Queue

    started_here = _start(ray, workers, address)
    refs: dict[Any, tuple[PlannedRun, float]] = {}  # task -> its run, and when it was submitted
    try:
        task = ray.remote(num_cpus=1, max_retries=SYSTEM_RETRIES)(_ray_train)
        progress = Queue(actor_options={"num_cpus": 0})  # (run_id, epoch) ticks from the tasks
        cwd, sys_path = os.getcwd(), list(sys.path)
        waiting = list(pending)
        while waiting or refs:
            while waiting and len(refs) < workers:
                run = waiting.pop(0)
                job = TrainJob(run.run_id, run.raw, run.config, str(run_dir(out, run).resolve()), progress)
                refs[task.remote(job, plugins, cwd, sys_path)] = (run, time.perf_counter())
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_SECONDS)
            for run_id, epoch in progress.get_nowait_batch(progress.qsize()):
                display.tick(run_id, epoch)
            for ref in ready:
                display.finished(_outcome(ray, ref, *refs.pop(ref), out))
        for run_id, epoch in progress.get_nowait_batch(progress.qsize()):  # ticks that came with the last result
            display.tick(run_id, epoch)
    finally:
        for ref in refs:  # interrupted: stop the runs still training (their checkpoints stay)
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - a task that ended meanwhile, or Ray already gone: shut down anyway
                pass
        if started_here:
            ray.shutdown()


def _outcome(ray: ModuleType, ref: Any, run: PlannedRun, submitted: float, out: Path) -> RunOutcome:
    """The task's own outcome, or ``crashed`` with Ray's reason when its worker process died."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:  # the task never returned: the process or node is gone
        directory = run_dir(out, run)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "crash.txt", f"Ray could not finish this run:\n{exc}\n")
        return RunOutcome(run.run_id, RunStatus.CRASHED, time.perf_counter() - submitted, f"ray: {type(exc).__name__}: {exc}")
