"""The structure the code promises: no import cycle, layers downwards, parties that only share a channel,
schemes that answer every scheme question, and a schedule every party can run on its own."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import config, random_dataset
from securevfl.config import ProtectionConfig, validate_config
from securevfl.federation import build_federation
from securevfl.parties import ActiveParty, KeyHolderParty, PassiveParty
from securevfl.protocols import (
    ChannelEndpoint,
    FrameAuthenticationError,
    FrameSigner,
    Identity,
    InProcessChannel,
    Message,
    MessageKind,
    ProtocolError,
)
from securevfl.roles import Capability, Role
from securevfl.scheduler import EVALUATION_ROUND, SETUP, TRAINING_ROUND
from securevfl.schemes import LabelPrivateScheme, PlainScheme, ReceiverKeyScheme, protection_from_label, scheme_for

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"securevfl": "securevfl", "crypto": "securevfl.crypto", "protocols": "securevfl.protocols"}
SCHEMES = {
    "plain": {"scheme": "plain"},
    "ckks/receiver": {"scheme": "ckks", "key_holder": "receiver"},
    "ckks/active": {"scheme": "ckks", "key_holder": "active"},
    "ckks/coordinator": {"scheme": "ckks", "key_holder": "coordinator"},
}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join((package, *parts))] = path
    return modules


def _runtime_imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Modules of the package that ``module`` imports when it runs (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for child in ast.walk(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in known and name != module}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _runtime_imports(path, name, set(modules)) for name, path in modules.items()}


def test_no_import_cycle_between_modules() -> None:
    graph = _graph()
    # a package's __init__ re-exports its modules: the edge package -> own module is not a cycle by itself;
    # a module importing its own package (module -> ancestor) is kept: that is a real circle
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt):] + [node, nxt] if nxt in stack else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*stack, node]):
                return True
        state[node] = 2
        return False

    for node in sorted(edges):
        if state.get(node) is None and visit(node, []):
            break
    assert cycle == [], " -> ".join(cycle)


def test_layers_import_downwards_only() -> None:
    graph = _graph()
    for module, deps in graph.items():
        if module.startswith("securevfl.crypto"):
            assert all(d.startswith("securevfl.crypto") for d in deps), (module, deps)
        if module.startswith("securevfl.protocols"):
            assert all(d.startswith(("securevfl.protocols", "securevfl.crypto")) for d in deps), (module, deps)


def _federation(protection: dict) -> object:
    dataset = random_dataset(24, 8, 6, 3, seed=0)
    blocks = [np.arange(0, 3), np.arange(3, 6)]
    run = config(
        parties={"passive": 2, "split": "even"},
        model={"top": "sum", "bottom_hidden": [4]},
        train={"batch_size": 8, "seed": 0},
        protection=protection,
    )
    return build_federation(run, dataset, blocks)


def _reachable_parties(root: object) -> list[object]:
    """Party objects reachable from ``root``'s attributes, not crossing its channel endpoint (the transport)."""
    parties = (PassiveParty, ActiveParty, KeyHolderParty)
    seen: set[int] = {id(root)}
    found: list[object] = []
    todo = list(vars(root).values())
    while todo:
        value = todo.pop()
        if id(value) in seen or isinstance(value, (InProcessChannel, ChannelEndpoint, torch.nn.Module, torch.optim.Optimizer, torch.Tensor, np.ndarray, str, bytes, int, float)):
            continue
        seen.add(id(value))
        if isinstance(value, parties):
            found.append(value)
            continue
        if isinstance(value, dict):
            todo += list(value.values())
        elif isinstance(value, (list, tuple, set)):
            todo += list(value)
        elif hasattr(value, "__dict__") and not inspect.isroutine(value) and not isinstance(value, type):
            todo += list(vars(value).values())
    return found


@pytest.mark.parametrize("label", list(SCHEMES))
def test_no_party_holds_another_party(label: str) -> None:
    federation = _federation(SCHEMES[label])
    parties = [*federation.passives, federation.active] + ([federation.key_holder] if federation.key_holder else [])
    for party in parties:
        assert _reachable_parties(party) == [], f"{party.name} reaches another party outside the channel"
        # the channel a party holds is its own endpoint: it sends as itself and reads its own mail only
        assert isinstance(party.channel, ChannelEndpoint) and party.channel.party == party.name
        with pytest.raises(ProtocolError, match="cannot send a message as"):
            party.channel.send(Message(MessageKind.GRADIENT, "someone_else", party.name, 0, np.zeros(1, np.float32)))
        other = "active" if party.name != "active" else "passive_1"
        with pytest.raises(ProtocolError, match="cannot receive the messages addressed to"):
            party.channel.receive(other, MessageKind.GRADIENT)
        # nor can it tap, intercept or inject frames, attach servers or reach the identity keys
        for power in ("taps", "attach_server", "interceptor", "inject", "enrol", "roster", "_identities"):
            assert not hasattr(party.channel, power), power


def test_every_scheduled_phase_is_a_method_of_its_role() -> None:
    classes = {Role.PASSIVE: PassiveParty, Role.ACTIVE: ActiveParty, Role.KEY_HOLDER: KeyHolderParty}
    for roles, phase in SETUP:
        for role in roles:
            assert callable(getattr(classes[role], phase)), (role, phase)
    for role, phase in TRAINING_ROUND:
        assert list(inspect.signature(getattr(classes[role], phase)).parameters) == ["self", "step", "sample_ids"]
    for role, phase in EVALUATION_ROUND:
        assert list(inspect.signature(getattr(classes[role], phase)).parameters) == ["self", "step", "sample_ids", "split"]


