"""A tiny V2 Depth Anything config shared by tests that need a real, fast network."""

from dajax.models import ModelConfig

TINY_V2 = ModelConfig(
    encoder="custom",
    version="v2",
    dim=128,
    depth=4,
    heads=2,
    layers=(0, 1, 2, 3),
    features=32,
    out_channels=(16, 32, 64, 64),
    pretrain_grid=7,
)
