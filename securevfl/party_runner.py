"""Run one party's schedule alone: the in-process schedule restricted to this party, ordered by blocking receives.

:mod:`securevfl.scheduler` runs every party's phases in one order; a party running alone (its own
thread or process) runs the same phases of its own role in the same order, and its receives wait
for the peers' messages, so the party code is unchanged:

0. the attempt handshake with every other party (:mod:`securevfl.protocols.attempt`): a fresh
   session for this start of the run, and the last completed epoch every party continues after
   (0 unless the parties resume); a resuming party then loads its own checkpoint of that epoch
   (:mod:`securevfl.party_checkpoint`);
1. :data:`~securevfl.scheduler.SETUP` (announce, then learn) for each object this party runs;
2. per epoch, for every batch of the public order (:func:`securevfl.seeding.epoch_batches`), the
   :data:`~securevfl.scheduler.TRAINING_ROUND` phases of its role; at the epoch's end the
   :data:`~securevfl.scheduler.EVALUATION_ROUND` over the test split, then every extra evaluation
   split (e.g. a backdoor's triggered test samples) in the order the party's data lists them;
   then the party writes its own checkpoint of the epoch (if it was given a place for them);
3. the end of the run (:attr:`~securevfl.protocols.MessageKind.DONE`): every party tells the key
   holder it used and the active party that it is done; the active party waits for every passive's
   DONE, then tells each passive (and the coordinator) that the run is over. A key holder serves
   requests (in its own loop; for the active party, in a second thread) until every client is done.

A party that fails sends :attr:`~securevfl.protocols.MessageKind.ABORT` with a one-line reason to
every peer (best effort) and re-raises, so the peers fail at once instead of waiting out their
receive deadlines.

The active party records the history (loss, accuracy, the evaluation-split metrics of an attack)
exactly as :func:`securevfl.training.run_training` does; every party reports what it sent and its
timing. An attack runs in its own party's process; its epoch metrics are computed there only when
the caller hands it the evaluator's truth (a simulation harness, see ``docs/architecture.md``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from securevfl.attacks.base import Attack, AttackTruth
from securevfl.config import RunConfig
from securevfl.divergence import chance_accuracy, check_loss, loss_bound
from securevfl.errors import ConfigError
from securevfl.parties import ActiveParty, KeyHolderParty, LocalParties, PassiveParty, RunShape
from securevfl.party_checkpoint import KEEP, PartyCheckpoints
from securevfl.protocols import Channel, Message, MessageKind, ProtocolError, TrafficStats
from securevfl.agreement import config_agreement
from securevfl.protocols.attempt import Attempt, start_attempt
from securevfl.protocols.phases import cost_summary
from securevfl.roles import Role
from securevfl.scheduler import EVALUATION_ROUND, SETUP, TRAINING_ROUND
from securevfl.seeding import epoch_batches
from securevfl.training import stopped_cleanly

__all__ = ["PartyEndpoint", "PartyOutcome", "attempt_offer", "run_party", "tell_peers_stopped"]

#: Seconds an idle key holder sleeps between polls when its channel cannot wait for a frame itself.
IDLE_SLEEP = 0.002
#: Seconds a failing party waits for its ABORT frames to be delivered before it stops anyway.
ABORT_SECONDS = 5.0
_LOG = logging.getLogger("securevfl.party")
_END = np.zeros(0, dtype=np.float32)  # the empty payload of DONE and ABORT


def tell_peers_stopped(channel: Channel | PartyEndpoint, party: str, peers: Sequence[str], step: int, error: BaseException) -> None:
    """Send each peer an ABORT with ``error`` as its one-line reason, so it stops at once instead of at its deadline.

    Best effort, and bounded: a peer may be gone already, and one thread per peer keeps a gone peer's
    connect timeout from holding back the others' ABORT; after :data:`ABORT_SECONDS` the party stops anyway.
    Used wherever a party can fail while its peers wait for it: training (:func:`run_party`) and the
    steps before it (the sample alignment, building the party).
    """
    reason = " ".join(str(error).split())[:300] or type(error).__name__

    def tell(peer: str) -> None:
        try:
            channel.send(Message(MessageKind.ABORT, party, peer, step, _END, meta={"reason": reason}))
        except Exception:  # noqa: BLE001 - the original error is what matters
            pass

    threads = [threading.Thread(target=tell, args=(peer,), name=f"abort-{peer}", daemon=True) for peer in peers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + ABORT_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


class PartyEndpoint:
    """The channel as one party's process uses it, shared by its training thread and its key holder.

    When the active party holds the key, its key holder's service answers requests in a second
    thread of the same process. One lock (the party's) lets only one of the two compute at a time,
    so the party's keys and models are never used concurrently: the training thread holds it and
    gives it up only while it waits in :meth:`receive`, which is exactly when the in-process
    channel would let the key holder serve. ``inner`` must be safe to call from two threads.
    """

    def __init__(self, inner: Channel, agreement: str = "") -> None:
        self.inner = inner
        self.agreement = agreement
        """The digest of the plan this party runs (:meth:`securevfl.plan.Plan.agreement`): its attempt's HELLO carries it."""
        self.lock = threading.Lock()
        self._trainer: int | None = None

    @contextmanager
    def training(self) -> Iterator[None]:
        """Hold the party's lock as its training thread (its receives give it up while they wait)."""
        with self.lock:
            self._trainer = threading.get_ident()
            try:
                yield
            finally:
                self._trainer = None

    @property
    def stats(self) -> TrafficStats:
        return self.inner.stats

    @property
    def session(self) -> str:
        """The session id the channel signs in now (the plan's, until an attempt's handshake moves it)."""
        return str(self.inner.session)  # type: ignore[attr-defined]

    def expect_session(self, session: str) -> None:
        self.inner.expect_session(session)  # type: ignore[attr-defined]

    def enter_session(self, session: str) -> None:
        self.inner.enter_session(session)  # type: ignore[attr-defined]

    def send(self, message: Message) -> None:
        self.inner.send(message)

    def receive(self, receiver: str, kind: MessageKind, sender: str | None = None) -> Message:
        if threading.get_ident() != self._trainer:  # not the training thread (a caller outside the schedule): nothing to give up
            return self.inner.receive(receiver, kind, sender)
        self.lock.release()
        try:
            return self.inner.receive(receiver, kind, sender)
        finally:
            self.lock.acquire()

    def poll(self, receiver: str, kinds: Collection[MessageKind]) -> Message | None:
        return self.inner.poll(receiver, kinds)

    def idle(self) -> None:
        """Wait a little for the next frame (the transport's own wait if it has one: ``wait_for_mail``
        of the gRPC channel, ``wait`` of the threaded one), so an idle key holder does not spin."""
        wait = getattr(self.inner, "wait_for_mail", None) or getattr(self.inner, "wait", None)
        if callable(wait):
            wait(0.05)
        else:
            time.sleep(IDLE_SLEEP)


@dataclass
class PartyOutcome:
    """What one party's run produced: the active party's history, and every party's traffic and timing."""

    name: str
    role: Role
    history: list[dict[str, Any]] = field(default_factory=list)
    """Active party: one entry per epoch, as ``result.json``'s ``history`` of an in-process run."""
    attack_history: list[dict[str, float]] = field(default_factory=list)
    """The party that runs the attack, given the evaluator's truth: the attack's own metrics per epoch."""
    epoch_seconds: list[float] = field(default_factory=list)
    resumed_after: list[int] = field(default_factory=list)
    """The epoch each later attempt of the run continued after (empty for a run that never stopped)."""
    bytes_sent: dict[str, int] = field(default_factory=dict)
    messages_sent: dict[str, int] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    wire_bytes: dict[str, int | None] | None = None
    """A network transport's bytes at each layer (accounted, gRPC, TCP) as the run's end began, while
    every connection was still open (the kernel's counts of a closed connection are gone); this attempt only."""
    traffic_from_epoch: int = 0
    """The epoch after which ``bytes_sent`` and ``messages_sent`` start counting: 0 (the whole run) for a party
    that resumes from its checkpoint, which carries its earlier counts; the resume epoch for a coordinator,
    which keeps no checkpoint, so its frames of the attempts before are not in its counts."""

    def record(self) -> dict[str, Any]:
        """JSON-ready form of this outcome."""
        return {
            "party": self.name,
            "role": self.role.value,
            "epochs_completed": len(self.epoch_seconds),
            "resumed_after": self.resumed_after,
            "history": self.history,
            "attack_history": self.attack_history,
            "bytes_sent": self.bytes_sent,
            "messages_sent": self.messages_sent,
            "traffic_from_epoch": self.traffic_from_epoch,
            "timing": {**self.timing, "epoch_seconds": self.epoch_seconds},
            **({} if self.wire_bytes is None else {"wire_bytes": self.wire_bytes}),
        }


def run_party(
    config: RunConfig,
    run: RunShape,
    local: LocalParties,
    channel: PartyEndpoint,
    *,
    evaluate_splits: Callable[[Mapping[str, np.ndarray]], dict[str, float]] | None = None,
    attack: Attack | None = None,
    attack_truth: AttackTruth | None = None,
    checkpoints: PartyCheckpoints | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[str], None] | None = None,
    attempt: Attempt | None = None,
    on_stop: Callable[[dict[str, Any]], None] | None = None,
) -> PartyOutcome:
    """Run party ``local`` (built on ``channel``) through the whole schedule, then end the run.

    Args:
        checkpoints: where this party writes its own checkpoint at every epoch's end (with
            ``train.checkpoint``) and, with ``resume``, what it offers to continue after.
        resume: continue after the latest epoch every party has a checkpoint of (the handshake
            refuses, in one line, parties that do not agree).
        attempt: the attempt the caller already agreed with every peer (its handshake ran before
            something else this attempt needed, e.g. the sample alignment); None: run it here.
        on_epoch_end: called with the active party's history entry after each epoch, before
            its checkpoint is written (what it files is then never behind the checkpoint).
        on_stop: given this party's record of its stop (any error: a divergence, a range stop, a
            refused request, a peer's ABORT ...), written before the peers are told, so that the
            launcher can report the run as the in-process run would (``stopped.json``).
        progress: given one line when the attempt starts (its session and the epoch it continues
            after) and, at the active party, one line per epoch (loss and main accuracy).
        evaluate_splits: the active party's metrics of the extra evaluation splits from its
            predictions (an attack plan's ``evaluate``, e.g. backdoor accuracy).
        attack: the attack this party runs (already attached to its objects), if any.
        attack_truth: the evaluator's truth to score ``attack`` against at every epoch's end;
            without it the attack runs but its truth-based metrics are not computed here.
    """
    if resume and checkpoints is None:
        raise ConfigError("--resume: this party was given no folder to find its checkpoints in")
    runner = _PartyRunner(config, run, local, channel, evaluate_splits, attack, attack_truth, checkpoints, resume)
    runner.progress, runner.on_epoch_end, runner.attempt = progress, on_epoch_end, attempt
    with channel.training():
        try:
            runner.run()
        except BaseException as exc:
            if on_stop is not None and isinstance(exc, Exception):  # before the peers hear of it: the launcher may kill
                try:                                                 # this process once they stop
                    on_stop(runner.stop_record(exc))
                except Exception:  # noqa: BLE001 - the stop itself is what matters
                    pass
            runner.abort(exc)
            raise
    return runner.outcome()


