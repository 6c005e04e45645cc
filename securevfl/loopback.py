"""Everything a one-machine run of one process per party needs, written from an ordinary config.

:func:`write_loopback_plan` writes, into one directory: ``plan.toml`` (every party on 127.0.0.1,
one port each), a development CA (``ca/``), and per party a folder with its identity key, its TLS
certificate and key, its private file ``party.toml`` and (unless told not to) its own data block
``data.npz`` (:func:`export_party_data`). This is a *simulation* harness: it reads the whole data
set once to cut it into blocks, as an experimenter does; every party process then reads only its
own folder. With an attack configured it also prepares the attack as the experimenter does and
writes, into the attacking party's folder only, what that party knows of it and the simulation's
evaluator truth, named in the ``[attack]`` table of its party file
(:func:`securevfl.party_attack.write_attack_files`). Keys are written unencrypted with mode 0600 (one machine, one user); a deployment
issues them per organisation instead (docs/deployment.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, NoEncryption, PrivateFormat

from securevfl import pki
from securevfl.attacks.setup import AttackSetup
from securevfl.config import RunConfig, validate_config
from securevfl.data import VFLDataset, load_dataset, partition_columns
from securevfl.errors import ConfigError
from securevfl.federation import prepare_run_attack
from securevfl.files import atomic_write_text
from securevfl.party_attack import write_attack_files
from securevfl.party_assembly import run_shape
from securevfl.party_data import cut_party_data, save_party_data
from securevfl.plan import Plan, PrivateParty, load_plan, load_private
from securevfl.protocols import Identity, new_session_id
from securevfl.roles import Role
from securevfl.toml_text import dumps

__all__ = ["PLAN_NAME", "PRIVATE_NAME", "LoopbackFiles", "export_party_data", "write_identity_key", "write_loopback_plan"]

PLAN_NAME = "plan.toml"
PRIVATE_NAME = "party.toml"
IDENTITY_NAME = "identity.pem"
DATA_NAME = "data.npz"
DEFAULT_BASE_PORT = 50_051


@dataclass(frozen=True)
class LoopbackFiles:
    """Where :func:`write_loopback_plan` put the plan and each party's private file."""

    plan: Path
    private: dict[str, Path]
    attack: AttackSetup | None = field(default=None, repr=False, compare=False)
    """The experimenter's prepared attack (its plan scores the evaluation splits after the run); None without one."""


