#!/usr/bin/python3
"""torch_zoo: eigenbatch's model zoo (../shared/models.md) as PyTorch modules.

Parameter names and registration order are exactly those of models.md, so that
    model.load_state_dict(safetensors_io.load_torch("weights.safetensors"))
loads a file written by eigenbatch with no renaming, and
    torch.cat([p.reshape(-1) for p in model.parameters()])
is eigenbatch's flat parameter vector (same order, same layout: Conv2d weights out x in x kh x kw,
Linear weights out x in).

    build(name, c, h, w, classes) -> nn.Module      name in MODELS
    forward_flops(name, c, h, w, classes) -> float  FLOPs of one forward pass per sample

Command line:
    torch_zoo.py                      print and check every model's parameter count (1x28x28, 10
                                      classes) against models.md; exit 1 on a mismatch
    torch_zoo.py export MODEL C H W CLASSES SEED OUT
        write a seeded model's state_dict (PyTorch init, then BatchNorm gamma/beta/running
        statistics perturbed so that no BN is an identity) to OUT as safetensors,
        num_batches_tracked included
"""
import sys

import torch
from torch import nn

MODELS = ("mlp", "cnn", "resnet20", "resnet18")

# Parameter counts for 1x28x28 inputs and 10 classes (models.md / the acceptance list).
EXPECTED_PARAMS = {"mlp": 535818, "cnn": 421738, "resnet20": 272186, "resnet18": 11172810}


class MLP(nn.Module):
    """f1 Linear(C*H*W, 512) -> ReLU -> f2 Linear(512, 256) -> ReLU -> f3 Linear(256, nc)."""

    def __init__(self, c, h, w, classes):
        super().__init__()
        self.f1 = nn.Linear(c * h * w, 512)
        self.f2 = nn.Linear(512, 256)
        self.f3 = nn.Linear(256, classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = torch.relu(self.f1(x))
        x = torch.relu(self.f2(x))
        return self.f3(x)


class CNN(nn.Module):
    """Two conv-BN-ReLU-maxpool stages, then f1 Linear(64*(H/4)*(W/4), 128) -> ReLU -> f2."""

    def __init__(self, c, h, w, classes):
        super().__init__()
        self.c1 = nn.Conv2d(c, 32, 3, 1, 1, bias=False)
        self.b1 = nn.BatchNorm2d(32)
        self.c2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(64)
        self.f1 = nn.Linear(64 * (h // 4) * (w // 4), 128)
        self.f2 = nn.Linear(128, classes)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.b2(self.c2(x))), 2)
        x = torch.flatten(x, 1)
        return self.f2(torch.relu(self.f1(x)))


class BasicBlock(nn.Module):
    """c1 3x3 (stride) -> b1 -> ReLU -> c2 3x3 -> b2, plus identity or sc = (1x1 conv, BN)."""

    def __init__(self, i, o, stride):
        super().__init__()
        self.c1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(o)
        self.c2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(o)
        self.sc = None
        if stride != 1 or i != o:
            self.sc = nn.Sequential(nn.Conv2d(i, o, 1, stride, 0, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return torch.relu(y + (self.sc(x) if self.sc is not None else x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: stem 3x3 -> bn -> ReLU, stages of BasicBlocks, average pool, fc."""

    def __init__(self, c, classes, widths, blocks):
        super().__init__()
        self.stem = nn.Conv2d(c, widths[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        layers = []
        i = widths[0]
        for s, (o, n) in enumerate(zip(widths, blocks)):
            for b in range(n):
                layers.append(BasicBlock(i, o, 2 if s > 0 and b == 0 else 1))
                i = o
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        for blk in self.layers:
            x = blk(x)
        return self.fc(torch.mean(x, dim=(2, 3)))


def build(name, c, h, w, classes):
    """The zoo model `name` for c x h x w inputs and `classes` classes (PyTorch default init)."""
    if name == "mlp":
        return MLP(c, h, w, classes)
    if name == "cnn":
        return CNN(c, h, w, classes)
    if name == "resnet20":
        return ResNet(c, classes, (16, 32, 64), (3, 3, 3))
    if name == "resnet18":
        return ResNet(c, classes, (64, 128, 256, 512), (2, 2, 2, 2))
    raise ValueError("unknown model '%s' (known: %s)" % (name, ", ".join(MODELS)))


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def forward_flops(name, c, h, w, classes):
    """FLOPs (multiply-add = 2) of one forward pass for one sample, counting Conv2d and Linear
    layers only (BN, ReLU, pooling are a few percent at most)."""
    model = build(name, c, h, w, classes)
    flops = [0]

    def conv_hook(mod, inp, out):
        k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
        flops[0] += 2 * k * out.numel()

    def lin_hook(mod, inp, out):
        flops[0] += 2 * mod.weight.shape[1] * out.numel()

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(lin_hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, c, h, w))
    return float(flops[0])


def export(name, c, h, w, classes, seed, path):
    """Write a seeded model with non-trivial BatchNorm state to path (safetensors)."""
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import safetensors_io
    torch.manual_seed(seed)
    model = build(name, c, h, w, classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
                m.running_mean.copy_(0.1 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
                m.num_batches_tracked.fill_(seed)
    safetensors_io.save(path, model.state_dict(), metadata={"format": "pt", "model": name})


def main(argv):
    if len(argv) == 9 and argv[1] == "export":
        export(argv[2], int(argv[3]), int(argv[4]), int(argv[5]), int(argv[6]), int(argv[7]),
               argv[8])
        return 0
    if len(argv) != 1:
        print(__doc__)
        return 2
    ok = True
    for name in MODELS:
        n = param_count(build(name, 1, 28, 28, 10))
        good = n == EXPECTED_PARAMS[name]
        ok &= good
        print("%-9s %11s parameters (expected %s) %s" % (name, format(n, ","),
              format(EXPECTED_PARAMS[name], ","), "ok" if good else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
