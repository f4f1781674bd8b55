"""Putting models on the array: the int8 import and post-training
quantization of float models (torchvision CNNs included), unmapped layers,
and bad input to the conversion and the fault settings."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import pyvs
from pyvs.nn import FaultConfig, SystolicConv2d, set_faults, systolic_layers

from tinynet import TinyNet, tiny


def test_convert_swaps_every_layer_and_stays_close_to_float():
    net, images, q = tiny()
    names = [n for n, _ in systolic_layers(q)]
    assert names == ["stem.0", "dw.0", "pw", "grouped", "fc"]
    assert not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in q.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in q.modules()), "BatchNorm must be folded"
    assert any(isinstance(m, nn.Conv2d) for m in net.modules()), "the original is left untouched"
    with torch.no_grad():
        ref, got = net(images), q(images)
    assert F.cosine_similarity(ref.flatten(), got.flatten(), dim=0) > 0.99


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet18", "resnet50", "mobilenet_v3_large"])
def test_convert_torchvision_models(arch):
    torch.manual_seed(0)
    net = torchvision.models.get_model(arch, weights=None)
    images = torch.randn(4, 3, 64, 64)
    # Random weights with BatchNorm statistics of real activations (one
    # train-mode pass), so that the signal neither vanishes nor explodes.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        net.train()(images)
    net.eval()
    q = pyvs.convert(net, [images])
    n_src = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in net.modules())
    assert len(systolic_layers(q)) == n_src
    with torch.no_grad():
        ref, got = net(images), q(images)
    assert got.shape == ref.shape
    assert torch.isfinite(got).all()
    # Random weights: no accuracy to check (real weights: the tests below), and
    # int8 keeps little of a deep random net's per-image signal (measured,
    # batch-centred cosine: ResNet-50 0.26, MobileNetV2 0.40, MobileNetV3 0.91,
    # ResNet-18 0.98), but it must keep some; mis-wired layers or images
    # paired wrongly give about -0.1 to -0.3.
    centred = lambda t: (t - t.mean(0)).flatten()  # noqa: E731
    assert F.cosine_similarity(centred(ref), centred(got), dim=0) > 0.2



# ---- bad input --------------------------------------------------------------

def test_unsupported_layer_is_named():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 4, 3))
    with pytest.raises(ValueError, match=r"1 \(ConvTranspose2d\).*allow_float=True"):
        pyvs.convert(net, [torch.randn(1, 3, 8, 8)])
    q = pyvs.convert(net, [torch.randn(1, 3, 8, 8)], allow_float=True)
    assert isinstance(q[0], SystolicConv2d) and isinstance(q[1], nn.ConvTranspose2d)


def test_bad_inputs_are_clear_errors(tmp_path):
    _, images, q = tiny()
    with pytest.raises(ValueError, match="expects a 4-D input"):
        q.stem[0](torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="needs at least one image|calibration data was empty"):
        pyvs.convert(TinyNet(), [])
    with pytest.raises(ValueError, match="needs calibration data"):
        pyvs.convert(TinyNet())
    with pytest.raises(ValueError, match="probability table has 16 entries but the accumulator is 32"):
        set_faults(q, FaultConfig(torch.zeros(16, dtype=torch.float64)))
    with pytest.raises(ValueError, match="not a probability"):
        FaultConfig(torch.tensor([0.5] * 31 + [2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="has bits outside the 32-bit accumulator"):
        FaultConfig(torch.zeros(32, dtype=torch.float64), protect=1 << 32)
    with pytest.raises(ValueError, match="not systolic layers"):
        set_faults(q, {"nope": FaultConfig()})


@pytest.mark.parametrize("make,match", [
    (lambda: FaultConfig(torch.zeros(2, 16, dtype=torch.float64)), r"p_bits must be 1-D \[W\]"),
    (lambda: FaultConfig(torch.zeros(32), protect=1.5), "protect must be an integer"),
    (lambda: FaultConfig(torch.zeros(32), rows=2.5), "rows must be an integer"),
    (lambda: FaultConfig(torch.zeros(32), rows=0), r"rows must be an integer in \[1"),
    (lambda: FaultConfig(torch.zeros(32), seed="3"), "seed must be an integer"),
    (lambda: FaultConfig(torch.zeros(32), seed=2**64), "seed must fit in 64 bits"),
    (lambda: FaultConfig(torch.zeros(32), impl="fastest"), "impl must be"),
    (lambda: FaultConfig("abc"), "p_bits must be a 1-D sequence of probabilities"),
    (lambda: FaultConfig([0.1] * 7), "between 8 and 32"),
])
def test_fault_config_refuses_what_it_would_have_coerced(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_set_faults_refuses_a_bare_number():
    _, _, q = tiny()
    with pytest.raises(TypeError, match="expected a FaultConfig, a dict of them or None, got float"):
        set_faults(q, 0.5)


@pytest.mark.parametrize("poison", ["weight", "bias", "bn"])
def test_non_finite_float_models_are_refused(poison):
    net = TinyNet().eval()
    target = {"weight": net.pw.weight, "bias": net.fc.bias, "bn": net.dw[1].running_var}[poison]
    target.data.view(-1)[0] = float("nan")
    with torch.no_grad():
        assert torch.isnan(net(torch.randn(2, 3, 32, 32))).any(), "the float model must show the NaN"
    with pytest.raises(ValueError, match="holds NaN or infinite values"):
        pyvs.convert(net, [torch.randn(2, 3, 32, 32)])


def test_non_finite_calibration_is_refused():
    with pytest.raises(ValueError, match="calibration inputs of layer 'stem.0' are not finite"):
        pyvs.convert(TinyNet().eval(), [torch.full((2, 3, 32, 32), float("inf"))])
