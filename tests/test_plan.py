"""The plan and a party's private file: a loopback plan runs every party from its own files (one thread
each) to the in-process history; every wrong plan, file, key or data block is refused in one line."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from helpers import config, random_dataset
from securevfl.cli import main
from securevfl.errors import ConfigError
from securevfl.loopback import write_identity_key, write_loopback_plan
from securevfl.party_process import PARTY_RESULT_NAME, PartySession, open_party, run_party_process
from securevfl.plan import load_plan
from securevfl.protocols import Identity
from securevfl.protocols.threaded_channel import ThreadedNetwork
from securevfl.training import run_training

DATA = random_dataset(32, 10, 6, 3, seed=1)


def _config(**protection: object):  # type: ignore[no-untyped-def]
    return config(
        parties={"passive": 2, "split": "even"},
        model={"top": "sum", "bottom_hidden": [4]},
        train={"batch_size": 8, "epochs": 2, "seed": 2, "lr": 0.1, "progress": False, "checkpoint": False, "eval_batch_size": 8},
        protection={"scheme": "plain", **protection},
        defense=[{"kind": "gaussian_noise", "variance": 1e-3, "on": "gradient", "placement": "pre_encryption"}],
    )


@pytest.fixture
def loopback(tmp_path: Path):  # type: ignore[no-untyped-def]
    return write_loopback_plan(_config(), tmp_path / "run", dataset=DATA)


def _run_from_files(files, out: Path, errors: dict[str, BaseException] | None = None, receive_timeout: float = 120) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Run every party of the plan in its own thread; each party's error goes into ``errors`` (None: there must be none)."""
    sessions = {name: open_party(files.plan, name, path) for name, path in files.private.items()}
    plan = next(iter(sessions.values())).plan
    network, roster = ThreadedNetwork(session=plan.session), plan.roster()
    expect_errors = errors is not None
    outcomes, errors = {}, ({} if errors is None else errors)

    def party(session: PartySession) -> None:
        try:
            factory = lambda s: network.endpoint(s.identity, roster, receive_timeout=receive_timeout)  # noqa: E731
            outcomes[session.name] = run_party_process(session, factory, out / session.name)
        except BaseException as exc:  # reported below
            errors[session.name] = exc

    threads = [threading.Thread(target=party, args=(session,)) for session in sessions.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert expect_errors or errors == {}
    return outcomes


def test_every_party_runs_from_its_own_files_to_the_in_process_history(loopback, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reference = run_training(_config(), dataset=DATA)
    _run_from_files(loopback, tmp_path / "out")
    result = json.loads((tmp_path / "out" / "active" / "result.json").read_text())
    assert result["history"] == reference["history"] and result["history"][0]["loss"] != result["history"][1]["loss"]
    assert result["config"] == reference["config"] and result["session"] == load_plan(loopback.plan).session
    for name in ("passive_1", "passive_2"):
        own = json.loads((tmp_path / "out" / name / PARTY_RESULT_NAME).read_text())
        assert own["party"] == name and own["messages_sent"]["activation"] == 2 * 4 and own["history"] == []
    # each party's folder holds its own key and data only; the plan holds no secret
    plan_text = loopback.plan.read_text()
    assert "PRIVATE KEY" not in plan_text and "passphrase" not in plan_text
    assert sorted(path.name for path in (loopback.plan.parent / "passive_1").iterdir()) == [
        "data.npz", "identity.pem", "party.toml", "passive_1.crt", "passive_1.key",
    ]
    assert (loopback.plan.parent / "passive_1" / "identity.pem").stat().st_mode & 0o777 == 0o600


def test_a_result_is_never_overwritten_silently(loopback, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"plan.toml already exists; pass --overwrite"):
        write_loopback_plan(_config(), loopback.plan.parent, dataset=DATA)
    out = tmp_path / "out" / "passive_1"
    out.mkdir(parents=True)
    (out / PARTY_RESULT_NAME).write_text("{}")
    session = open_party(loopback.plan, "passive_1", loopback.private["passive_1"])
    with pytest.raises(ConfigError, match="party_result.json already exists; use --overwrite"):
        run_party_process(session, lambda s: None, out)  # type: ignore[arg-type,return-value]
    assert (out / PARTY_RESULT_NAME).read_text() == "{}"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _one_line(excinfo: pytest.ExceptionInfo) -> str:  # type: ignore[type-arg]
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_an_unknown_party_or_another_partys_file_is_refused(loopback) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as unknown:
        open_party(loopback.plan, "mallory", loopback.private["passive_1"])
    assert _one_line(unknown) == "the plan has no party 'mallory' (parties: passive_1, passive_2, active)"
    with pytest.raises(ConfigError) as other:
        open_party(loopback.plan, "passive_2", loopback.private["passive_1"])
    assert _one_line(other).endswith("passive_1/party.toml is the private file of party 'passive_1', not of 'passive_2'")


def test_an_identity_key_other_than_the_pinned_one_is_refused(loopback) -> None:  # type: ignore[no-untyped-def]
    folder = loopback.plan.parent
    shutil.copy(folder / "passive_2" / "identity.pem", folder / "passive_1" / "identity.pem")
    with pytest.raises(ConfigError) as excinfo:
        open_party(loopback.plan, "passive_1", loopback.private["passive_1"])
    assert "the identity key of passive_1 has fingerprint" in _one_line(excinfo) and "the plan pins" in str(excinfo.value)


def test_a_tls_certificate_other_than_the_pinned_one_is_refused(loopback) -> None:  # type: ignore[no-untyped-def]
    plan = load_plan(loopback.plan)
    _edit(loopback.plan, plan.party("active").tls_fingerprint, "0" * 64)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as excinfo:
        open_party(loopback.plan, "active", loopback.private["active"])
    assert f"the plan pins {'0' * 64}" in _one_line(excinfo)


def test_a_pinned_peer_certificate_must_be_the_one_the_plan_pins(loopback) -> None:  # type: ignore[no-untyped-def]
    """The plan's tls_certificate is what a party trusts, alone, when it dials that peer: it is checked before any connection."""
    from securevfl.grpc_transport import open_grpc_channel
    from securevfl.plan import load_private, load_identity

    plan = load_plan(loopback.plan)
    assert str(plan.party("active").tls_certificate) == "active/active.crt"  # a loopback plan pins every certificate
    _edit(loopback.plan, 'tls_certificate = "active/active.crt"', 'tls_certificate = "passive_2/passive_2.crt"')
    private = load_private(loopback.private["passive_1"], "passive_1")
    with pytest.raises(ConfigError) as excinfo:
        open_grpc_channel(load_plan(loopback.plan), private, load_identity(load_plan(loopback.plan), private))
    assert _one_line(excinfo).startswith("the plan's tls_certificate of active: ") and "active" in str(excinfo.value)
    _edit(loopback.plan, 'tls_certificate = "passive_2/passive_2.crt"', 'tls_certificate = "active/missing.crt"')
    with pytest.raises(ConfigError) as missing:
        open_grpc_channel(load_plan(loopback.plan), private, load_identity(load_plan(loopback.plan), private))
    assert "missing.crt does not exist" in _one_line(missing)
    # a fingerprint without the certificate would pin only the serving side: refused, saying what to add
    _edit(loopback.plan, 'tls_certificate = "active/missing.crt"\n', "")
    with pytest.raises(ConfigError) as half:
        open_grpc_channel(load_plan(loopback.plan), private, load_identity(load_plan(loopback.plan), private))
    assert re.match(r"the plan pins (active|passive_2)'s TLS fingerprint but gives no tls_certificate: a party dialling", _one_line(half))


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ('address = "127.0.0.1:50052"', 'address = "127.0.0.1:50051"', "two parties have the address '127.0.0.1:50051'"),
        ('address = "127.0.0.1:50052"', 'address = "127.0.0.1"', "is not host:port"),
        ("batch_order_seed = 2", "batch_order_seed = 3", "batch_order_seed = 3 but run.train.seed = 2"),
        ('role = "active"', 'role = "coordinator"', "party 'active' has role 'coordinator' in the plan, but is the active party"),
        ('name = "passive_2"', 'name = "passive_9"', "are not those of its run configuration"),
        ("format = 1", "format = 2", "format"),
        ("[shape]", "[shape]\nsecret = 1", "unknown key 'shape.secret'"),
    ],
)
def test_a_wrong_plan_is_refused_in_one_line(loopback, old: str, new: str, error: str) -> None:  # type: ignore[no-untyped-def]
    _edit(loopback.plan, old, new)
    with pytest.raises(ConfigError) as excinfo:
        load_plan(loopback.plan)
    assert error in _one_line(excinfo)


