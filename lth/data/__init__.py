"""Data: what a run trains and tests on.

    datasets   the dataset registry; each dataset held in memory as uint8 tensors
    loader     DeviceLoader: a split held whole on the device, shuffled and augmented there
    augment    fastai's aug_transforms() defaults, batched on the device
    cache      decoded-image caches keyed by a fingerprint of the source files
"""
