"""Exception types the command line turns into one clear error line (exit code 2).

Every user-facing failure (bad config, missing or corrupt data, impossible partition)
derives from :class:`SecureVFLError`, so the CLI can report it without a traceback while
genuine bugs still surface with one.
"""

from __future__ import annotations

from typing import Any


class SecureVFLError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class ConfigError(SecureVFLError, ValueError):
    """A configuration is malformed, has unknown keys or asks for an impossible combination."""


class DataError(SecureVFLError, ValueError):
    """A data set is missing, corrupt, or cannot be partitioned as asked."""


class PlacementError(ConfigError):
    """A defense was asked to run where it cannot; the message says why.

    A :class:`ValueError` (through :class:`ConfigError`), so the CLI reports it as a
    configuration error in one line.
    """


class PKIError(SecureVFLError, ValueError):
    """A certificate, private key or passphrase is missing or unreadable, or fails a check.

    The checks are the ones mutual TLS between parties rests on: the certificate chains to the
    federation's CA, is within its validity, names the party the plan expects and may be used
    for both TLS sides. The message names the file and the check, in one line.
    """


class TrainingDiverged(SecureVFLError):
    """Training produced NaN/Inf or an epoch loss above ``train.max_loss``: an outcome of the run, reported in one line.

    ``history`` (the epochs completed before the stop) and ``stopped_at_epoch`` are set by the
    training loop, so a study keeps what the run did before it stopped (e.g. a backdoor that
    reached 90 % and then diverged).
    """

    history: list[dict[str, Any]] | None = None
    stopped_at_epoch: int | None = None
    chance_accuracy: float | None = None
    """The test set's majority-class rate, so a study can tell the epochs at chance among those before the stop."""


class OutOfRange(TrainingDiverged):
    """A message left CKKS's precise range (or a kernel's result bound): the run stops as CKKS would
    otherwise decrypt garbage. A stop of its own kind in study tables (``out_of_range``), not a divergence."""


class DeviationDetected(TrainingDiverged):
    """An honest party's protocol check caught a malicious party deviating (a run with an attack): the run stops.

    The outcome of an attack that a check defeats (e.g. the coordinator refusing the active party's request
    because the passives received different gradients: gradient steering), a stop of its own kind in study
    tables (``detected``); the epochs before the stop say what the attacker had by then. Without an attack a
    protocol error is a bug and is not turned into this."""

    attack_at_stop: dict[str, float] | None = None
    """An attack that reads private data scored on what it holds at the stop (its cumulative metrics, no protocol
    message): the attacker keeps what it read, and reads nothing more, so this is its final success (study verdicts
    use it). Only metrics that are running totals over the run (``MetricSpec.cumulative``)."""


class BenchChildError(SecureVFLError):
    """A benchmark measurement process stopped on a user error (e.g. no MNIST files in ``--data-dir``)."""


class BenchCrashError(RuntimeError):
    """A benchmark measurement process failed on a bug; the message carries the child's traceback."""
