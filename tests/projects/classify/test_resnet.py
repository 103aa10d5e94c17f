"""Flax ResNet-50 vs a torch.nn transcription of torchvision's `resnet50` (torchvision itself is
not installable here), loaded from a `torch.save` file without executing pickled code."""

import jax
import numpy as np
import pytest
import torch
from torch import nn

from dajax.projects.classify.resnet import (
    init_resnet50_params,
    load_torchvision_resnet50,
    resnet50_features,
)
from dajax.weights.safetensors_io import save_safetensors

# --- torchvision.models.resnet (Bottleneck / ResNet / resnet50), transcribed -----------------


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.features(x))


def resnet50():
    return ResNet(Bottleneck, [3, 4, 6, 3])


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_model():
    torch.manual_seed(0)
    model = resnet50()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.empty(c).uniform_(0.5, 1.5))
                m.bias.copy_(0.2 * torch.randn(c))
                m.running_mean.copy_(0.2 * torch.randn(c))
                m.running_var.copy_(torch.empty(c).uniform_(0.5, 2.0))
    return model.eval()


@pytest.fixture(scope="module")
def state(torch_model):
    return {k: v.detach().clone() for k, v in torch_model.state_dict().items()}


@pytest.fixture(scope="module")
def checkpoint(state, tmp_path_factory):
    path = tmp_path_factory.mktemp("r50") / "r50.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def params(checkpoint):
    return load_torchvision_resnet50(checkpoint)


def _rel_err(got, ref):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_matches_torch_resnet50(torch_model, params):
    images = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        ref_pool = torch_model.features(x).numpy()
        ref_logits = torch_model.fc(torch.from_numpy(ref_pool)).numpy()
    run = jax.jit(resnet50_features, static_argnames="output")
    pool = run(params, images, output="pool")
    logits = run(params, images, output="logits")
    assert pool.shape == (2, 2048) and logits.shape == (2, 1000)
    assert _rel_err(pool, ref_pool) <= 1e-4
    assert _rel_err(logits, ref_logits) <= 1e-4


def test_module_prefix_and_safetensors(state, tmp_path):
    arrays = {f"module.{k}": v.numpy() for k, v in state.items()}
    path = tmp_path / "r50.safetensors"
    save_safetensors(path, arrays)
    params = load_torchvision_resnet50(path)
    np.testing.assert_array_equal(
        params["layer2_0"]["downsample_conv"]["kernel"],
        state["layer2.0.downsample.0.weight"].numpy().transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(params["fc"]["kernel"], state["fc.weight"].numpy().T)
    np.testing.assert_array_equal(
        params["layer3_5"]["bn2"]["var"], state["layer3.5.bn2.running_var"].numpy()
    )


def test_init_params_match_loaded_structure(params):
    loaded = params
    fresh = init_resnet50_params(jax.random.key(0))
    assert jax.tree.structure(fresh) == jax.tree.structure(loaded)
    assert jax.tree.map(np.shape, fresh) == jax.tree.map(np.shape, loaded)
    np.testing.assert_array_equal(fresh["layer1_0"]["bn1"]["scale"], np.ones(64, np.float32))
    std = float(np.std(fresh["layer4_0"]["conv2"]["kernel"]))
    assert abs(std - np.sqrt(2.0 / (3 * 3 * 512))) < 0.05 * std  # kaiming normal, fan_out


def test_missing_key_is_named(state, tmp_path):
    bad = dict(state)
    del bad["layer3.2.bn2.running_var"]
    path = tmp_path / "missing.pth"
    torch.save(bad, path)
    with pytest.raises(ValueError, match="missing") as e:
        load_torchvision_resnet50(path)
    assert str(path) in str(e.value) and "layer3.2.bn2.running_var" in str(e.value)


def test_wrong_shape_and_unexpected_keys_are_named(state, tmp_path):
    bad = dict(state)
    bad["fc.weight"] = torch.zeros(10, 2048)
    bad["head.extra"] = torch.zeros(3)
    path = tmp_path / "wrong.pth"
    torch.save(bad, path)
    with pytest.raises(ValueError) as e:
        load_torchvision_resnet50(path)
    msg = str(e.value)
    assert str(path) in msg and "fc.weight" in msg and "(10, 2048)" in msg
    assert "unexpected" in msg and "head.extra" in msg


def test_bad_output_rejected(params):
    with pytest.raises(ValueError, match="output"):
        resnet50_features(params, np.zeros((1, 32, 32, 3), np.float32), output="layer4")
