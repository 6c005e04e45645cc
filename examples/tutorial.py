"""securevfl tutorial: from your own arrays to an encrypted run with your own bottom models.

Run it from the repository root (about 10 seconds on two cores):

    .venv/bin/python examples/tutorial.py

Each step prints what it did. The guide is docs/api.md; the reference is built with
``python -m pdoc securevfl securevfl.api securevfl.data securevfl.config securevfl.errors -o site/api``.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer
from torch import nn

import securevfl


def main() -> None:
    # --- 1. Your own data ----------------------------------------------------------------------
    # Any float64/int/bool matrix and any label values will do. Here: the Wisconsin breast cancer
    # table as plain numpy arrays, with text labels, as a hospital's export might look. Each
    # cell-nucleus measurement appears three times (mean, standard error, worst value); we
    # pretend three organisations measured one family each.
    bunch = load_breast_cancer()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target_names)[bunch.target]  # "malignant" / "benign"
    names = [str(n) for n in bunch.feature_names]

    # The assignment says which party holds which column. Passive parties ("clinic", "lab")
    # only hold features; the key "active" gives columns to the active party, which also holds
    # the labels and the top model. Every column must belong to exactly one party.
    parties = {
        "clinic": [n for n in names if n.startswith("mean ")],
        "lab": [n for n in names if n.endswith(" error")],
        "active": [n for n in names if n.startswith("worst ")],
    }
    # The builder converts the features to float32, maps the labels to classes 0..C-1 (sorted:
    # benign = 0, malignant = 1), holds out a stratified 20 % test split and standardises every
    # column with the training rows' statistics.
    data = securevfl.dataset_from_arrays(x, y, feature_names=names, parties=parties,
                                         test_fraction=0.2, split_seed=0)
    print(f"1. data: {data.dataset.n_train} train / {data.dataset.n_test} test rows, "
          f"classes {data.class_names}, blocks {data.party_names}")

    # --- 2. A plaintext run ----------------------------------------------------------------------
    # The configuration is a dict shaped like the TOML files of the command line; keys left out
    # keep their defaults (docs/configuration.md lists them all).
    config = {"train": {"epochs": 3, "lr": 0.05, "batch_size": 32, "progress": False}}
    plain = securevfl.train(data, config)
    print(f"2. plain: accuracy {plain.main_accuracy:.3f}, {plain.total_bytes / 1e3:.0f} kB sent")

    # --- 3. The same under CKKS ----------------------------------------------------------------
    # key_holder = "receiver": every party has its own key pair and each activation and gradient
    # travels encrypted under the key of the party that receives it. The model learns the same
    # thing (CKKS is approximate to about 1e-6 here); the cost is bytes and time.
    ckks_config = {**config, "protection": {"scheme": "ckks", "key_holder": "receiver"}}
    ckks = securevfl.train(data, ckks_config)
    # (Per-epoch seconds compare fairly; the first run of a process also pays torch's start-up.)
    print(f"3. ckks:  accuracy {ckks.main_accuracy:.3f}, {ckks.total_bytes / 1e6:.1f} MB sent, "
          f"{ckks.timing.mean_epoch_seconds:.2f} s per epoch "
          f"(plain: {plain.timing.mean_epoch_seconds:.2f} s)")

    # --- 4. Your own bottom model ------------------------------------------------------------------
    # Under the plain and receiver schemes any torch.nn.Module can be a party's bottom model. One
    # per feature block, in the order of data.party_names; bottom_model_shapes says how many
    # columns each receives and how many outputs the top expects (with the default "sum" top,
    # one per class).
    shapes = securevfl.bottom_model_shapes(data, ckks_config)
    models = [
        nn.Sequential(nn.Linear(n_in, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Dropout(0.1),
                      nn.Linear(16, n_out))
        for n_in, n_out in shapes
    ]
    custom = securevfl.train(data, ckks_config, bottom_models=models)  # trained in place
    print(f"4. custom bottoms {shapes}: accuracy {custom.main_accuracy:.3f}")

    # The label-private schemes (key_holder "active" or "coordinator") backpropagate through the
    # bottom model under encryption, which only Linear and ReLU layers allow. Other layers are
    # refused before any training, with the layer named:
    try:
        securevfl.train(data, {**config, "protection": {"scheme": "ckks", "key_holder": "active"}},
                        bottom_models=models)
    except securevfl.ConfigError as exc:
        print(f"   refused as expected: {exc}")

    # --- 5. Reading the result -------------------------------------------------------------------
    # TrainingResult is typed: history entries, bytes per message kind, timings by category.
    # result.to_dict() is the full record of result.json (train(..., out_dir=...) writes it).
    print("5. history of the custom run:")
    for epoch in custom.history:
        print(f"   epoch {epoch.epoch}: loss {epoch.loss:.4f}, accuracy {epoch.main_accuracy:.3f}")
    print(f"   bytes by kind: {dict(custom.bytes_sent)}")
    costly = sorted(custom.timing.by_category.items(), key=lambda item: -item[1])[:3]
    print(f"   most time: {', '.join(f'{k} {v:.2f} s' for k, v in costly)}")
    print(f"   who held which plaintext: {sorted(custom.to_dict()['visibility'])}")


if __name__ == "__main__":
    main()
