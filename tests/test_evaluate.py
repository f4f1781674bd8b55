"""Evaluation: accuracies with Wilson intervals, golden agreement, the
counts a pass collects, and predictions that break ties the same way on
every device."""
import math

import pytest
import torch
from torch import nn

from pyvs.evaluate import Rate, evaluate, top_classes, wilson_interval

from conftest import cpu_and_cuda
from tinynet import tiny


def test_wilson_interval_closed_form():
    # k = 0: the interval is [0, z^2 / (n + z^2)].
    z = 1.959964
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(z * z / (50 + z * z))
    lo, hi = wilson_interval(40, 50)
    assert lo < 0.8 < hi and hi - lo < 0.25
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_ties_go_to_the_lower_class_index(device):
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.5, 3.0, 2.0, 2.0],
                           [0.0] * 7,
                           [-1.0, -1.0, 5.0, -1.0, 5.0, -1.0, -1.0]], device=device)
    assert top_classes(logits).cpu().tolist() == [[1, 2, 4, 5, 6], [0, 1, 2, 3, 4], [2, 4, 0, 1, 3]]


class Constant(nn.Module):
    """Every image gets the same logits: class 3 and 7 tie for first."""

    def forward(self, x):
        out = torch.zeros(len(x), 10, device=x.device)
        out[:, 3] = out[:, 7] = 1.0
        return out


def test_evaluate_counts_accuracies_and_agreement():
    images = torch.zeros(6, 3, 8, 8)
    labels = torch.tensor([3, 7, 3, 9, 3, 7])  # top-5 is 3, 7, 0, 1, 2
    ev = evaluate(Constant(), [(images[:4], labels[:4]), (images[4:], labels[4:])], progress=False)
    assert ev.pred[:, :2].tolist() == [[3, 7]] * 6  # the tie goes to class 3
    assert ev.top1 == Rate(3, 6) and ev.top5 == Rate(5, 6) and ev.agree is None
    golden = ev.pred.clone()
    golden[0, 0] = 7
    assert evaluate(Constant(), [(images, labels)], golden=golden, progress=False).agree == Rate(5, 6)
    with pytest.raises(ValueError, match="golden run has 5 predictions, this run 6"):
        evaluate(Constant(), [(images, labels)], golden=golden[:5], progress=False)
    with pytest.raises(ValueError, match="got no images"):
        evaluate(Constant(), [], progress=False)


def test_evaluate_collects_counts_and_shapes_of_every_layer():
    from pyvs.nn import FaultConfig, set_faults, systolic_layers
    _, images, q = tiny()
    set_faults(q, FaultConfig(torch.full((32,), 1e-3, dtype=torch.float64), seed=2))
    labels = torch.zeros(len(images), dtype=torch.int64)
    ev = evaluate(q, [(images[:10], labels[:10]), (images[10:], labels[10:])], progress=False)
    names = [n for n, _ in systolic_layers(q)]
    assert list(ev.per_layer) == names and set(ev.shapes) == set(names)
    assert torch.equal(ev.counts, sum(ev.per_layer.values())) and int(ev.counts[0].sum()) > 0