@pytest.mark.parametrize("label", list(SCHEMES))
def test_a_scheme_is_one_object_that_answers_every_scheme_question(label: str) -> None:
    protection = ProtectionConfig.model_validate(SCHEMES[label])
    scheme = scheme_for(protection)
    assert scheme.label() == label and protection_from_label(label) == {f"protection.{k}": v for k, v in SCHEMES[label].items()}
    assert isinstance(scheme, {"plain": PlainScheme, "ckks/receiver": ReceiverKeyScheme}.get(label, LabelPrivateScheme))
    caps = scheme.capabilities
    assert caps.ciphertexts == (label != "plain")
    assert scheme.label_private == label.endswith(("active", "coordinator"))
    passive = caps.granted(Role.PASSIVE)
    assert (Capability.PLAINTEXT_GRADIENT_ROWS in passive) != scheme.label_private
    assert (Capability.CIPHERTEXT_GRADIENT_ROWS in passive) == scheme.label_private
    # the placements the scheme refuses are exactly the ones the config layer refuses
    for on in ("gradient", "activation"):
        for placement in ("pre_encryption", "under_encryption", "post_decryption"):
            defense = {"kind": "gaussian_noise", "variance": 1e-4, "on": on, "placement": placement}
            refused = scheme.placement_refusal(on, placement)
            try:
                validate_config({"protection": SCHEMES[label], "defense": [defense]})
                loads = True
            except ValueError as exc:
                loads = False
                if refused is not None:
                    assert refused in str(exc)
            if refused is not None:
                assert not loads


def test_the_key_holder_answers_through_the_channel_only() -> None:
    federation = _federation(SCHEMES["ckks/coordinator"])
    ids = np.arange(8)
    federation.train_batch(0, ids)
    assert federation.key_holder is not None and federation.channel.pending("coordinator") == 0
    assert federation.channel.stats.messages_by_kind["decrypt_request"] == federation.channel.stats.messages_by_kind["decrypt_reply"] > 0


def test_the_key_holder_never_sees_a_request_from_a_party_outside_the_roster() -> None:
    federation = _federation(SCHEMES["ckks/coordinator"])
    assert federation.key_holder is not None
    channel = federation.channel
    with pytest.raises(ProtocolError, match="'mallory' is not a party of this run"):  # the channel signs for its parties only
        channel.send(Message(MessageKind.DECRYPT_REQUEST, "mallory", "coordinator", 0, b"\x00", codec="ckks"))
    # a stranger with a key of its own reaches the coordinator's mailbox from the network: refused on arrival
    stranger = FrameSigner(Identity.generate("mallory"), channel.session)
    channel.inject("coordinator", stranger.seal(Message(MessageKind.DECRYPT_REQUEST, "mallory", "coordinator", 0, b"\x00", codec="ckks"), channel.codecs))
    (refusal,) = channel.refusals
    assert isinstance(refusal.error, FrameAuthenticationError)
    assert str(refusal.error) == "coordinator refused decrypt_request #0 (step 0) from 'mallory': 'mallory' is not on the roster"
    assert federation.key_holder.serve_pending() is False  # nothing admitted, nothing answered, the key holder goes on
    assert federation.key_holder.service.refusals == [] and channel.pending("coordinator") == 0
    federation.train_batch(0, np.arange(8))  # still serving the parties it knows
    assert channel.stats.messages_by_kind["decrypt_reply"] > 0


@pytest.mark.parametrize("top", ["sum", "trainable"])
@pytest.mark.parametrize("label", list(SCHEMES))
def test_what_each_party_held_is_what_its_scheme_says_it_sees(label: str, top: str) -> None:
    """The audit of one training round and one evaluation, held against ``scheme.capabilities.sees``."""
    dataset = random_dataset(24, 8, 6, 3, seed=0)
    model = {"top": "trainable", "bottom_hidden": [], "bottom_output": 4, "top_hidden": [5]} if top == "trainable" else {"top": "sum", "bottom_hidden": [4]}
    run = config(parties={"passive": 2, "split": "even"}, model=model, train={"batch_size": 8, "seed": 0}, protection=SCHEMES[label])
    federation = build_federation(run, dataset, [np.arange(0, 3), np.arange(3, 6)])
    federation.train_batch(0, np.arange(8))
    federation.evaluate(8, 8, step=1)
    sees = run.scheme.capabilities.sees
    roles = {party.name: Role.PASSIVE for party in federation.passives} | {"active": Role.ACTIVE}
    if federation.key_holder is not None and federation.key_holder.name not in roles:
        roles[federation.key_holder.name] = Role.KEY_HOLDER
    for name, log in federation.audits().items():
        held = log.kinds(masked=False)
        if roles[name] is Role.KEY_HOLDER:
            assert log.kinds(masked=True), "the key holder decrypted nothing: the check would be empty"
        else:
            assert held, f"{name} held nothing: the check would be empty"
        assert held <= set(sees.get(roles[name], ())), (name, held)