def attempt_offer(role: Role, resume: bool, checkpoints: PartyCheckpoints | None) -> list[int] | None:
    """What a party offers in the attempt handshake: the epochs it can continue after (None: any)."""
    if role is Role.KEY_HOLDER:
        return None  # a coordinator holds no training state: it continues after any epoch
    if resume:
        if checkpoints is None:
            raise ConfigError("--resume: this party was given no folder to find its checkpoints in")
        epochs = checkpoints.epochs()
        # the beginning is a state every party can rebuild (the seed makes it); it is offered while it is within the
        # kept checkpoints' reach, so a crash before another party's first checkpoint still has an epoch in common,
        # but a party that lost its folder cannot silently restart parties that are epochs further
        return [0, *epochs] if not epochs or max(epochs) < KEEP else epochs
    return [0]


class _PartyRunner:
    def __init__(
        self,
        config: RunConfig,
        run: RunShape,
        local: LocalParties,
        channel: PartyEndpoint,
        evaluate_splits: Callable[[Mapping[str, np.ndarray]], dict[str, float]] | None,
        attack: Attack | None,
        attack_truth: AttackTruth | None,
        checkpoints: PartyCheckpoints | None,
        resume: bool,
    ) -> None:
        self.config, self.run_shape, self.local, self.channel = config, run, local, channel
        self.evaluate_splits, self.attack, self.attack_truth = evaluate_splits, attack, attack_truth
        self.checkpoints, self.resume = checkpoints, resume
        self.resumed_after: list[int] = []
        self.traffic_from_epoch = 0
        self.wire_bytes: dict[str, int | None] | None = None
        self.progress: Callable[[str], None] | None = None
        self.on_epoch_end: Callable[[dict[str, Any]], None] | None = None
        self.attempt: Attempt | None = None
        self.key_holder_name = config.scheme.key_holder_party
        self.steps_per_epoch = -(-run.n_train // config.train.batch_size)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.attack_history: list[dict[str, float]] = []
        self.epoch_seconds: list[float] = []
        self.epoch, self.stage = 0, "training"
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ the schedule
    def run(self) -> None:
        local = self.local
        attempt = self._start_attempt()
        if local.role is Role.KEY_HOLDER:
            self._setup()
            assert local.key_holder is not None
            self._serve_until_done(local.key_holder)
            return
        with self._serving_alongside(local.key_holder):
            self._setup()
            for epoch in range(attempt.epoch + 1, self.config.train.epochs + 1):
                self.epoch = epoch
                self._epoch(epoch)
                if self.on_epoch_end is not None and self.history:
                    self.on_epoch_end(self.history[-1])
                self._checkpoint(epoch)
                if self.progress is not None and self.history:
                    entry = self.history[-1]
                    self.progress(f"epoch {entry['epoch']}: loss {entry['loss']:.4f}, main accuracy {entry['main_accuracy']:.2%}")
            self._finish()

    # ------------------------------------------------------------------ attempts and checkpoints
    def _start_attempt(self) -> Attempt:
        """The handshake with every other party (unless the caller ran it); a resuming party then loads its checkpoint of the agreed epoch."""
        name = self.local.name
        offer = attempt_offer(self.local.role, self.resume, self.checkpoints)
        peers = [party for party in self.run_shape.party_names(self.key_holder_name) if party != name]
        # a planned party's endpoint carries its plan's digest; without a plan, the run configuration must agree at least
        agreement = getattr(self.channel, "agreement", "") or config_agreement(self.config)
        attempt = self.attempt if self.attempt is not None else start_attempt(self.channel, name, peers, self.channel.session, offer, agreement=agreement)
        if attempt.epoch >= self.config.train.epochs:
            raise ConfigError(f"--resume: every party has completed all {self.config.train.epochs} epochs already; nothing to continue")
        if attempt.epoch > 0 and offer is not None:
            assert self.checkpoints is not None
            self._restore(self.checkpoints.load(attempt.epoch))
        if attempt.epoch > 0:
            self.resumed_after.append(attempt.epoch)
            if offer is None:  # no checkpoint to carry the earlier attempts' counts
                self.traffic_from_epoch = attempt.epoch
        if self.progress is not None:
            where = f"continuing after epoch {attempt.epoch}" if attempt.epoch else "starting from the beginning"
            self.progress(f"attempt {attempt.session[:12]}: {len(peers) + 1} parties agreed, {where}")
        return attempt

    def _checkpoint(self, epoch: int) -> None:
        if self.checkpoints is None or not self.config.train.checkpoint:
            return
        local = self.local
        objects = {"passive": local.passive, "active": local.active}
        self.checkpoints.save(epoch, {
            "objects": {role: party.state_dict() for role, party in objects.items() if party is not None},
            "attack": None if self.attack is None else self.attack.state_dict(),
            "traffic": self.channel.stats.to_dict(),
            "timing": self._timer().to_dict(),
            "history": self.history,
            "attack_history": self.attack_history,
            "epoch_seconds": self.epoch_seconds,
            "resumed_after": self.resumed_after,
        })

    def _restore(self, state: dict[str, Any]) -> None:
        """Load this party's checkpoint (what this attempt sent so far is added to the checkpoint's traffic)."""
        local = self.local
        try:
            objects = {"passive": local.passive, "active": local.active}
            for role, party in objects.items():
                if party is not None:
                    party.load_state_dict(state["objects"][role])
            if self.attack is not None:
                if state.get("attack") is None:
                    raise ConfigError("the checkpoint holds no state for the party's attack")
                self.attack.load_state_dict(state["attack"])
            this_attempt = self.channel.stats.to_dict()
            self.channel.stats.load(state["traffic"])
            self.channel.stats.absorb(this_attempt)
            self._timer().load(state["timing"])
            self.history = [dict(entry) for entry in state["history"]]
            self.attack_history = [dict(entry) for entry in state["attack_history"]]
            self.epoch_seconds = [float(value) for value in state["epoch_seconds"]]
            self.resumed_after = [int(value) for value in state["resumed_after"]]
        except ConfigError as exc:
            raise ConfigError(f"--resume: {exc}") from None
        except Exception as exc:  # missing keys, wrong shapes or types inside a loadable file
            raise ConfigError(f"--resume: {self.local.name}'s checkpoint does not fit this run ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None

    def _count_wire_bytes(self) -> None:
        byte_counts = getattr(self.channel.inner, "byte_counts", None)  # a network transport: what crossed its sockets
        if callable(byte_counts):
            self.wire_bytes = byte_counts().to_dict()

    def _timer(self) -> Any:
        party = self.local.passive or self.local.active
        return party.timer if party is not None else self.local.key_holder.service.timer  # type: ignore[union-attr]

    def _setup(self) -> None:
        objects = self.local.objects()
        for roles, phase in SETUP:
            for party in objects:
                if _role(party) in roles:
                    getattr(party, phase)()

    def _epoch(self, epoch: int) -> None:
        train = self.config.train
        started = time.perf_counter()
        batches = epoch_batches(self.run_shape.n_train, train.batch_size, train.seed, epoch)
        first_step = (epoch - 1) * self.steps_per_epoch
        total_loss = 0.0
        self.stage = "training"
        with stopped_cleanly(epoch, "training", lambda: self.step):
            for index, sample_ids in enumerate(batches):
                self.step = first_step + index
                for role, phase in TRAINING_ROUND:
                    party = self._party(role)
                    if party is not None:
                        outcome = getattr(party, phase)(self.step, sample_ids)
                        if role is Role.ACTIVE:
                            total_loss += float(outcome) * len(sample_ids)
        self.step = first_step + len(batches)
        self.stage = "evaluation"
        with stopped_cleanly(epoch, "evaluation", lambda: self.step):
            predictions = {split: self._evaluate_split(split, rows) for split, rows in self._splits()}
        metrics = self._attack_metrics(predictions)
        if self.local.active is not None:
            loss = total_loss / self.run_shape.n_train
            check_loss(loss, loss_bound(train.max_loss, self.run_shape.num_classes), epoch)
            labels = self.local.active.test_labels(np.arange(self.run_shape.n_test)).numpy()
            accuracy = float((predictions["test"] == labels).astype(np.float64).mean())
            self.history.append({"epoch": epoch, "main_accuracy": accuracy, "loss": loss, **metrics})
        self.epoch_seconds.append(round(time.perf_counter() - started, 4))

    def _splits(self) -> list[tuple[str, int]]:
        """Evaluation splits and their sizes: the test split first, then the party's extra ones in order."""
        if self.local.active is not None:
            return [(split, len(labels)) for split, labels in self.local.active.eval_labels.items()]
        if self.local.passive is not None:
            return [(split, len(x)) for split, x in self.local.passive.eval_x.items()]
        return []

    def _evaluate_split(self, split: str, rows: int) -> np.ndarray:
        batch = self.config.train.eval_batch_size
        predicted = []
        for start in range(0, rows, batch):
            ids = np.arange(start, min(start + batch, rows))
            for role, phase in EVALUATION_ROUND:
                party = self._party(role)
                if party is not None:
                    outcome = getattr(party, phase)(self.step, ids, split)
                    if role is Role.ACTIVE:
                        predicted.append(outcome.numpy())
        return np.concatenate(predicted) if predicted else np.zeros(0, dtype=np.int64)

    def _attack_metrics(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        """The active party's metrics of the extra splits; the attacker's own metrics given the truth."""
        metrics: dict[str, float] = {}
        if self.local.active is not None and self.evaluate_splits is not None:
            metrics.update(self.evaluate_splits({split: values for split, values in predictions.items() if split != "test"}))
        if self.attack is not None and self.attack_truth is not None:
            own = self.attack.epoch_metrics(self.attack_truth)
            if self.local.active is not None:
                metrics.update(own)
            else:
                self.attack_history.append(own)
        return metrics

    # ------------------------------------------------------------------ the end of the run
    def _finish(self) -> None:
        """Say DONE to the key holder and the active party; the active party closes the run for everyone."""
        name = self.local.name
        self._count_wire_bytes()
        holder = self.key_holder_name if self.key_holder_name not in (None, name) else None
        if self.local.passive is not None:
            # the key holder first: when it gets its first DONE, no party has left yet (the active party closes the
            # run only after every passive's DONE), so its socket counts are complete
            self._send_end(MessageKind.DONE, ([holder] if holder and holder != self.run_shape.active_name else []) + [self.run_shape.active_name])
            self.channel.receive(name, MessageKind.DONE, sender=self.run_shape.active_name)
            return
        for passive in self.run_shape.passive_names:  # the key holder's thread keeps serving meanwhile
            self.channel.receive(name, MessageKind.DONE, sender=passive)
        for receiver in [*self.run_shape.passive_names, *([holder] if holder else [])]:
            # the last frame of the run: its receiver stops as soon as it has it, and over gRPC may close before
            # the call's answer is back, so a send that fails here is not the run failing (a receiver that never got
            # it stops on its own deadline and says so)
            try:
                self._send_end(MessageKind.DONE, [receiver])
            except ProtocolError as exc:
                _LOG.warning("%s: the closing DONE to %s may not have arrived: %s", name, receiver, exc)

    def _serve_until_done(self, key_holder: KeyHolderParty) -> None:
        """A coordinator: answer requests until every client said DONE (fail at once on an ABORT)."""
        waiting = set(key_holder.clients)
        while waiting:
            served = key_holder.serve_pending()
            signal = self.channel.poll(key_holder.name, (MessageKind.DONE, MessageKind.ABORT))
            if signal is not None:
                if self.wire_bytes is None:
                    self._count_wire_bytes()  # the run's end began: every connection is still open
                if signal.kind == MessageKind.ABORT:
                    raise ProtocolError(f"{key_holder.name} stopped serving: {signal.sender} aborted ({signal.meta.get('reason', 'no reason given')})")
                waiting.discard(signal.sender)
            elif not served:
                self.channel.idle()

    @contextmanager
    def _serving_alongside(self, key_holder: KeyHolderParty | None) -> Iterator[None]:
        """The active party's key holder answers requests in a second thread while the party trains."""
        if key_holder is None:
            yield
            return
        stop = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                while not stop.is_set():
                    with self.channel.lock:
                        served = key_holder.serve_pending()
                    if not served:
                        self.channel.idle()
            except BaseException as exc:  # reported by the training thread below
                failure.append(exc)

        thread = threading.Thread(target=serve, name=f"{key_holder.name}-key-holder", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            self.channel.lock.release()  # let the server finish its round
            try:
                thread.join()
            finally:
                self.channel.lock.acquire()
        if failure:
            raise failure[0]

    def _send_end(self, kind: MessageKind, receivers: list[str], reason: str | None = None) -> None:
        meta = {} if reason is None else {"reason": reason}
        step = self.config.train.epochs * self.steps_per_epoch if kind == MessageKind.DONE else self.step
        for receiver in receivers:
            self.channel.send(Message(kind, self.local.name, receiver, step, _END, meta=meta))

    def abort(self, error: BaseException) -> None:
        """Tell every peer this party stopped (best effort: a peer may be gone already)."""
        peers = [name for name in self.run_shape.party_names(self.key_holder_name) if name != self.local.name]
        tell_peers_stopped(self.channel, self.local.name, peers, self.step, error)

    # ------------------------------------------------------------------ results
    def stop_record(self, error: BaseException) -> dict[str, Any]:
        """What ``stopped.json`` holds: the stop's type and line, where it happened, and (the active party's) the epochs
        before it and the test set's chance accuracy, as an in-process stop carries them; an attacker that scores
        itself adds its metrics of those epochs."""
        record = {"type": type(error).__name__, "error": " ".join(str(error).split()), "epoch": self.epoch,
                  "step": self.step, "stage": self.stage, "history": list(self.history)}
        if self.attack_history:  # the attacker's own metrics of the finished epochs, scored as a finished run's are
            record["attack_history"] = [dict(entry) for entry in self.attack_history]
        if self.local.active is not None:
            record["chance_accuracy"] = chance_accuracy(self.local.active.test_labels(np.arange(self.run_shape.n_test)).numpy())
        return record

    def outcome(self) -> PartyOutcome:
        stats = self.channel.stats.to_dict()
        timing: dict[str, Any] = dict(self._timer().to_dict())
        for phase, seconds in stats["seconds_by_phase"].items():
            timing[phase] = round(timing.get(phase, 0.0) + seconds, 6)
        timing["summary"] = cost_summary(timing)
        timing["wall"] = round(time.perf_counter() - self.started, 4)
        return PartyOutcome(
            name=self.local.name, role=self.local.role, history=self.history, attack_history=self.attack_history,
            epoch_seconds=self.epoch_seconds, resumed_after=self.resumed_after, traffic_from_epoch=self.traffic_from_epoch, wire_bytes=self.wire_bytes, bytes_sent=stats["bytes_by_kind"], messages_sent=stats["messages_by_kind"], timing=timing,
        )

    def _party(self, role: Role) -> PassiveParty | ActiveParty | None:
        if role is Role.PASSIVE:
            return self.local.passive
        if role is Role.ACTIVE:
            return self.local.active
        return None


def _role(party: object) -> Role:
    if isinstance(party, PassiveParty):
        return Role.PASSIVE
    if isinstance(party, ActiveParty):
        return Role.ACTIVE
    return Role.KEY_HOLDER
