"""The int8 runtime's elementwise ops (quantize, requantize) equal their
PyTorch definitions bit for bit: rounding ties, wrapping offsets, float32
products, clamping, every layout, on CPU and (with a GPU) CUDA."""
import pytest
import torch

from pyvs import ops, reference as R

from conftest import cpu_and_cuda


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("scale,zp", [(0.05, 17), (0.0235, 0), (1 / 3, 128), (2.0, -5)])
def test_quantize_equals_its_definition(device, dtype, scale, zp):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 7, 9, 11, generator=gen) * 40
    x[0, 0, 0, :6] = torch.tensor([0.5, 1.5, -0.5, -2.5, 1e30, -1e30]) * scale  # ties and saturation
    for view in (x, x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2), x.transpose(1, 3), x[:, ::2]):
        got = ops.quantize(view.to(device), scale, zp, dtype)
        assert got.shape == view.shape and got.dtype == (torch.uint8 if dtype == "uint8" else torch.int8)
        assert torch.equal(got.cpu(), R.quantize(view, scale, zp, dtype))
    assert ops.quantize(x.to(device).contiguous(memory_format=torch.channels_last), scale, zp,
                        dtype).is_contiguous(memory_format=torch.channels_last)  # the layout is kept


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("channel_dim", [0, 1])
def test_requantize_equals_its_definition(device, channel_dim):
    gen = torch.Generator().manual_seed(4)
    R_, C = 300, 37
    acc = torch.randint(-2**31, 2**31, (R_, C), generator=gen, dtype=torch.int64).to(torch.int32)
    acc[:5] = torch.randint(-3000, 3000, (5, C), generator=gen, dtype=torch.int32)
    channels = (R_, C)[channel_dim]
    offset = torch.randint(-2**31, 2**31, (channels,), generator=gen, dtype=torch.int64).to(torch.int32)
    multiplier = torch.rand(channels, generator=gen) * 1e-3
    multiplier[:3] = torch.tensor([0.5, 0.25, 1.0])  # exact products: ties to even
    for lo, hi, scale in ((-9, 246, 0.1), (0, 255, 0.0317), (-128, 127, 3.0)):
        got = ops.requantize(acc.to(device), offset.to(device), multiplier.to(device), lo, hi, scale, channel_dim)
        assert torch.equal(got.cpu(), R.requantize(acc, offset, multiplier, lo, hi, scale, channel_dim))


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="quantize: x must be float32"):
        torch.ops.pyvs.quantize(torch.zeros(3, dtype=torch.float64), 0.1, 0, True)
    with pytest.raises(ValueError, match="acc must be int32"):
        ops.requantize(torch.zeros(3, dtype=torch.int32), torch.zeros(3, dtype=torch.int32), torch.ones(3), 0, 1, 1.0)
    with pytest.raises(ValueError, match="one entry per channel"):
        ops.requantize(torch.zeros(2, 3, dtype=torch.int32), torch.zeros(2, dtype=torch.int32), torch.ones(3), 0, 1, 1.0)


@pytest.mark.parametrize("lo,hi,words", [(-10, 10_000_000, "-2.22 <= lo <= hi <= 2.22"),
                                         (5, -5, "lo <= hi"), (-(1 << 23), 0, "lo <= hi")])
def test_requantize_refuses_a_range_it_would_clamp_silently(lo, hi, words):
    # Values are clamped to +-2^22 before rounding: a wider output range
    # would turn 1e8 into 4194304 without a word.
    acc = torch.tensor([[100_000_000]], dtype=torch.int32)
    one = (torch.zeros(1, dtype=torch.int32), torch.ones(1, dtype=torch.float32))
    with pytest.raises(ValueError, match=words):
        ops.requantize(acc, *one, lo, hi, 1.0)
    with pytest.raises(ValueError, match="out_scale must be a positive number"):
        ops.requantize(acc, *one, -5, 5, float("nan"))
    assert float(ops.requantize(acc, *one, -(1 << 22), 1 << 22, 1.0)) == 4194304.0  # the edge, exact
