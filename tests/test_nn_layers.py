"""Systolic layers: integer exactness against a plain PyTorch emulation,
determinism across batch sizes, fault injection in every layer, per-layer
settings, and what a forward pass reports to its probe."""
import pytest
import torch
import torch.nn.functional as F

from pyvs.nn import (FaultConfig, Probe, SystolicConv2d, SystolicLinear, forward_pass, set_faults,
                     systolic_layers)

from conftest import cpu_and_cuda
from tinynet import tiny


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


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("act", ["uint8", "int8"])
@pytest.mark.parametrize("requant", [False, True])
@pytest.mark.parametrize("spec", CONVS, ids=lambda s: "-".join(map(str, s)))
def test_conv_is_exactly_the_integer_layer(spec, requant, act, device):
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
    assert torch.equal(layer.to(device)(x.to(device)).cpu(), expected)


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

def batched(model, images, bs, probe=None):
    """Logits of ``images`` in batches of ``bs``, each batch at its global offset."""
    out = []
    for i in range(0, len(images), bs):
        with forward_pass(i, probe), torch.no_grad():
            out.append(model(images[i:i + bs]))
    return torch.cat(out)


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
    probe = Probe()
    faulty = batched(q, images, 24, probe)
    stats = probe.counts()
    assert list(stats) == [n for n, _ in systolic_layers(q)]
    assert all(int(s[0].sum()) > 0 for s in stats.values()), {k: int(v[0].sum()) for k, v in stats.items()}
    assert not torch.equal(faulty, golden)
    set_faults(q, FaultConfig(p, seed=3, protect=2**32 - 1))
    protected = Probe()
    assert torch.equal(batched(q, images, 24, protected), golden)
    stats = protected.counts()
    assert all(int(s[1].sum()) > 0 and int(s[0].sum()) == 0 for s in stats.values())
    # Protection splits the very same events: corrected now = injected before.
    assert all(torch.equal(stats[n][1], probe.counts()[n][0]) for n in stats)


def test_per_layer_fault_settings():
    _, images, q = tiny()
    set_faults(q, {"fc": FaultConfig(torch.full((32,), 1e-2, dtype=torch.float64))})
    probe = Probe()
    batched(q, images, 24, probe)
    stats = probe.counts()
    assert int(stats["fc"][0].sum()) > 0
    assert all(int(s.sum()) == 0 for n, s in stats.items() if n != "fc")


def test_probe_records_gemm_shapes_and_nothing_stays_on_the_layers():
    _, images, q = tiny()
    probe = Probe()
    batched(q, images[:5], 5, probe)
    # 32x32 input: stem stride 2 -> 16x16; grouped stride 2 -> 8x8.
    assert probe.shapes == {"stem.0": (1, 256, 27, 8), "dw.0": (8, 256, 9, 1), "pw": (1, 256, 8, 16),
                            "grouped": (4, 64, 36, 4), "fc": (1, 1, 16, 10)}
    assert all(int(c.sum()) == 0 for c in probe.counts().values())
    for _, layer in systolic_layers(q):
        assert not any(isinstance(v, Probe) for v in vars(layer).values())


def test_forward_pass_offset_is_the_global_image_index():
    # Image 7 of a batch that starts at 5 is image 7 of one that starts at 0.
    _, images, q = tiny()
    set_faults(q, FaultConfig(torch.full((32,), 1e-3, dtype=torch.float64), seed=1))
    whole = batched(q, images[:12], 12)
    with forward_pass(5), torch.no_grad():
        part = q(images[5:12])
    assert torch.equal(part, whole[5:12])
    set_faults(q, FaultConfig(torch.full((32,), 1e-3, dtype=torch.float64), seed=1))  # numbering from 0
    with torch.no_grad():  # outside any pass, the first call is images 0..6: another image's errors
        assert not torch.equal(q(images[5:12]), whole[5:12])


def test_a_plain_loop_gives_every_batch_its_own_faults():
    # Batch after batch outside forward_pass: each image gets the errors it
    # gets in an evaluation from image 0, not image 0's (every batch used to
    # be treated as images 0..B-1, so equal batches erred alike).
    _, images, q = tiny()
    p = FaultConfig(torch.full((32,), 1e-3, dtype=torch.float64), seed=2)
    set_faults(q, p)
    reference = batched(q, images, 24)        # explicit offsets
    set_faults(q, p)
    with torch.no_grad():
        plain = torch.cat([q(images[i:i + 8]) for i in range(0, 24, 8)])
        again = q(images[:8])                 # images 24..31 of the loop: new faults
    assert torch.equal(plain, reference)
    assert not torch.equal(again, plain[:8])
    set_faults(q, p)                          # set_faults starts the numbering again
    with torch.no_grad():
        assert torch.equal(q(images[:8]), plain[:8])
    probe = Probe()
    with forward_pass(0, probe), torch.no_grad():
        q(images[:8])                         # an explicit pass does not move the numbering
    with torch.no_grad():
        assert torch.equal(q(images[8:16]), plain[8:16])


def test_layers_hand_the_op_column_major_views_of_their_weights():
    # The int8 GEMMs want the weight operand column-major; PyTorch's weight
    # layout already is, as [G, K, N]: the layers pass views, never copies.
    _, _, q = tiny()
    for name, layer in systolic_layers(q):
        if isinstance(layer, SystolicConv2d):
            w = layer.gemm_weights()
            G, K, N = w.shape
            assert w.stride() == (K * N, 1, K), name
            assert w.data_ptr() == layer.weight_q.data_ptr(), name


def test_output_stationary_layers_accumulate_the_whole_k_in_one_register():
    # 'os' is one partial sum over all of K in one W-bit register: the op
    # with a tile as long as K; the errors stay those of the same MACs (the
    # events do not depend on the tiles), what they do to the sum does not.
    from pyvs import systolic_matmul
    _, images, q = tiny()
    layer = dict(systolic_layers(q))["pw"]
    p = torch.full((layer.acc_bits,), 2e-3, dtype=torch.float64)
    x = torch.randn(2, layer.in_channels, 5, 5)
    outs = {}
    for df in ("ws", "os"):
        layer.set_fault(FaultConfig(p, seed=4, rows=4, dataflow=df))
        probe = Probe()
        with forward_pass(0, probe), torch.no_grad():
            outs[df] = layer(x)
        outs[df + "-counts"] = probe.counts()["pw"]
    assert torch.equal(outs["ws-counts"], outs["os-counts"])  # same events
    assert not torch.equal(outs["ws"], outs["os"])  # a flip lands in another partial sum
    # and the os output is the op with one tile of K
    a = layer.im2col(layer_q(layer, x), 5, 5)
    want, _ = systolic_matmul(a[0], layer.gemm_weights()[0], p, seed=4, layer=layer.stream, rows=a.shape[2])
    assert torch.equal(outs["os"], layer.finish(want).view(2, 5, 5, -1).permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="dataflow must be one of ws, os"):
        FaultConfig(p, dataflow="rs")


def layer_q(layer, x):
    from pyvs.ops import quantize
    return quantize(x, layer.in_scale, layer.in_zero_point, layer.in_dtype)