def write_loopback_plan(
    config: RunConfig,
    out_dir: Path,
    *,
    base_port: int = DEFAULT_BASE_PORT,
    dataset: VFLDataset | None = None,
    with_data: bool = True,
    overwrite: bool = False,
) -> LoopbackFiles:
    """Write a plan for every party of ``config`` on this machine, with keys, certificates and data blocks."""
    out_dir = Path(out_dir)
    plan_path = out_dir / PLAN_NAME
    if plan_path.exists() and not overwrite:
        raise ConfigError(f"{plan_path} already exists; pass --overwrite to replace the plan and every party's files")
    if not 0 < base_port <= 65_535 - 16:
        raise ConfigError(f"--base-port {base_port}: choose a port from 1 to 65519")
    dataset = dataset if dataset is not None else load_dataset(config.data)
    blocks = partition_columns(dataset, config.parties)
    shape = {"n_train": len(dataset.y_train), "n_test": len(dataset.y_test), "num_classes": dataset.num_classes, "block_widths": [len(b) for b in blocks]}
    public = run_shape(config, shape["block_widths"], dataset.num_classes, shape["n_train"], shape["n_test"])
    key_holder = config.scheme.key_holder_party
    names = config.scheme.party_names(public)
    setup = prepare_run_attack(config, dataset, blocks) if config.attack.active else None
    if setup is not None and setup.attack is not None and setup.party not in names:
        raise ConfigError(f"attack {config.attack.kind!r} runs at {setup.party!r}, which is no party process of the run; use transport.kind = 'inprocess'")
    ca = pki.create_ca()
    pki.write_ca(ca, out_dir / "ca", overwrite=overwrite)
    parties, private = [], {}
    for index, name in enumerate(names):
        folder = out_dir / name
        identity = Identity.generate(name)
        write_identity_key(folder / IDENTITY_NAME, identity, overwrite=overwrite)
        credentials = pki.issue_party_certificate(ca, name, dns_names=pki.DEFAULT_DNS_NAMES, ip_addresses=pki.DEFAULT_IP_ADDRESSES)
        written = pki.write_party_credentials(credentials, folder, overwrite=overwrite)
        role = {Role.PASSIVE: "passive", Role.ACTIVE: "active"}.get(public.role_of(name, key_holder), "coordinator")
        certificate, key = pki.party_file_names(name)
        parties.append({
            "name": name, "role": role, "address": f"127.0.0.1:{base_port + index}",
            "identity_fingerprint": identity.fingerprint, "identity_public_key": identity.public_key.hex(), "tls_fingerprint": written.fingerprint,
            "tls_certificate": f"{name}/{certificate}",  # every other party trusts exactly this certificate when it dials this one
        })
        document: dict[str, object] = {"party": name, "identity_key": IDENTITY_NAME, "tls_certificate": certificate, "tls_key": key}
        if role != "coordinator":
            document["data"] = {"path": DATA_NAME, "format": "npz"}
        if setup is not None and setup.party == name:
            attack = write_attack_files(setup, folder, overwrite=overwrite)
            if attack is not None:
                document["attack"] = attack
        private[name] = folder / PRIVATE_NAME
        _write_new(private[name], dumps(document), overwrite)
    plan = Plan.model_validate({
        "session": new_session_id(), "batch_order_seed": config.train.seed, "ca_bundle": f"ca/{pki.CA_CERTIFICATE_NAME}",
        "parties": parties, "shape": shape, "run": config.resolved(), "base": out_dir,
    })
    text = dumps(plan.document())
    if validate_config(tomllib.loads(text)["run"]).resolved() != config.resolved():
        raise ConfigError("the run configuration does not survive TOML (a setting without a TOML form); the plan was not written")
    _write_new(plan_path, text, overwrite)
    if with_data:
        written_plan = load_plan(plan_path)
        for name, path in private.items():
            party = load_private(path, name)
            if party.data is not None:
                export_party_data(written_plan, party, dataset=dataset, overwrite=overwrite)
    return LoopbackFiles(plan=plan_path, private=private, attack=setup)


def export_party_data(plan: Plan, private: PrivateParty, *, dataset: VFLDataset | None = None, overwrite: bool = False) -> Path:
    """Cut party ``private.party``'s own block from the plan's data set into its private data path.

    The data set is the plan's ``run.data`` (or ``dataset``), prepared as the in-process run
    prepares it (an attack's changes to the attacker's columns, its evaluation splits), and must
    have the plan's shape.
    """
    if private.data is None:
        raise ConfigError(f"{private.party}'s party file names no data path (a coordinator holds no data)")
    dataset = dataset if dataset is not None else load_dataset(plan.run.data)
    blocks = partition_columns(dataset, plan.run.parties)
    actual = {"n_train": len(dataset.y_train), "n_test": len(dataset.y_test), "num_classes": dataset.num_classes, "block_widths": [len(b) for b in blocks]}
    if actual != plan.shape.model_dump():
        raise ConfigError(f"the data set has shape {actual}, the plan agrees on {plan.shape.model_dump()}")
    setup = prepare_run_attack(plan.run, dataset, blocks)
    data = setup.dataset if setup.dataset is not None else dataset
    shape = plan.run_shape()
    cut = cut_party_data(data, blocks, shape.passive_names, private.party, setup.plan.eval_splits)
    path = private.resolve(private.data.path)
    save_party_data(path, cut, overwrite=overwrite)
    return path


def write_identity_key(path: Path, identity: Identity, *, passphrase: bytes | None = None, overwrite: bool = False) -> None:
    """Write ``identity``'s private key as PEM PKCS#8 (encrypted with ``passphrase`` if given), mode 0600 from creation on."""
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    key = Ed25519PrivateKey.from_private_bytes(identity.private_bytes())
    encryption = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
    data = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # under any umask
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)


def _write_new(path: Path, text: str, overwrite: bool) -> None:
    """Write a file, never replacing one silently."""
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