def test_a_data_block_of_another_role_or_shape_is_refused(loopback) -> None:  # type: ignore[no-untyped-def]
    folder = loopback.plan.parent
    _edit(loopback.private["passive_1"], 'path = "data.npz"', 'path = "../active/data.npz"')
    with pytest.raises(ConfigError) as excinfo:
        open_party(loopback.plan, "passive_1", loopback.private["passive_1"])
    assert _one_line(excinfo).endswith("holds active party data, but passive_1 is a passive party")
    _edit(loopback.private["passive_1"], 'path = "../active/data.npz"', 'path = "../passive_2/data.npz"')
    _edit(loopback.plan, "block_widths = [3, 3]", "block_widths = [2, 4]")
    session = open_party(loopback.plan, "passive_1", loopback.private["passive_1"])
    with pytest.raises(ConfigError) as shape:
        run_party_process(session, lambda s: None, None)  # type: ignore[arg-type,return-value]
    assert _one_line(shape) == "passive_1: its train block has shape (32, 3), the plan says (32, 2)"
    (folder / "passive_1" / "bad.npz").write_bytes(b"not a zip")
    _edit(loopback.private["passive_1"], 'path = "../passive_2/data.npz"', 'path = "bad.npz"')
    with pytest.raises(ConfigError, match="bad.npz is not a party data file"):
        open_party(loopback.plan, "passive_1", loopback.private["passive_1"])


