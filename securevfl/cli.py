"""Command line: ``securevfl train --config FILE.toml [--set KEY=VALUE ...] [--out DIR] [--resume | --overwrite]``
``securevfl bench [--out DIR] [--quick]``, ``securevfl study --config STUDY.toml [--out DIR] [--workers N]`` and
``securevfl pki init|issue|show`` (certificates for mutual TLS between parties, see docs/deployment.md),
``securevfl plan loopback|export-data`` (a plan and each party's files) and
``securevfl party --plan PLAN.toml --party NAME --private PARTY.toml`` (one party of a planned run).

User errors (bad config, missing data, impossible partition) print one ``error:`` line and
exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from securevfl.version import __version__
from securevfl.errors import SecureVFLError

if TYPE_CHECKING:
    from securevfl.pki import WrittenFiles

EXIT_USER_ERROR = 2
#: ``securevfl party`` stopped because a peer failed, went away or sent what it must refuse.
EXIT_PEER_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="securevfl",
        description="Vertical federated learning with optionally CKKS-encrypted messages.",
    )
    parser.add_argument("--version", action="version", version=f"securevfl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a vertical federation from a TOML config")
    train.add_argument("--config", type=Path, help="TOML config (defaults apply to anything omitted)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=2 --set data.dir=PATH/TO/mnist",
    )
    train.add_argument("--out", type=Path, default=Path("runs/latest"), help="output directory (default runs/latest)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    train.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out (refused without it or --resume)"
    )
    train.add_argument("--quiet", action="store_true", help="print only the final summary")

    bench = commands.add_parser(
        "bench",
        help="measure the overhead of every protection scheme: time, bytes, memory, vs plaintext and Paillier",
    )
    bench.add_argument("--out", type=Path, default=Path("runs/bench"), help="output directory (default runs/bench)")
    bench.add_argument(
        "--quick", action="store_true", help="a few steps per scheme, default presets only (under a minute); all extrapolated"
    )
    bench.add_argument("--top", choices=("sum", "trainable"), default="sum", help="sum: 64x10 messages (default); trainable: 64x32")
    bench.add_argument(
        "--data-dir", type=Path, help="train on real MNIST from this directory (default: random MNIST-shaped rows)"
    )
    bench.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCHEME[,SCHEME]",
        help="measure only these, e.g. --only plain,ckks/receiver/transport,paillier",
    )
    bench.add_argument(
        "--paillier-values", type=int, help="values per message Paillier encrypts for real (default 8 with --quick, else 64)"
    )
    study = commands.add_parser(
        "study",
        help="run a grid of trainings (attack x defense x scheme x seeds) and write a table and a report with plots",
    )
    study.add_argument("--config", type=Path, required=True, help="study TOML (see examples/studies/)")
    study.add_argument("--out", type=Path, help="output directory (default runs/study-<name>)")
    study.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    study.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a run config key in every run, e.g. --set data.dir=/data/mnist",
    )
    study.add_argument("--report-only", action="store_true", help="train nothing; rebuild the table and report from what is there")
    study.add_argument("--retry-failed", action="store_true", help="reset the runs that stopped with an error and train them again from epoch 1")
    study.add_argument("--quiet", action="store_true", help="no progress bar")
    study.add_argument(
        "--backend", choices=("local", "ray"), default="local",
        help="local: worker processes on this machine (default); ray: one Ray task per run (pip install 'securevfl[ray]')",
    )
    study.add_argument("--address", help="with --backend ray: the cluster to join (e.g. auto, HOST:6379); default: a local Ray instance of --workers CPUs")
    study.add_argument(
        "--reuse-from", type=Path, action="append", default=[], metavar="DIR",
        help="copy the finished runs of another study folder whose config is identical instead of training them (repeatable)",
    )
    _add_pki_parser(commands)
    _add_plan_parsers(commands)
    return parser


def _study_command(argv: list[str]) -> str:
    """The command a report names to regenerate it: this one without ``--report-only``/``--quiet``, and the
    data folder it read from the environment (``SECUREVFL_DATA_DIR``), without which it would not run."""
    command = shlex.join(["securevfl", *(arg for arg in argv if arg not in ("--report-only", "--quiet"))])
    data_dir = os.environ.get("SECUREVFL_DATA_DIR")
    return f"SECUREVFL_DATA_DIR={shlex.quote(data_dir)} {command}" if data_dir else command


def _add_plan_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``securevfl plan`` (write a plan, export a party's data) and ``securevfl party`` (run one party)."""
    plan = commands.add_parser("plan", help="write a plan for one process per party, or export a party's own data block")
    actions = plan.add_subparsers(dest="plan_command", required=True)
    loopback = actions.add_parser(
        "loopback", help="from a config: plan.toml for every party on 127.0.0.1, keys, certificates and each party's data block"
    )
    loopback.add_argument("--config", type=Path, help="TOML config (defaults apply to anything omitted)")
    loopback.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    loopback.add_argument("--out", type=Path, required=True, help="directory for plan.toml, ca/ and one folder per party")
    loopback.add_argument("--base-port", type=int, default=50_051, help="port of the first party; the others follow (default 50051)")
    loopback.add_argument("--no-data", action="store_true", help="do not export the parties' data blocks")
    loopback.add_argument("--overwrite", action="store_true", help="replace a plan and party files already in --out")
    export = actions.add_parser("export-data", help="cut one party's own block from the plan's data set into its party file's data path")
    export.add_argument("--plan", type=Path, required=True, help="the plan (plan.toml)")
    export.add_argument("--party", required=True, help="the party whose block to write")
    export.add_argument("--private", type=Path, required=True, help="that party's private file (its data path)")
    export.add_argument("--overwrite", action="store_true", help="replace the data file if it exists")

    party = commands.add_parser("party", help="run one party of a planned run with only its own data and keys")
    party.add_argument("--plan", type=Path, required=True, help="the plan every party holds (plan.toml)")
    party.add_argument("--party", required=True, help="which party of the plan this process is")
    party.add_argument("--private", type=Path, required=True, help="this party's private file (data, keys, passphrase source)")
    party.add_argument("--out", type=Path, help="directory for this party's result (default runs/party-NAME)")
    party.add_argument("--overwrite", action="store_true", help="replace this party's result and checkpoints in --out")
    party.add_argument(
        "--resume", action="store_true",
        help="continue after the latest epoch every party has a checkpoint of (every party must be started with --resume)",
    )


