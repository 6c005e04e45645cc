"""``securevfl party``: one party of a planned run, from its plan, its private file and a channel.

:func:`open_party` reads and checks everything the party holds (the plan, its private file, its
identity key against the plan's fingerprint, its TLS material, its own data block against the
plan's shape) before any frame travels; :func:`run_party_process` builds the party alone
(:func:`securevfl.party_assembly.build_party`), runs its schedule
(:func:`securevfl.party_runner.run_party`) and writes its result, never over an existing one.

The channel comes from a :data:`ChannelFactory`. The command line uses :func:`plan_channel`: for
``transport.kind = "grpc"`` the party's :class:`~securevfl.protocols.grpc_channel.GrpcChannel`
(:func:`securevfl.grpc_transport.open_grpc_channel`); ``inprocess`` is refused (it runs every
party in one process). Tests also run every party in its own thread with a factory of
:mod:`securevfl.protocols.threaded_channel` endpoints. A channel with a ``close`` method is closed
when the party's run ends, however it ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from securevfl.errors import ConfigError
from securevfl.files import atomic_write_text
from securevfl.party_assembly import build_party
from securevfl.party_attack import open_party_attack
from securevfl.party_data import ActiveData, PassiveData, load_party_data
from securevfl.party_alignment import align_planned_run
from securevfl.party_checkpoint import PartyCheckpoints
from securevfl.party_record import party_facts
from securevfl.threads import limit_threads
from securevfl.party_runner import PartyEndpoint, PartyOutcome, attempt_offer, run_party, tell_peers_stopped
from securevfl.protocols.attempt import start_attempt
from securevfl.plan import Plan, PrivateParty, check_tls, load_identity, load_plan, load_private
from securevfl.protocols import Channel, Identity
from securevfl.run_files import STOP_NAME
from securevfl.training import RESULT_NAME
from securevfl.version import __version__

__all__ = ["PARTY_RESULT_NAME", "ChannelFactory", "PartySession", "open_party", "plan_channel", "run_party_process"]

#: The result file of a party other than the active one (the active party writes ``result.json``).
PARTY_RESULT_NAME = "party_result.json"


@dataclass
class PartySession:
    """One party's checked view of a planned run: the public plan and what it holds privately."""

    plan: Plan
    private: PrivateParty
    identity: Identity
    data: PassiveData | ActiveData | None

    @property
    def name(self) -> str:
        return self.identity.name


ChannelFactory = Callable[[PartySession], Channel]
"""Makes the party's endpoint of the run's transport (its identity signs, the plan's roster checks)."""


def open_party(plan_path: Path, party: str, private_path: Path) -> PartySession:
    """Load and check the plan, the party's private file, its keys and its data (one line per problem)."""
    plan = load_plan(plan_path)
    plan.party(party)
    private = load_private(private_path, party)
    identity = load_identity(plan, private)
    check_tls(plan, private)
    role = plan.party(party).role
    if role == "coordinator":
        if private.data is not None:
            raise ConfigError(f"{private_path}: {party} is a coordinator and holds no data, but its party file names {private.data.path}")
        return PartySession(plan, private, identity, None)
    if private.data is None:
        raise ConfigError(f"{private_path}: {party} is a {role} party, but its party file names no data")
    data = load_party_data(private.resolve(private.data.path))
    expected = PassiveData if role == "passive" else ActiveData
    if not isinstance(data, expected):
        raise ConfigError(f"{private.resolve(private.data.path)} holds {type(data).__name__.removesuffix('Data').lower()} party data, but {party} is a {role} party")
    return PartySession(plan, private, identity, data)


def plan_channel(session: PartySession) -> Channel:
    """The transport the plan names: the party's gRPC channel (the in-process transport has no party processes)."""
    transport = session.plan.run.transport
    if transport.kind == "grpc":
        from securevfl.grpc_transport import open_grpc_channel  # grpc loads only for a gRPC run

        return open_grpc_channel(session.plan, session.private, session.identity)
    raise ConfigError(
        "transport.kind = 'inprocess' runs every party in one process (securevfl train); "
        "one process per party needs transport.kind = 'grpc' in the plan"
    )


