"""The one ImageNet normalisation and the one table of compute dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dajax.dtypes import DTYPES, compute_dtype
from dajax.models.normalization import IMAGENET_MEAN, IMAGENET_STD, imagenet_normalize


def test_uint8_images_normalise_the_same_in_numpy_and_jax():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    host = imagenet_normalize(images)
    device = jax.jit(imagenet_normalize)(jnp.asarray(images))
    assert host.dtype == np.float32 and device.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(device), host, rtol=1e-6, atol=1e-6)  # XLA: x * (1/y)
    mid = imagenet_normalize(np.array([[128, 128, 128]], np.uint8))[0]
    np.testing.assert_allclose(mid, (128 / 255 - np.array(IMAGENET_MEAN)) / IMAGENET_STD, 1e-6)


def test_float_images_keep_their_dtype():
    x = np.full((3, 3, 3), 0.5, np.float64)
    out = imagenet_normalize(x)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[0, 0], (0.5 - np.array(IMAGENET_MEAN)) / IMAGENET_STD)
    assert imagenet_normalize(jnp.zeros((1, 3), jnp.float32)).dtype == jnp.float32


def test_compute_dtypes_by_name():
    assert [compute_dtype(name) for name in DTYPES] == [jnp.float32, jnp.bfloat16]
    with pytest.raises(ValueError, match=r"dtype must be one of \('float32', 'bfloat16'\)"):
        compute_dtype("float16")
