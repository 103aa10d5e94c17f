"""`ModelConfig` is checked field by field when it is made, before any model is built from it
(issue 31 #2): a config file is data, and an absurd field is one ValueError naming it."""

import json
import math

import pytest

from dajax.models import ModelConfig
from dajax.models.config import INT_RANGES
from tests.tiny_models import TINY_V2


@pytest.mark.parametrize(
    "field, value",
    [
        *[(name, high + 1) for name, (_, high) in INT_RANGES.items()],
        *[(name, low - 1) for name, (low, _) in INT_RANGES.items()],
        ("depth", 2.0),
        ("dim", "128"),
        ("heads", True),
        ("mlp_ratio", math.nan),
        ("mlp_ratio", 0.0),
        ("mlp_ratio", 1e12),
        ("max_depth", math.inf),
        ("max_depth", -1.0),
        ("layers", (0, 1, 2, 4)),
        ("layers", (0, 1)),
        ("out_channels", (16, 32, 64, 10**9)),
        ("encoder", "vitx"),
        ("version", None),
        ("ffn", 3),
    ],
)
def test_each_field_out_of_range_or_type_is_one_line_naming_it(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be ") as err:
        TINY_V2.replace(**{field: value})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("max_depth", [math.nan, math.inf, 0.0, 1e6])
def test_metric_heads_need_a_finite_positive_range(max_depth):
    with pytest.raises(ValueError, match="max_depth"):
        TINY_V2.replace(head="metric", max_depth=max_depth)
    assert TINY_V2.replace(head="metric", max_depth=20).max_depth == 20


def test_released_variants_and_json_round_trips_pass():
    for encoder in ("vits", "vitb", "vitl", "vitg"):
        config = ModelConfig.from_variant(encoder, "v2", "metric", 80.0)
        assert ModelConfig.from_dict(json.loads(config.to_json())) == config


@pytest.mark.parametrize("data", [[1, 2], 5, "x", None])
def test_from_dict_refuses_what_is_not_a_mapping(data):
    with pytest.raises(ValueError, match="a model config is a mapping of fields"):
        ModelConfig.from_dict(data)
