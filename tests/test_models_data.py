"""Loading networks and ImageNet data, and the paper's network on the real
sample images (skipped without ../shared/data): the imported int8
MobileNetV2 is bit-identical to torchvision's, and our PTQ stays close."""
import pytest
import torch
import torchvision

import pyvs
from pyvs.data import normalize
from pyvs.nn import forward_pass

from conftest import DATA


def test_bad_data_and_weights_are_clear_errors(tmp_path):
    from pyvs import data, models
    with pytest.raises(ValueError, match="does not exist"):
        data.imagenet_dataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither an ImageNet sample"):
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
            x = normalize(x)
            with forward_pass(i * 50):
                a = ours(x)
            b = tv(x)
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
    assert abs(got.top1.value - ref.top1.value) <= 0.015, (got.top1, ref.top1)
