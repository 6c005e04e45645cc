"""The training run: epochs of protocol rounds, evaluation, checkpoints, and the result record."""

from __future__ import annotations

import csv
import io
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from tqdm import tqdm

from securevfl.attacks import MAIN_ACCURACY, attack_metrics
from securevfl.checkpoint import load_checkpoint, save_checkpoint
from securevfl.config import RunConfig, comparable_config
from securevfl.crypto import PrecisionError
from securevfl.data import VFLDataset, load_dataset, partition_columns
from securevfl.defenses.accounting import label_dp_record
from securevfl.errors import ConfigError, DeviationDetected, OutOfRange, SecureVFLError, TrainingDiverged
from securevfl.federation import Federation, build_federation
from securevfl.files import atomic_write_text
from securevfl.run_files import RESULT_NAME, check_output_directory
from securevfl.protocols import NonFiniteError
from securevfl.protocols.errors import PayloadRangeError, RequestRefusedError
from securevfl.protocols.phases import CostGroup, cost_summary
from securevfl.provenance import provenance
from securevfl.derivable import derivable
from securevfl.divergence import chance_accuracy, check_loss, loss_bound, outcome
from securevfl.promises import promises
from securevfl.threads import limit_threads
from securevfl.seeding import epoch_batches
from securevfl.version import __version__


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    main_accuracy: float
    loss: float
    seconds: float
    attack_metrics: dict[str, float] = field(default_factory=dict)

    def history_entry(self) -> dict[str, float | int]:
        """Deterministic part only: same seed, same history (timings live in ``timing``)."""
        return {"epoch": self.epoch, "main_accuracy": self.main_accuracy, "loss": self.loss, **self.attack_metrics}


EpochCallback = Callable[[EpochRecord], None]