def test_a_passphrase_comes_from_the_environment_never_from_the_file(loopback, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    folder = loopback.plan.parent / "passive_1"
    plan = load_plan(loopback.plan)
    identity = Identity.generate("passive_1")
    write_identity_key(folder / "identity.pem", identity, passphrase=b"correct horse", overwrite=True)
    _edit(loopback.plan, plan.party("passive_1").identity_fingerprint, identity.fingerprint)
    _edit(loopback.plan, plan.party("passive_1").identity_public_key, identity.public_key.hex())  # type: ignore[arg-type]
    private = loopback.private["passive_1"]
    text = private.read_text()
    private.write_text(text + '\npassphrase = "correct horse"\n')
    with pytest.raises(ConfigError, match="passphrase"):
        open_party(loopback.plan, "passive_1", private)
    private.write_text(text + '\n[passphrase]\nenv = "PARTY_PASSPHRASE"\n')
    with pytest.raises(ConfigError, match="environment variable PARTY_PASSPHRASE is not set"):
        open_party(loopback.plan, "passive_1", private)
    monkeypatch.setenv("PARTY_PASSPHRASE", "wrong")
    with pytest.raises(ConfigError, match="wrong passphrase"):
        open_party(loopback.plan, "passive_1", private)
    # the TLS key is not encrypted: one passphrase decrypts every key of the file, so it must be re-issued encrypted too
    monkeypatch.setenv("PARTY_PASSPHRASE", "correct horse")
    with pytest.raises(ConfigError, match="is not encrypted, but a passphrase was given"):
        open_party(loopback.plan, "passive_1", private)


def test_the_command_line_refuses_what_is_not_available_in_one_line(loopback, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    argv = ["party", "--plan", str(loopback.plan), "--party", "passive_1", "--private", str(loopback.private["passive_1"]), "--out", str(tmp_path / "p")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "error: transport.kind = 'inprocess' runs every party in one process (securevfl train); "
        "one process per party needs transport.kind = 'grpc' in the plan\n"
    )
    assert main(["train", "--set", "transport.kind=grpc", "--resume", "--out", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().err == f"error: --resume: {tmp_path / 't' / 'parties'} holds no plan of a gRPC run to continue\n"
    assert main([*argv[:4], "nobody", *argv[5:]]) == 2
    assert capsys.readouterr().err == "error: the plan has no party 'nobody' (parties: passive_1, passive_2, active)\n"
    assert not (tmp_path / "p").exists() and not (tmp_path / "t").exists()


def test_the_command_line_writes_a_loopback_plan_and_exports_a_partys_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan"
    assert main(["plan", "loopback", "--set", "train.epochs=1", "--set", "protection.scheme=ckks", "--set", "protection.key_holder=coordinator", "--out", str(out), "--no-data"]) == 0
    printed = capsys.readouterr().out
    assert f"coordinator: securevfl party --plan {out / 'plan.toml'} --party coordinator --private {out / 'coordinator' / 'party.toml'}" in printed
    assert not (out / "passive_1" / "data.npz").exists()
    plan = load_plan(out / "plan.toml")
    assert [party.role for party in plan.parties] == ["passive", "passive", "active", "coordinator"]
    args = ["plan", "export-data", "--plan", str(out / "plan.toml"), "--party", "passive_1", "--private", str(out / "passive_1" / "party.toml")]
    assert main(args) == 0 and (out / "passive_1" / "data.npz").is_file()
    assert main(args) == 2 and "data.npz already exists; pass --overwrite to replace it" in capsys.readouterr().err
    session = open_party(out / "plan.toml", "passive_1", out / "passive_1" / "party.toml")
    assert session.data is not None and session.data.x_train.shape == (plan.shape.n_train, plan.shape.block_widths[0])  # type: ignore[union-attr]


def _psi_plan(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A loopback plan with alignment = "psi" (the data blocks still hold every sample, in the same order)."""
    from securevfl import toml_text

    files = write_loopback_plan(_config(), tmp_path / "run", dataset=DATA)
    document = load_plan(files.plan).document()
    document["alignment"] = "psi"
    del document["shape"]["n_train"], document["shape"]["n_test"]
    files.plan.write_text(toml_text.dumps(document))
    return files


def test_a_party_that_fails_during_the_psi_tells_its_peers_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A passive whose PSI fails sends ABORT: its peers stop at once with its reason, not at their receive deadline."""
    import time

    from securevfl import party_alignment

    align_as_passive = party_alignment.align_as_passive

    def failing(channel, party, active, ids):  # type: ignore[no-untyped-def]
        if party == "passive_2":
            raise OSError("passive_2's id file became unreadable")
        return align_as_passive(channel, party, active, ids)

    monkeypatch.setattr(party_alignment, "align_as_passive", failing)
    errors: dict[str, BaseException] = {}
    started = time.monotonic()
    _run_from_files(_psi_plan(tmp_path), tmp_path / "out", errors=errors, receive_timeout=30)
    elapsed = time.monotonic() - started
    assert set(errors) == {"passive_1", "passive_2", "active"}
    assert str(errors["passive_2"]) == "passive_2's id file became unreadable"
    # the active party waited for passive_2's PSI request: it learns why at once (the deadline is 30 s)
    assert "passive_2 aborted (passive_2's id file became unreadable)" in str(errors["active"]) and "\n" not in str(errors["active"])
    assert elapsed < 20, f"the peers waited out their receive deadline ({elapsed:.0f} s)"


def test_psi_alignment_trains_on_the_samples_every_party_holds_in_the_agreed_order(tmp_path: Path) -> None:
    """alignment = "psi": each party's block holds its own samples in its own order; they train on the intersection."""
    import dataclasses

    import numpy as np

    from securevfl import toml_text
    from securevfl.alignment import order_tag
    from securevfl.party_alignment import ORDER_KEY_NAME
    from securevfl.party_data import load_party_data, save_party_data

    cfg = _config()
    files = write_loopback_plan(cfg, tmp_path / "run", dataset=DATA)
    document = load_plan(files.plan).document()
    document["alignment"] = "psi"
    del document["shape"]["n_train"], document["shape"]["n_test"]
    files.plan.write_text(toml_text.dumps(document))
    rng = np.random.default_rng(7)
    kept: dict[str, tuple[set[int], set[int]]] = {}
    for name, private in files.private.items():
        path = private.parent / "data.npz"
        data = load_party_data(path)
        train = rng.permutation(len(data.train_ids))[: len(data.train_ids) - 3]  # each party lacks 3 other samples, in its own order
        test = rng.permutation(len(data.test_ids))[: len(data.test_ids) - 2]
        rows = {"train_ids": data.train_ids[train], "test_ids": data.test_ids[test]}
        if hasattr(data, "y_train"):
            rows |= {"y_train": data.y_train[train], "y_test": data.y_test[test]}
        else:
            rows |= {"x_train": data.x_train[train], "x_test": data.x_test[test]}
        save_party_data(path, dataclasses.replace(data, **rows), overwrite=True)
        kept[name] = (set(rows["train_ids"].tolist()), set(rows["test_ids"].tolist()))
    _run_from_files(files, tmp_path / "out")
    result = json.loads((tmp_path / "out" / "active" / "result.json").read_text())
    # the independent computation: the intersection, sorted by the active party's secret order key
    key = (tmp_path / "out" / "active" / ORDER_KEY_NAME).read_bytes()
    order = [sorted(set.intersection(*(sets[i] for sets in kept.values())), key=lambda sample: order_tag(key, str(sample))) for i in (0, 1)]
    assert len(order[0]) < len(DATA.y_train) - 3 and len(order[1]) < len(DATA.y_test) - 2
    aligned = dataclasses.replace(
        DATA, x_train=DATA.x_train[order[0]], y_train=DATA.y_train[order[0]], x_test=DATA.x_test[order[1]], y_test=DATA.y_test[order[1]],
    )
    reference = run_training(cfg, dataset=aligned)
    assert result["history"] == reference["history"]
    assert result["messages_sent"]["psi_request"] == 2 * 2  # train and test ids, each passive


def test_parties_holding_different_copies_of_the_plan_stop_at_the_handshake(loopback, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Red-team pass on the transport (2026-11-27): the plan was neither signed nor bound into the handshake, so whoever
    assembled it could hand the key holder a copy with flooding and the decryption policy off while the other parties'
    copies said they were on; a 4-party CKKS run completed that way. Every HELLO now carries the plan's agreement digest,
    and a party whose peer's digest differs stops with one line naming the peer."""
    split = loopback.plan.with_name("plan_for_passive_2.toml")  # beside the plan: its relative paths stay valid
    split.write_text(loopback.plan.read_text().replace("flooding_bits = 30", "flooding_bits = 0", 1))
    plans = {name: (split if name == "passive_2" else loopback.plan) for name in loopback.private}
    sessions = {name: open_party(plans[name], name, path) for name, path in loopback.private.items()}
    assert sessions["passive_2"].plan.agreement() != sessions["active"].plan.agreement()
    network, roster = ThreadedNetwork(session=sessions["active"].plan.session), sessions["active"].plan.roster()
    errors: dict[str, BaseException] = {}

    def party(session: PartySession) -> None:
        try:
            run_party_process(session, lambda s: network.endpoint(s.identity, roster, receive_timeout=30), tmp_path / "out" / session.name)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors[session.name] = exc

    threads = [threading.Thread(target=party, args=(session,)) for session in sessions.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert set(errors) == set(sessions), errors  # nobody trained
    assert not (tmp_path / "out" / "active" / "result.json").exists()
    for name, error in errors.items():
        assert "runs another plan than" in str(error) and "\n" not in str(error), (name, error)
    assert "passive_2 runs another plan than active" in str(errors["active"])


def test_the_plans_agreement_ignores_where_a_party_keeps_its_files_and_nothing_else(loopback, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = load_plan(loopback.plan)
    # another party's copy in another folder: its paths (CA bundle, certificates, data dir) differ, its content does not
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(loopback.plan.parent, elsewhere)
    moved = elsewhere / "plan.toml"
    (elsewhere / "ca" / "ca.crt").rename(elsewhere / "the-ca.crt")
    _edit(moved, 'ca_bundle = "ca/ca.crt"', 'ca_bundle = "the-ca.crt"')
    _edit(moved, 'tls_certificate = "passive_1/passive_1.crt"', f'tls_certificate = "{elsewhere / "passive_1" / "passive_1.crt"}"')
    _edit(moved, 'name = "digits"', f'name = "digits"\ndir = "{tmp_path}"')
    assert load_plan(moved).agreement() == plan.agreement()
    # anything else changes it: a protection setting, a pinned fingerprint, the CA's bytes
    for old, new in (("decryption_policy = \"protocol\"", "decryption_policy = \"none\""), ("address = \"127.0.0.1:50051\"", "address = \"127.0.0.1:50061\"")):
        changed = tmp_path / f"changed{len(old)}.toml"
        changed.write_text(loopback.plan.read_text().replace(old, new, 1))
        shutil.copy(changed, loopback.plan.parent / changed.name)
        assert load_plan(loopback.plan.parent / changed.name).agreement() != plan.agreement(), new
    (elsewhere / "the-ca.crt").write_bytes((elsewhere / "the-ca.crt").read_bytes() + b"\n")
    assert load_plan(moved).agreement() != plan.agreement()


def test_the_coordinator_takes_the_aligned_counts_only_when_every_party_announces_the_same() -> None:
    """Red-team pass (2026-11-27): under alignment = "psi" the coordinator took the sample counts from the active party
    alone, and an active party that announced 10^7 raised the coordinator's evaluation budget from 8 to 78,128
    decryptions per step. Every party that aligned now announces the counts and a digest of the aligned id lists."""
    from securevfl.party_alignment import _alignment_digest, _counts_every_party_agrees_on
    from securevfl.protocols import InProcessChannel, Message, MessageKind, ProtocolError

    digest = _alignment_digest(["b", "a", "c"], ["z"])
    assert digest != _alignment_digest(["a", "b", "c"], ["z"])  # the order is part of it

    def announce(counts: dict[str, tuple[int, int, str]]) -> object:
        hub = InProcessChannel()
        for sender, (n_train, n_test, told) in counts.items():
            hub.endpoint(sender).send(Message(MessageKind.ALIGNMENT, sender, "coordinator", 0, np.zeros(0, dtype=np.float32),
                                              meta={"n_train": n_train, "n_test": n_test, "digest": told}))
        return _counts_every_party_agrees_on(hub.endpoint("coordinator"), "coordinator", list(counts))

    honest = {name: (3, 1, digest) for name in ("active", "passive_1", "passive_2")}
    aligned = announce(honest)
    assert (aligned.n_train, aligned.n_test, aligned.data) == (3, 1, None)  # type: ignore[attr-defined]
    with pytest.raises(ProtocolError, match=r"^coordinator: the parties do not agree on the aligned samples .*active 10000000 / 1 .*passive_1 3 / 1") as caught:
        announce({**honest, "active": (10**7, 1, digest)})
    assert "\n" not in str(caught.value)
    with pytest.raises(ProtocolError, match="do not agree"):
        announce({**honest, "passive_2": (3, 1, _alignment_digest(["a"], ["z"]))})


def test_psi_alignment_with_a_coordinator_tells_it_the_counts_every_party_agrees_on(tmp_path: Path) -> None:
    """The coordinator holds no samples: after the PSI every party announces the counts and the digest, and the run
    trains (ckks/coordinator) on the intersection, as the plain run above does."""
    from securevfl import toml_text

    cfg = _config(scheme="ckks", key_holder="coordinator", preset="compute")
    files = write_loopback_plan(cfg, tmp_path / "run", dataset=DATA)
    document = load_plan(files.plan).document()
    document["alignment"] = "psi"
    del document["shape"]["n_train"], document["shape"]["n_test"]
    files.plan.write_text(toml_text.dumps(document))
    _run_from_files(files, tmp_path / "out")
    result = json.loads((tmp_path / "out" / "active" / "result.json").read_text())
    coordinator = json.loads((tmp_path / "out" / "coordinator" / PARTY_RESULT_NAME).read_text())
    assert len(result["history"]) == 2 and coordinator["messages_sent"].get("alignment", 0) == 0
    for name in ("passive_1", "passive_2"):
        own = json.loads((tmp_path / "out" / name / PARTY_RESULT_NAME).read_text())
        assert own["messages_sent"]["alignment"] == 1  # its announcement to the coordinator
