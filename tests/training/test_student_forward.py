"""The student's single network pass over its labeled and unlabeled images."""

import jax
import numpy as np
import pytest
from tiny_configs import tiny_student

from dajax.models import init_params
from dajax.training import setup, student


@pytest.fixture(scope="module")
def model_and_params():
    model, _ = setup.model_from_config(tiny_student().model)
    return model, init_params(model, jax.random.key(0))


@pytest.mark.parametrize(
    "shards, unlabeled_size",
    [(1, 28), (4, 28), (3, 28), (2, 42)],  # 3 divides neither batch; 42 px: two passes
)
@pytest.mark.slow
def test_student_forward_matches_separate_passes(model_and_params, shards, unlabeled_size):
    model, params = model_and_params
    x_l = jax.random.normal(jax.random.key(1), (4, 28, 28, 3))
    x_u = jax.random.normal(jax.random.key(2), (8, unlabeled_size, unlabeled_size, 3))
    pred_l, pred_u, feats_u = student._joint_forward(model, params, x_l, x_u, shards)
    want_l = model.apply({"params": params}, x_l)
    want_u, want_feats = model.apply({"params": params}, x_u, return_features=True)
    assert pred_u.shape == (8, unlabeled_size, unlabeled_size)
    for got, want in ((pred_l, want_l), (pred_u, want_u), (feats_u, want_feats)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