def _add_pki_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``securevfl pki``: a development CA and party certificates for mutual TLS (docs/deployment.md)."""
    pki = commands.add_parser("pki", help="create a development CA and party certificates for mutual TLS between parties")
    actions = pki.add_subparsers(dest="pki_command", required=True)

    init = actions.add_parser("init", help="create a development CA: ca.crt (give to every party) and ca.key (keep secret)")
    init.add_argument("--out", type=Path, required=True, help="directory for ca.crt and ca.key")
    init.add_argument("--days", type=int, help="validity in days (default 365)")
    _add_passphrase_options(init, "", "encrypt ca.key with the passphrase in")
    init.add_argument("--overwrite", action="store_true", help="replace ca.crt and ca.key in --out (refused without it)")

    issue = actions.add_parser("issue", help="issue a party certificate signed by the CA; prints the fingerprint for the plan")
    issue.add_argument("--ca", type=Path, required=True, help="directory holding ca.crt and ca.key (from pki init)")
    issue.add_argument("--party", required=True, help="party name, as the plan names it (e.g. active, passive_1, coordinator)")
    issue.add_argument("--out", type=Path, required=True, help="directory for PARTY.crt and PARTY.key")
    issue.add_argument(
        "--dns", nargs="+", action="extend", default=[], metavar="NAME",
        help="DNS names peers dial this party by (default, when neither --dns nor --ip is given: localhost and 127.0.0.1)",
    )
    issue.add_argument("--ip", nargs="+", action="extend", default=[], metavar="ADDRESS", help="IP addresses peers dial this party at")
    issue.add_argument("--days", type=int, help="validity in days (default 365, or until the CA expires if sooner)")
    _add_passphrase_options(issue, "ca-", "unlock ca.key with the passphrase in")
    _add_passphrase_options(issue, "", "encrypt PARTY.key with the passphrase in")
    issue.add_argument("--overwrite", action="store_true", help="replace PARTY.crt and PARTY.key in --out (refused without it)")

    identity = actions.add_parser(
        "identity", help="create a party's Ed25519 identity key (signs every frame); prints its fingerprint and public key for the plan"
    )
    identity.add_argument("--party", required=True, help="party name, as the plan names it")
    identity.add_argument("--out", type=Path, required=True, help="directory for identity.pem (mode 0600)")
    _add_passphrase_options(identity, "", "encrypt identity.pem with the passphrase in")
    identity.add_argument("--overwrite", action="store_true", help="replace identity.pem in --out (refused without it)")

    show = actions.add_parser("show", help="print a certificate's subject, SAN, usages, validity and fingerprint")
    show.add_argument("file", type=Path, help="PEM certificate file (every certificate in it is shown)")


def _add_passphrase_options(parser: argparse.ArgumentParser, prefix: str, purpose: str) -> None:
    """A passphrase comes from an environment variable or a file: never argv, which ``ps`` shows every user."""
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(f"--{prefix}passphrase-env", metavar="VAR", help=f"{purpose} environment variable VAR")
    choice.add_argument(f"--{prefix}passphrase-file", type=Path, metavar="FILE", help=f"{purpose} FILE (one trailing newline ignored)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "bench":
            return _bench(args, list(sys.argv[1:] if argv is None else argv))
        if args.command == "study":
            return _study(args, list(sys.argv[1:] if argv is None else argv))
        if args.command == "pki":
            return _pki(args)
        if args.command == "plan":
            return _plan(args)
        if args.command == "party":
            return _party(args)
    except SecureVFLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"\ninterrupted; {_how_to_resume(args, list(sys.argv[1:] if argv is None else argv))}", file=sys.stderr)
        return 130
    return EXIT_USER_ERROR


def _how_to_resume(args: argparse.Namespace, argv: list[str]) -> str:
    """The exact command that continues what was interrupted."""
    if args.command == "train":
        again = [arg for arg in argv if arg != "--overwrite"]
        if "--resume" not in again:
            again.append("--resume")
        return f"continue from the last finished epoch with: {shlex.join(['securevfl', *again])}"
    if args.command == "study":
        return f"finished runs are kept; continue with the same command: {shlex.join(['securevfl', *argv])}"
    if args.command == "party":
        again = [arg for arg in argv if arg != "--overwrite"] + ([] if "--resume" in argv else ["--resume"])
        return f"continue after the last epoch every party checkpointed: start every party with --resume, this one with: {shlex.join(['securevfl', *again])}"
    return "nothing was kept; run the command again"


def _train(args: argparse.Namespace) -> int:
    # Imported here so `securevfl --help` stays instant (torch takes a second to import).
    from securevfl.config import load_config
    from securevfl.training import RESULT_NAME, EpochRecord, refuse_unsupported_grpc, run_training

    config = load_config(args.config, args.overrides)
    refuse_unsupported_grpc(config)
    if not args.quiet:
        parties = config.parties
        print(
            f"securevfl {__version__}: {config.data.name}, {parties.passive} passive part"
            f"{'y' if parties.passive == 1 else 'ies'}{' + active block' if parties.active_block else ''}, "
            f"top={config.model.top}, scheme={config.protection.scheme}, seed={config.train.seed}"
        )

    def report(record: EpochRecord) -> None:
        if not args.quiet:
            tqdm.write(
                f"epoch {record.epoch:>3}/{config.train.epochs}  loss {record.loss:.4f}  "
                f"test accuracy {record.main_accuracy:.2%}  ({record.seconds:.1f} s)"
            )

    result = run_training(config, out_dir=args.out, resume=args.resume, on_epoch_end=[report], overwrite=args.overwrite)
    print(_summary(result))
    print(f"result: {args.out / RESULT_NAME}")
    return 0


def _bench(args: argparse.Namespace, argv: list[str]) -> int:
    # Imported here so `securevfl --help` stays instant.
    from securevfl.bench import BenchSettings, run_bench, write_outputs
    from securevfl.bench.report import render_markdown

    settings = BenchSettings(
        quick=args.quick,
        top=args.top,
        data_dir=args.data_dir,
        only=tuple(key.strip() for item in args.only for key in item.split(",") if key.strip()),
        paillier_values=args.paillier_values,
        command=shlex.join(["securevfl", *argv]),
    )
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = run_bench(settings, log=log)
    paths = write_outputs(report, args.out, log=log)
    print(render_markdown(report))
    print("wrote " + ", ".join(str(path) for path in paths.values() if path is not None))
    return 0


def _study(args: argparse.Namespace, argv: list[str]) -> int:
    # Imported here so `securevfl --help` stays instant.
    from securevfl.study import run_and_report

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    summary = run_and_report(
        args.config,
        out=args.out,
        workers=args.workers,
        overrides=args.overrides,
        train=not args.report_only,
        retry_failed=args.retry_failed,
        show_progress=not args.quiet,
        command=_study_command(argv),
        log=log,
        backend=args.backend,
        address=args.address,
        reuse_from=args.reuse_from,
    )
    print(summary)
    return summary.exit_code


def _pki(args: argparse.Namespace) -> int:
    # Imported here so `securevfl --help` stays instant.
    from securevfl import pki

    if args.pki_command == "init":
        passphrase = pki.passphrase_from(environment_variable=args.passphrase_env, file=args.passphrase_file)
        ca = pki.create_ca(days=pki.DEFAULT_DAYS if args.days is None else args.days)
        written = pki.write_ca(ca, args.out, passphrase=passphrase, overwrite=args.overwrite)
        print(_written_lines(written, "give ca.crt to every party; ca.key signs party certificates"))
        return 0
    if args.pki_command == "issue":
        ca_passphrase = pki.passphrase_from(environment_variable=args.ca_passphrase_env, file=args.ca_passphrase_file)
        passphrase = pki.passphrase_from(environment_variable=args.passphrase_env, file=args.passphrase_file)
        chosen = bool(args.dns or args.ip)
        credentials = pki.issue_party_certificate(
            pki.load_ca(args.ca, passphrase=ca_passphrase),
            args.party,
            dns_names=args.dns if chosen else pki.DEFAULT_DNS_NAMES,
            ip_addresses=args.ip if chosen else pki.DEFAULT_IP_ADDRESSES,
            days=args.days,
        )
        written = pki.write_party_credentials(credentials, args.out, passphrase=passphrase, overwrite=args.overwrite)
        print(_written_lines(written, f"party {args.party}: pin this fingerprint in the plan"))
        return 0
    if args.pki_command == "identity":
        from securevfl.loopback import IDENTITY_NAME, write_identity_key
        from securevfl.protocols import Identity
        from securevfl.protocols.identity import fingerprint

        passphrase = pki.passphrase_from(environment_variable=args.passphrase_env, file=args.passphrase_file)
        key = Identity.generate(args.party)
        path = args.out / IDENTITY_NAME
        write_identity_key(path, key, passphrase=passphrase, overwrite=args.overwrite)
        print(f"wrote {path} ({'encrypted with the passphrase' if passphrase else 'NOT encrypted: keep it on this machine, mode 0600'})")
        print(f"party {args.party}: put these in its [[parties]] entry of the plan")
        print(f'identity_fingerprint = "{fingerprint(key.public_key)}"')
        print(f'identity_public_key = "{key.public_key.hex()}"')
        return 0
    shown = [pki.describe_certificate(certificate).lines() for certificate in pki.load_certificates(args.file)]
    print("\n\n".join("\n".join(lines) for lines in shown))
    return 0


def _plan(args: argparse.Namespace) -> int:
    # Imported here so `securevfl --help` stays instant.
    from securevfl.config import load_config
    from securevfl.loopback import export_party_data, write_loopback_plan
    from securevfl.plan import load_plan, load_private

    if args.plan_command == "loopback":
        files = write_loopback_plan(
            load_config(args.config, args.overrides), args.out, base_port=args.base_port, with_data=not args.no_data, overwrite=args.overwrite
        )
        print(f"wrote {files.plan}")
        for name, path in files.private.items():
            print(f"  {name}: securevfl party --plan {files.plan} --party {name} --private {path}")
        return 0
    plan = load_plan(args.plan)
    plan.party(args.party)
    path = export_party_data(plan, load_private(args.private, args.party), overwrite=args.overwrite)
    print(f"wrote {args.party}'s own data block to {path}")
    return 0


def _party(args: argparse.Namespace) -> int:
    # Imported here so `securevfl --help` stays instant.
    from securevfl.party_process import open_party, plan_channel, run_party_process
    from securevfl.protocols import ProtocolError

    session = open_party(args.plan, args.party, args.private)
    out = args.out if args.out is not None else Path("runs") / f"party-{args.party}"
    try:
        outcome = run_party_process(session, plan_channel, out, overwrite=args.overwrite, resume=args.resume, progress=_print_progress)
    except ProtocolError as exc:  # a peer gone, refusing or too slow: one line (the launcher reports the last line)
        print(f"error: {args.party}: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_PEER_FAILURE
    last = f"main accuracy {outcome.history[-1]['main_accuracy']:.2%}; " if outcome.history else ""
    since = f" since the resume after epoch {outcome.traffic_from_epoch}" if outcome.traffic_from_epoch else ""
    print(f"{args.party}: {last}sent {_human_bytes(sum(outcome.bytes_sent.values()))}{since}; result in {out}")
    return 0


def _print_progress(line: str) -> None:
    """A party's progress line (the attempt it joined; the active party's epochs, which a launcher echoes from its log)."""
    print(line, flush=True)


def _written_lines(written: WrittenFiles, note: str) -> str:
    protection = "encrypted with the passphrase" if written.encrypted else "NOT encrypted: keep it on this machine, mode 0600"
    return (
        f"wrote {written.certificate} and {written.private_key} ({protection})\n"
        f"{note}\n"
        f"fingerprint: {written.fingerprint}"
    )


def _summary(result: dict[str, object]) -> str:
    sent = result["bytes_sent"]
    assert isinstance(sent, dict)
    per_kind = ", ".join(f"{kind} {_human_bytes(n)}" for kind, n in sent.items())
    timing = result["timing"]
    assert isinstance(timing, dict)
    partial = result.get("traffic_counted_from_epoch") or {}
    assert isinstance(partial, dict)
    missing = "".join(f"; {party}'s frames counted only after epoch {epoch}" for party, epoch in partial.items())
    return (
        f"main accuracy {result['main_accuracy']:.2%} after {result['epochs_completed']} epoch(s); "
        f"{timing['mean_epoch_seconds']:.1f} s/epoch; sent {_human_bytes(sum(sent.values()))} ({per_kind}{missing})"
    )


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def run() -> None:
    """The console entry point: :func:`main` as a process.

    A party process that stopped because a peer failed may still have gRPC threads blocked on that
    peer (an ABORT to a hung process, a call waiting out its deadline); the interpreter's teardown
    would then end in a C++ ``std::terminate`` line after the party's own error line. Its files are
    written atomically before it returns, so it ends at once instead, with its exit code.
    """
    argv = sys.argv[1:]
    try:
        code = main(argv)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`securevfl study ... | head -1`): its choice, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        code = 0
    if argv[:1] == ["party"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
