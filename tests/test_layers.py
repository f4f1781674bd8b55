"""Systolic layers and model conversion: integer exactness against a plain
PyTorch emulation, determinism across batch sizes, fault injection in every
layer, conversion of torchvision CNNs, and bad input."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import pyvs
from pyvs.nn import (FaultConfig, SystolicConv2d, SystolicLinear, fault_stats, set_faults,
                     set_image_offset, systolic_layers)

from conftest import DATA
from tinynet import TinyNet, tiny


def emulate(x, w_q, w_s, bias_q, s_in, z_in, qrange, conv=None, out=None):
    """The quantized layer in plain PyTorch: float64 conv/matmul on the
    integer values (exact at these sizes), then the documented rounding."""
    q = (torch.round(x.float() * (1.0 / torch.tensor(s_in, dtype=torch.float32))) + z_in).clamp(*qrange)
    xi = (q - z_in).double()
    if conv is None:
        acc = xi @ w_q.double().t()
        shape = (1, -1)
    else:
        acc = F.conv2d(xi, w_q.double(), **conv)
        shape = (1, -1, 1, 1)
    acc = acc.to(torch.int64) + bias_q.to(torch.int64).reshape(shape)
    acc_scale = torch.tensor(s_in, dtype=torch.float32) * w_s
    if out is None:
        return (acc.double() * acc_scale.double().reshape(shape)).float()
    s_out, z_out, lo, hi = out
    m = (acc_scale / torch.tensor(s_out, dtype=torch.float32)).reshape(shape)
    y = (torch.round(acc.float() * m) + z_out).clamp(lo, hi)
    return (y - z_out) * torch.tensor(s_out, dtype=torch.float32)


CONVS = [  # (cin, cout, kernel, stride, padding, dilation, groups)
    (3, 8, 3, 1, 0, 1, 1),       # plain
    (6, 10, 3, 2, 1, 1, 2),      # grouped, strided, padded
    (12, 12, 3, 1, 1, 1, 12),    # depthwise
    (5, 7, 1, 1, 0, 1, 1),       # pointwise
    (4, 6, (3, 5), (2, 1), (2, 1), (1, 2), 1),  # rectangular, dilated
    (8, 16, 5, 3, 2, 1, 4),
]


@pytest.mark.parametrize("act", ["uint8", "int8"])
@pytest.mark.parametrize("requant", [False, True])
@pytest.mark.parametrize("spec", CONVS, ids=lambda s: "-".join(map(str, s)))
def test_conv_is_exactly_the_integer_layer(spec, requant, act):
    cin, cout, k, stride, padding, dilation, groups = spec
    gen = torch.Generator().manual_seed(hash(spec) % 2**31)
    k2 = (k, k) if isinstance(k, int) else k
    w_q = torch.randint(-127, 128, (cout, cin // groups, *k2), generator=gen).to(torch.int8)
    w_s = torch.rand(cout, generator=gen) * 0.02 + 1e-3
    bias_q = torch.randint(-5000, 5000, (cout,), generator=gen).to(torch.int32)
    s_in, z_in = 0.05, (17 if act == "uint8" else 0)
    qrange = (0, 255) if act == "uint8" else (-128, 127)
    out = (0.1, 9, 9, 255) if requant else None  # ReLU-fused output grid
    layer = SystolicConv2d(w_q, w_s, bias_q, s_in, z_in, stride=stride, padding=padding,
                           dilation=dilation, groups=groups, in_dtype=act,
                           out_scale=out[0] if out else None, out_zero_point=9, out_relu=True)
    x = torch.randn(3, cin, 13, 11, generator=gen) * 3
    expected = emulate(x, w_q, layer.w_scale, bias_q, s_in, z_in, qrange,
                       conv=dict(stride=stride, padding=padding, dilation=dilation, groups=groups), out=out)
    assert torch.equal(layer(x), expected)


@pytest.mark.parametrize("requant", [False, True])
def test_linear_is_exactly_the_integer_layer(requant):
    gen = torch.Generator().manual_seed(1)
    w_q = torch.randint(-127, 128, (37, 300), generator=gen).to(torch.int8)
    w_s = torch.rand(37, generator=gen) * 0.01 + 1e-3
    bias_q = torch.randint(-9000, 9000, (37,), generator=gen).to(torch.int32)
    out = (0.2, 80, 0, 255) if requant else None
    layer = SystolicLinear(w_q, w_s, bias_q, 0.03, 120, out_scale=out[0] if out else None,
                           out_zero_point=80)
    x = torch.randn(7, 300, generator=gen)
    assert torch.equal(layer(x), emulate(x, w_q, layer.w_scale, bias_q, 0.03, 120, (0, 255), out=out))


# ---- a small float CNN with every kind of layer: tests/tinynet.py -----------

def batched(model, images, bs):
    out = []
    for i in range(0, len(images), bs):
        set_image_offset(model, i)
        with torch.no_grad():
            out.append(model(images[i:i + bs]))
    return torch.cat(out)


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


@pytest.mark.parametrize("faulty", [False, True])
def test_logits_do_not_depend_on_batch_size(faulty):
    _, images, q = tiny()
    if faulty:
        set_faults(q, FaultConfig(torch.full((32,), 1e-4, dtype=torch.float64), seed=5))
    outs = [batched(q, images, bs) for bs in (24, 7, 1)]
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_faults_reach_every_layer_and_protection_restores_golden():
    _, images, q = tiny()
    golden = batched(q, images, 24)
    p = torch.full((32,), 1e-3, dtype=torch.float64)
    set_faults(q, FaultConfig(p, seed=3))
    faulty = batched(q, images, 24)
    stats = fault_stats(q)
    assert all(int(s[0].sum()) > 0 for s in stats.values()), {k: int(v[0].sum()) for k, v in stats.items()}
    assert not torch.equal(faulty, golden)
    set_faults(q, FaultConfig(p, seed=3, protect=2**32 - 1))
    for _, layer in systolic_layers(q):
        layer.stats.zero_()
    assert torch.equal(batched(q, images, 24), golden)
    stats = fault_stats(q)
    assert all(int(s[1].sum()) > 0 and int(s[0].sum()) == 0 for s in stats.values())


def test_per_layer_fault_settings():
    _, images, q = tiny()
    set_faults(q, {"fc": FaultConfig(torch.full((32,), 1e-2, dtype=torch.float64))})
    batched(q, images, 24)
    stats = fault_stats(q)
    assert int(stats["fc"][0].sum()) > 0
    assert all(int(s.sum()) == 0 for n, s in stats.items() if n != "fc")


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
    with pytest.raises(ValueError, match="wider than the 32-bit accumulator"):
        FaultConfig(torch.zeros(32, dtype=torch.float64), protect=1 << 32)
    with pytest.raises(ValueError, match="not systolic layers"):
        set_faults(q, {"nope": FaultConfig()})
    from pyvs import data, models
    with pytest.raises(ValueError, match="does not exist"):
        data.imagenet_dataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither the ImageNet sample"):
        data.imagenet_dataset(str(tmp_path / "empty"))
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="does not match the int8 MobileNetV2 architecture"):
        models.mobilenet_v2_int8(str(tmp_path / "r18.pth"))
    with pytest.raises(ValueError, match="does not exist"):
        models.mobilenet_v2_int8(str(tmp_path / "none.pth"))


# ---- the paper's network on real images (skipped without ../shared/data) ----

INT8 = DATA / "mobilenet_v2_int8_qnnpack_state_dict.pth"
FLOAT = DATA / "mobilenet_v2_imagenet1k_float_from_int8.pth"
needs_data = pytest.mark.skipif(not (INT8.exists() and FLOAT.exists() and (DATA / "labels.csv").exists()),
                                reason="needs the shared data folder (weights and ImageNet sample)")


@pytest.fixture(scope="module")
def sample_batches():
    from pyvs import data
    return data.decoded(data.imagenet_dataset(str(DATA)), 50)


@needs_data
@pytest.mark.slow
def test_imported_int8_mobilenet_v2_agrees_with_torchvision(sample_batches):
    from pyvs import models
    tv = models.mobilenet_v2_int8(str(INT8))
    ours = pyvs.convert(tv)
    agree = n = 0
    worst = 0.0
    with torch.no_grad():
        for i, (x, _) in enumerate(sample_batches):
            set_image_offset(ours, i * 50)
            a, b = ours(x), tv(x)
            agree += int((a.argmax(1) == b.argmax(1)).sum())
            n += len(x)
            worst = max(worst, float((a - b).abs().max()))
    assert n == 1000
    assert agree / n >= 0.995, agree / n
    # Measured: bit-identical logits (QNNPACK's requantization, fixed-point
    # add and bias rounding are emulated exactly).
    assert worst == 0.0, worst / tv.classifier[1].scale


@needs_data
@pytest.mark.slow
def test_own_quantization_stays_close_to_float(sample_batches):
    from pyvs import models
    from pyvs.evaluate import evaluate
    net = models.float_model("mobilenet_v2", str(FLOAT))
    ref = evaluate(net, sample_batches, progress=False)
    calib = [x for x, _ in sample_batches[:4]]  # 200 calibration images
    q = pyvs.convert(net, calib)
    got = evaluate(q, sample_batches, progress=False)
    assert abs(got["top1"] - ref["top1"]) <= 0.015, (got["top1"], ref["top1"])