def run_training(
    config: RunConfig,
    out_dir: Path | None = None,
    resume: bool = False,
    on_epoch_end: Sequence[EpochCallback] = (),
    *,
    dataset: VFLDataset | None = None,
    bottom_models: Sequence[nn.Module] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train as configured; write ``result.json`` (and checkpoints) into ``out_dir`` if given.

    Args:
        dataset: train on this data set instead of loading ``config.data`` (the public API
            builds one from a user's arrays); partitioned by ``config.parties`` as usual.
        bottom_models: the passive parties' bottom models, one per passive in party order (plus
            the active party's own block last when it holds one), instead of the Linear/ReLU
            stacks ``config.model`` describes. Their output width must be the configured bottom
            output. The label-private schemes accept only Linear/ReLU stacks and refuse others.
        overwrite: replace a finished or interrupted run in ``out_dir`` (refused otherwise, so a
            result is never lost by a repeated command).

    With ``transport.kind = "grpc"`` every party runs in its own OS process on this machine
    (:func:`securevfl.launcher.run_grpc_training`); the history reaches the caller at the end
    of the run, so ``on_epoch_end`` is not called (with ``train.progress`` the active party's
    epoch lines are printed as they come). ``resume`` restarts every party of the run in
    ``out_dir`` with ``--resume``.
    """
    started = time.perf_counter()
    if config.transport.kind == "grpc":
        refuse_unsupported_grpc(config, custom_models=bottom_models is not None)
        return _train_over_grpc(config, out_dir, dataset=dataset, overwrite=overwrite, resume=resume)
    if out_dir is not None:
        check_output_directory(out_dir, resume=resume, overwrite=overwrite)
    limit_threads(config.train.threads)
    resolved = config.resolved()

    if dataset is None:
        dataset = load_dataset(config.data)
    blocks = partition_columns(dataset, config.parties)
    federation = build_federation(config, dataset, blocks, bottom_models=bottom_models)

    history: list[dict[str, Any]] = []
    epoch_seconds: list[float] = []
    first_epoch = 1
    if resume:
        if out_dir is None:
            raise SecureVFLError("--resume needs the output directory of the interrupted run")
        state = load_checkpoint(out_dir, resolved, normalize=comparable_config)
        try:
            federation.load_state_dict(state["federation"])
            federation.channel.stats.load(state["traffic"])
            federation.timer.load(state["timing"])
            history, epoch_seconds = list(state["history"]), list(state["epoch_seconds"])
            first_epoch = int(state["epoch"]) + 1
        except SecureVFLError:
            raise
        except Exception as exc:  # missing keys, wrong shapes or types inside a loadable file
            raise ConfigError(
                f"--resume: the checkpoint in {out_dir} does not fit this run ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
            ) from None

    train_cfg = config.train
    n_train = len(dataset.y_train)
    steps_per_epoch = -(-n_train // train_cfg.batch_size)
    bound = loss_bound(train_cfg.max_loss, dataset.num_classes)
    for epoch in range(first_epoch, train_cfg.epochs + 1):
        try:
            record = _train_epoch(federation, config, epoch, steps_per_epoch, n_train, len(dataset.y_test))
            check_loss(record.loss, bound, epoch)  # every scheme: the same definition of diverged
        except TrainingDiverged as exc:  # keep what the run did before it stopped
            exc.history, exc.stopped_at_epoch = list(history), epoch
            exc.chance_accuracy = chance_accuracy(dataset.y_test)
            if isinstance(exc, DeviationDetected):  # what the caught attacker keeps
                exc.attack_at_stop = federation.attack_read_at_stop()
            raise
        history.append(record.history_entry())
        epoch_seconds.append(round(record.seconds, 4))
        if out_dir is not None and train_cfg.checkpoint:
            save_checkpoint(
                out_dir,
                {
                    "epoch": epoch,
                    "config": resolved,
                    "federation": federation.state_dict(),
                    "traffic": federation.channel.stats.to_dict(),
                    "timing": federation.timer.to_dict(),
                    "history": history,
                    "epoch_seconds": epoch_seconds,
                },
            )
        for callback in on_epoch_end:
            callback(record)

    result = _result_record(config, dataset, blocks, federation, history, epoch_seconds)
    result["timing"]["wall_this_invocation"] = round(time.perf_counter() - started, 4)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / RESULT_NAME, json.dumps(result, indent=2) + "\n")
        _write_attack_artifacts(federation, out_dir)
    return result


def refuse_unsupported_grpc(config: RunConfig, *, custom_models: bool = False) -> None:
    """What a ``transport.kind = "grpc"`` run (one process per party, :mod:`securevfl.launcher`) cannot do, in one line.

    Each party process builds its own models from the plan, so caller-given bottom models cannot reach it.
    """
    if config.transport.kind != "grpc":
        return
    if custom_models:
        raise ConfigError("bottom_models: a transport.kind = 'grpc' run builds every party's models from the configuration in its own process")


def _train_over_grpc(config: RunConfig, out_dir: Path | None, *, dataset: VFLDataset | None, overwrite: bool, resume: bool) -> dict[str, Any]:
    """One OS process per party on this machine (:func:`securevfl.launcher.run_grpc_training`); no ``out_dir``: a temporary one."""
    from securevfl.launcher import run_grpc_training  # the launcher builds on this module

    progress = (lambda line: print(line, flush=True)) if config.train.progress else None
    if out_dir is not None:
        return run_grpc_training(config, out_dir, dataset=dataset, overwrite=overwrite, resume=resume, progress=progress)
    if resume:
        raise SecureVFLError("--resume needs the output directory of the interrupted run")
    with tempfile.TemporaryDirectory(prefix="securevfl-grpc-") as scratch:
        return run_grpc_training(config, Path(scratch), dataset=dataset, progress=progress)


def _write_attack_artifacts(federation: Federation, out_dir: Path) -> None:
    """Per-sample attack outputs (e.g. inferred labels) as CSV files beside result.json."""
    setup = federation.attack_setup
    if setup is None or setup.attack is None or setup.truth is None:
        return
    for stem, rows in setup.attack.artifacts(setup.truth).items():
        text = io.StringIO(newline="")
        csv.writer(text).writerows(rows)
        atomic_write_text(out_dir / f"{stem}.csv", text.getvalue())


def _train_epoch(
    federation: Federation, config: RunConfig, epoch: int, steps_per_epoch: int, n_train: int, n_test: int
) -> EpochRecord:
    train_cfg = config.train
    started = time.perf_counter()
    batches = epoch_batches(n_train, train_cfg.batch_size, train_cfg.seed, epoch)
    total_loss = 0.0
    progress = tqdm(
        batches,
        desc=f"epoch {epoch}/{train_cfg.epochs}",
        unit="batch",
        leave=False,
        disable=None if train_cfg.progress else True,
    )
    first_step = step = (epoch - 1) * steps_per_epoch
    attack = federation.attack_setup.attack if federation.attack_setup is not None else None
    attacked = attack is not None and attack.may_be_refused()  # a feasible attack that deviates runs
    with stopped_cleanly(epoch, "training", lambda: step, attacked=attacked):
        for index, sample_ids in enumerate(progress):
            step = first_step + index
            loss = federation.train_batch(step, sample_ids)
            total_loss += loss * len(sample_ids)
            if index % 50 == 0:
                progress.set_postfix(loss=f"{loss:.4f}")
    step = first_step + len(batches)
    with stopped_cleanly(epoch, "evaluation", lambda: step, attacked=attacked):
        accuracy = federation.evaluate(n_test, train_cfg.eval_batch_size, step=step)
        attack_metrics = federation.attack_metrics(train_cfg.eval_batch_size, step=step)
    return EpochRecord(
        epoch=epoch,
        main_accuracy=accuracy,
        loss=total_loss / n_train,
        seconds=time.perf_counter() - started,
        attack_metrics=attack_metrics,
    )


@contextmanager
def stopped_cleanly(epoch: int, stage: str, step: Callable[[], int], attacked: bool = False) -> Iterator[None]:
    """Turn a diverged value or one outside CKKS's precise range into :class:`TrainingDiverged`.

    Both are outcomes of a run, not bugs, wherever they happen: in a training step or while
    evaluating (a backdoor's triggered samples can leave the range too). In a run with an attack that
    deviates (``attacked``), a party's refusal of a request is an honest party's check catching the attacker
    (:class:`~securevfl.errors.DeviationDetected`), an outcome too; any other protocol error, and a refusal
    in any other run, stays the bug it is.
    """
    def where() -> str:
        return f"at epoch {epoch}, step {step()}" + ("" if stage == "training" else f" ({stage})")

    try:
        yield
    except NonFiniteError as exc:
        raise TrainingDiverged(f"{stage} diverged {where()}: {exc}; try a smaller train.lr") from None
    except (PayloadRangeError, PrecisionError) as exc:  # PrecisionError: a kernel's result bound, or a refresh
        raise OutOfRange(
            f"a message left CKKS's precise range {where()}: {exc}; try a smaller train.lr or a larger protection bound / preset"
        ) from None
    except RequestRefusedError as exc:
        if not attacked:
            raise
        raise DeviationDetected(f"a party's protocol check stopped the run {where()}: {' '.join(str(exc).split())}") from None


def _result_record(
    config: RunConfig,
    dataset: Any,
    blocks: list[Any],
    federation: Federation,
    history: list[dict[str, Any]],
    epoch_seconds: list[float],
) -> dict[str, Any]:
    traffic = federation.channel.stats.to_dict()
    timing: dict[str, Any] = dict(federation.timer.to_dict())
    for phase, seconds in traffic["seconds_by_phase"].items():
        timing[phase] = round(timing.get(phase, 0.0) + seconds, 6)
    timing["summary"] = {**cost_summary(timing), CostGroup.TRANSFER.value: 0.0}  # in-process: no network time
    timing["epoch_seconds"] = epoch_seconds
    timing["mean_epoch_seconds"] = round(sum(epoch_seconds) / len(epoch_seconds), 4) if epoch_seconds else 0.0
    last = history[-1] if history else {}
    attack = federation.attack_setup.summary() if federation.attack_setup is not None else {"kind": "none"}
    return {
        "version": __version__,
        "seed": config.train.seed,
        "scheme": config.protection.scheme,
        "key_holder": config.scheme.key_holder,
        MAIN_ACCURACY.name: last.get(MAIN_ACCURACY.name),
        **{spec.name: last.get(spec.name) for spec in attack_metrics()},
        "attack_feasible": attack.get("feasible", True) if attack["kind"] != "none" else None,
        "attack_infeasible_reason": attack.get("infeasible_reason"),
        "attack": attack,
        "defenses": [defense.model_dump(mode="json") for defense in config.defense],
        # epsilon per completed epoch of a label_dp defense (null without one); kept out of
        # ``history``, whose extra keys the public API reads as attack metrics (floats)
        "privacy": label_dp_record(config, len(history)),
        "epochs_completed": len(history),
        **outcome(history, dataset.y_test, config.train.collapse_epochs),
        "history": history,
        "bytes_sent": traffic["bytes_by_kind"],
        "messages_sent": traffic["messages_by_kind"],
        "timing": timing,
        "dataset": {
            "name": dataset.name,
            "n_train": int(len(dataset.y_train)),
            "n_test": int(len(dataset.y_test)),
            "n_features": int(dataset.n_features),
            "num_classes": int(dataset.num_classes),
            "block_columns": [int(len(block)) for block in blocks],
        },
        "visibility": {party: log.to_rows() for party, log in federation.audits().items()},
        "promises": promises(config),
        "derivable": derivable(federation, config.train.batch_size, config.train.seed, sum_top=config.model.top == "sum"),
        "provenance": provenance(),
        "config": config.resolved(),
    }
