"""A small float CNN with every kind of layer pyvs maps (plain, depthwise,
pointwise and grouped convs, a residual add, linear), shared by the tests."""
import torch
import torch.nn.functional as F
from torch import nn

import pyvs

class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.BatchNorm2d(8), nn.ReLU())
        self.pw = nn.Conv2d(8, 16, 1)
        self.grouped = nn.Conv2d(16, 16, 3, 2, 1, groups=4)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.dw(self.stem(x))
        x = self.grouped(self.pw(x) + x.repeat(1, 2, 1, 1))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def tiny(seed=0):
    torch.manual_seed(seed)
    net = TinyNet().eval()
    for m in net.modules():  # non-trivial BatchNorm statistics to fold
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    images = torch.randn(24, 3, 32, 32)
    return net, images, pyvs.convert(net, [images[:8], images[8:16]])


def batched(images, bs=8):
    """(images, labels) batches of ``bs``, labels 0..9 in turn."""
    labels = torch.arange(len(images)) % 10
    return [(images[i:i + bs], labels[i:i + bs]) for i in range(0, len(images), bs)]
