"""One entry point from a ``[data]`` configuration section to a ready :class:`VFLDataset`.

The order of steps is fixed here for every data set: load (and split, when there is no official
split), apply the sample limits, then standardise tabular features with statistics of the limited
training rows. Images are never standardised: their features are already in [0, 1] and backdoor
triggers are defined in that pixel scale.
"""

from __future__ import annotations

from securevfl.data.builtin import load_breast_cancer, load_digits, make_synthetic
from securevfl.data.config import DataConfig
from securevfl.data.dataset import VFLDataset
from securevfl.data.mnist import load_mnist
from securevfl.data.nuswide import load_nuswide, load_nuswide_fate
from securevfl.data.preprocess import limit_samples, standardize

__all__ = ["load_dataset"]


def load_dataset(cfg: DataConfig) -> VFLDataset:
    """Load, subsample and (for tabular data) standardise the data set that ``cfg`` names."""
    dataset = _load_raw(cfg)
    dataset = limit_samples(dataset, cfg.train_limit, cfg.test_limit, cfg.split_seed)
    if cfg.standardize and dataset.image_shape is None:
        dataset = standardize(dataset)
    return dataset


def _load_raw(cfg: DataConfig) -> VFLDataset:
    if cfg.name == "digits":
        return load_digits(cfg.test_fraction, cfg.split_seed)
    if cfg.name == "breast_cancer":
        return load_breast_cancer(cfg.test_fraction, cfg.split_seed)
    if cfg.name == "synthetic":
        return make_synthetic(cfg.synthetic, cfg.test_fraction, cfg.split_seed)
    # The remaining data sets are read from files; DataConfig guarantees dir is set for them.
    assert cfg.dir is not None
    if cfg.name == "mnist":
        return load_mnist(cfg.dir)
    if cfg.name == "nuswide":
        return load_nuswide(cfg.dir, cfg.nuswide_labels)
    return load_nuswide_fate(cfg.dir, cfg.test_fraction, cfg.split_seed)