def run_party_process(
    session: PartySession,
    channel_factory: ChannelFactory,
    out_dir: Path | None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PartyOutcome:
    """Build party ``session.name`` alone on the factory's channel, run it, write its result into ``out_dir``.

    ``out_dir`` also holds the party's epoch checkpoints (:mod:`securevfl.party_checkpoint`);
    ``resume`` continues after the latest epoch every party has one of. A folder with checkpoints
    of an interrupted run is never started over silently: ``--resume`` or ``--overwrite``.
    """
    plan, config = session.plan, session.plan.run
    if plan.alignment == "psi" and config.attack.active:
        raise ConfigError(
            "alignment = 'psi' runs no attack: an attack's knowledge and evaluation sets are cut by row position before any alignment; "
            "simulate attacks with alignment = 'agreed'"
        )
    attack = open_party_attack(plan, session.private, session.data, out_dir=out_dir, resume=resume)  # its part of the attack, from its own folder
    result_path = None if out_dir is None else out_dir / (RESULT_NAME if plan.party(session.name).role == "active" else PARTY_RESULT_NAME)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: continue the run, or start it again")
    if result_path is not None and result_path.exists():
        if resume:
            raise ConfigError(f"--resume: {result_path} already holds this party's finished run; nothing to continue")
        if not overwrite:
            raise ConfigError(f"{result_path} already exists; use --overwrite to replace it")
    checkpoints = None if out_dir is None else PartyCheckpoints(out_dir, session.name, plan.session, config.resolved())
    if resume and checkpoints is None:
        raise ConfigError("--resume needs the party's --out folder, where its checkpoints are")
    if checkpoints is not None and not resume and checkpoints.epochs():
        if not overwrite:
            raise ConfigError(
                f"{out_dir} holds {session.name}'s checkpoints of an interrupted run (epochs {', '.join(map(str, checkpoints.epochs()))}); "
                "use --resume to continue it or --overwrite to start again"
            )
        for epoch in checkpoints.epochs():
            checkpoints.path(epoch).unlink()
    stop_path = None if out_dir is None else out_dir / STOP_NAME
    if stop_path is not None:
        stop_path.unlink(missing_ok=True)  # an earlier attempt's stop says nothing about this one

    def record_stop(record: dict[str, Any]) -> None:
        if stop_path is not None:
            try:  # the epochs' raw split predictions and the attacker's read, for the launcher to score
                record.update(attack.stop_record(record["history"]))
            except Exception:  # noqa: BLE001 - the stop is recorded without them (the launcher then keeps the failed launch)
                pass
            stop_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(stop_path, json.dumps(record, indent=1) + "\n")
    limit_threads(config.train.threads)
    shape, data, attempt = plan.run_shape(), session.data, None
    channel = channel_factory(session)
    try:
        endpoint = PartyEndpoint(channel, agreement=plan.agreement())
        peers = [name for name in shape.party_names(config.scheme.key_holder_party) if name != session.name]
        try:  # a failure after the attempt handshake and before training is told to the peers waiting for this party
            if plan.alignment == "psi":  # the attempt's own session first: the alignment's frames travel in it
                role = shape.role_of(session.name, config.scheme.key_holder_party)
                with endpoint.training():
                    attempt = start_attempt(endpoint, session.name, peers, endpoint.session, attempt_offer(role, resume, checkpoints),
                                            agreement=endpoint.agreement)
                    aligned = align_planned_run(endpoint, plan, session.name, data, out_dir)
                data, shape = aligned.data, plan.run_shape(n_train=aligned.n_train, n_test=aligned.n_test)
                if progress is not None:
                    progress(f"aligned by private set intersection: {aligned.n_train} training and {aligned.n_test} test samples every party holds")
            local = build_party(config, shape, session.name, data, endpoint)
            attack.attach(local)
        except BaseException as exc:
            # before the handshake no peer admits a frame of this attempt; without the PSI, building the party comes
            # first, so a party's own bad data or config fails there at once, without waiting for any peer
            if attempt is not None:
                with endpoint.training():
                    tell_peers_stopped(endpoint, session.name, peers, 0, exc)
            raise
        outcome = run_party(
            config, shape, local, endpoint, checkpoints=checkpoints, resume=resume, **attack.run_arguments(),
            on_epoch_end=attack.on_epoch_end(None), progress=progress, attempt=attempt, on_stop=record_stop,
        )
    finally:
        close = getattr(channel, "close", None)
        if callable(close):
            close()
    if result_path is not None:
        record = {
            "version": __version__, "session": plan.session, "seed": config.train.seed, "scheme": config.protection.scheme,
            "key_holder": config.scheme.key_holder, "defenses": [defense.model_dump(mode="json") for defense in config.defense],
            **outcome.record(), "config": config.resolved(),
        }
        record.update(attack.record(outcome.history))
        record.update(party_facts(config, shape, local, outcome.history))
        if outcome.history:
            record["main_accuracy"] = outcome.history[-1]["main_accuracy"]
        result_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(result_path, json.dumps(record, indent=2) + "\n")
    return outcome
