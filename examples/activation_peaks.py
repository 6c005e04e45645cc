"""The largest |activation| every epoch of a plaintext run: how much room ``protection.activation_bound`` needs.

The label-private schemes refuse (stop the run as ``out_of_range``) an activation above their public bound
(``protection.activation_bound``, default 64). This trains the configuration in plaintext and prints, per epoch,
main accuracy and the largest |value| any passive's bottom model produced (training and evaluation batches), so a
study can state whether its setting fits the bound before it spends hours under CKKS.

    SECUREVFL_DATA_DIR=/work/shared/data python examples/activation_peaks.py --config examples/mnist_plain_sum.toml \
        --set data.train_limit=6000 --set data.test_limit=1000 --set train.lr=0.05 --set train.epochs=39 \
        --set 'defense=[{kind="label_dp", on="gradient", noise_multiplier=4.0}]'

It hooks each bottom model as the federation builds it (it wraps ``securevfl.federation.bottom_model``); the run
itself is the configured one, forced to plaintext.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import securevfl.federation as federation
from securevfl.config import load_config
from securevfl.training import EpochRecord, run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    config = load_config(args.config, [*args.overrides, 'protection.scheme="plain"', "train.progress=false"])
    peak = {"epoch": 0.0, "run": 0.0}
    build = federation.bottom_model

    def hooked(*build_args: Any, **build_kwargs: Any) -> Any:
        model, optimizer = build(*build_args, **build_kwargs)

        def record(_module: Any, _inputs: Any, output: Any) -> None:
            peak["epoch"] = max(peak["epoch"], float(output.detach().abs().max()))

        model.register_forward_hook(record)
        return model, optimizer

    federation.bottom_model = hooked  # type: ignore[assignment]

    def report(record: EpochRecord) -> None:
        peak["run"] = max(peak["run"], peak["epoch"])
        print(f"epoch {record.epoch:>3}  main accuracy {100 * record.main_accuracy:5.1f} %  max |H| {peak['epoch']:8.1f}", flush=True)
        peak["epoch"] = 0.0

    run_training(config, on_epoch_end=[report])
    print(f"largest |H| over the run: {peak['run']:.1f} (bound: protection.activation_bound = {config.protection.activation_bound})")


if __name__ == "__main__":
    main()
