#!/usr/bin/python3
"""torch_zoo: eigenbatch's model zoo (core/nn/nn_zoo.c) as PyTorch modules.

Parameter names and registration order are exactly those of the zoo (core/nn/nn_zoo.c), so that
    model.load_state_dict(safetensors_io.load_torch("weights.safetensors"))
loads a file written by eigenbatch with no renaming, and
    torch.cat([p.reshape(-1) for p in model.parameters()])
is eigenbatch's flat parameter vector (same order, same layout: Conv2d weights out x in x kh x kw,
Linear weights out x in).

    build(name, c, h, w, classes) -> nn.Module      name in MODELS
    forward_flops(name, c, h, w, classes) -> float  FLOPs of one forward pass per sample
    use_masks(model, seed)                          make the model's Dropout modules draw
                                                    eigenbatch's masks (nn_dropout.c) for a seed

The ImageNet models (resnet18, resnet34, resnet50, alexnet) are torchvision's own modules
(torchvision.models.resnet18(num_classes=...) etc.; needs python3-torchvision), with the first
convolution rebuilt for inputs of other than 3 channels. wrn16_4 is Wide ResNet 16-4 with the
names and layout of Zagoruyko and Komodakis' reference (pre-activation blocks, 1x1 `convdim`
shortcut from the pre-activated input when the width changes).

Command line:
    torch_zoo.py                      print and check every model's parameter count (the
                                      CIFAR-style models at 1x28x28 with 10 classes, wrn16_4 at
                                      3x32x32 with 10, the ImageNet models at 3x224x224 with 1000)
                                      against the zoo; exit 1 on a mismatch
    torch_zoo.py export MODEL C H W CLASSES SEED OUT
        write a seeded model's state_dict (PyTorch init, then BatchNorm gamma/beta/running
        statistics perturbed so that no BN is an identity) to OUT as safetensors,
        num_batches_tracked included
"""
import sys

import torch
from torch import nn

MODELS = ("mlp", "cnn", "resnet20", "resnet18_cifar", "wrn16_4", "resnet18", "resnet34",
          "resnet50", "alexnet")
TORCHVISION = ("resnet18", "resnet34", "resnet50", "alexnet")

# Parameter counts (the zoo): (c, h, w, classes) -> count.
EXPECTED_PARAMS = {
    "mlp": ((1, 28, 28, 10), 535818),
    "cnn": ((1, 28, 28, 10), 421738),
    "resnet20": ((1, 28, 28, 10), 272186),
    "resnet18_cifar": ((1, 28, 28, 10), 11172810),
    "wrn16_4": ((3, 32, 32, 10), 2748890),
    "resnet18": ((3, 224, 224, 1000), 11689512),
    "resnet34": ((3, 224, 224, 1000), 21797672),
    "resnet50": ((3, 224, 224, 1000), 25557032),
    "alexnet": ((3, 224, 224, 1000), 61100840),
}


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


class WideBlock(nn.Module):
    """Pre-activation block: o1 = ReLU(bn0(x)); z = conv1(ReLU(bn1(conv0(o1)))); z + convdim(o1)
    when the width changes, else z + x (Zagoruyko and Komodakis)."""

    def __init__(self, i, o, stride):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(i)
        self.conv0 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv1 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.convdim = nn.Conv2d(i, o, 1, stride, 0, bias=False) if i != o else None

    def forward(self, x):
        o1 = torch.relu(self.bn0(x))
        z = self.conv1(torch.relu(self.bn1(self.conv0(o1))))
        return z + (self.convdim(o1) if self.convdim is not None else x)


class WideResNet(nn.Module):
    """WRN-d-k: conv0 3x3 (16) -> groups of (d-4)/6 blocks of widths 16k, 32k, 64k (stride 2 at the
    start of groups 1 and 2) -> bn -> ReLU -> average pool -> fc. Names group<g>.block<b>.*."""

    def __init__(self, c, classes, depth=16, width=4):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16 * width, 32 * width, 64 * width]
        self.conv0 = nn.Conv2d(c, 16, 3, 1, 1, bias=False)
        i = 16
        for g, o in enumerate(widths):
            group = nn.ModuleDict()
            for b in range(n):
                group["block%d" % b] = WideBlock(i, o, 2 if g > 0 and b == 0 else 1)
                i = o
            setattr(self, "group%d" % g, group)
        self.groups = len(widths)
        self.bn = nn.BatchNorm2d(i)
        self.fc = nn.Linear(i, classes)

    def forward(self, x):
        x = self.conv0(x)
        for g in range(self.groups):
            for blk in getattr(self, "group%d" % g).values():
                x = blk(x)
        x = torch.relu(self.bn(x))
        return self.fc(torch.mean(x, dim=(2, 3)))


def _torchvision(name, c, classes):
    """torchvision's model, its first convolution rebuilt for c input channels."""
    import torchvision
    model = getattr(torchvision.models, name)(num_classes=classes)
    if c != 3 and name == "alexnet":
        model.features[0] = nn.Conv2d(c, 64, 11, 4, 2)
    elif c != 3:
        model.conv1 = nn.Conv2d(c, 64, 7, 2, 3, bias=False)
    return model


def build(name, c, h, w, classes):
    """The zoo model `name` for c x h x w inputs and `classes` classes (PyTorch default init;
    torchvision's own init for its models)."""
    if name == "mlp":
        return MLP(c, h, w, classes)
    if name == "cnn":
        return CNN(c, h, w, classes)
    if name == "resnet20":
        return ResNet(c, classes, (16, 32, 64), (3, 3, 3))
    if name == "resnet18_cifar":
        return ResNet(c, classes, (64, 128, 256, 512), (2, 2, 2, 2))
    if name == "wrn16_4":
        return WideResNet(c, classes, 16, 4)
    if name in TORCHVISION:
        return _torchvision(name, c, classes)
    raise ValueError("unknown model '%s' (known: %s)" % (name, ", ".join(MODELS)))


def _mix(z):
    """splitmix64's output function on numpy uint64 (wrapping arithmetic)."""
    import numpy as np
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dropout_mask(name, p, seed, shape):
    """eigenbatch's dropout mask (0 or 1/(1-p)) of layer `name` for a pass seed, over an input of
    shape (n, ...): element (i, f) is kept when the top 24 bits of M(M(seed ^ fnv1a64(name)) +
    i*numel + f) are >= round(p * 2^24), M = splitmix64's mixer (core/nn/nn_dropout.c)."""
    import numpy as np
    salt = 0xCBF29CE484222325
    for ch in name.encode():
        salt = ((salt ^ ch) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    key = _mix(np.array([(seed ^ salt) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    with np.errstate(over="ignore"):
        bits = _mix(key + np.arange(int(np.prod(shape)), dtype=np.uint64)) >> np.uint64(40)
    keep = bits >= np.uint64(int(p * (1 << 24) + 0.5))
    return torch.from_numpy(keep.reshape(shape).astype(np.float64) / (1.0 - p))


class MaskedDropout(nn.Module):
    """Dropout with eigenbatch's mask for a fixed pass seed (identity in eval mode)."""

    def __init__(self, name, p, seed):
        super().__init__()
        self.name, self.p, self.seed = name, p, seed

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return x * dropout_mask(self.name, self.p, self.seed, tuple(x.shape)).to(x.dtype)


def use_masks(model, seed):
    """Replace every nn.Dropout of model by MaskedDropout (same module name, so the same mask as
    eigenbatch's layer of that name draws for pass seed `seed`)."""
    for name, mod in list(model.named_modules()):
        if isinstance(mod, nn.Dropout):
            parent, _, leaf = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            setattr(owner, leaf, MaskedDropout(name, mod.p, seed))
    return model


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
    try:
        import torchvision  # noqa: F401
        have_tv = True
    except ImportError:
        have_tv = False
    for name in MODELS:
        (c, h, w, classes), want = EXPECTED_PARAMS[name]
        if name in TORCHVISION and not have_tv:
            print("%-14s skipped: no torchvision" % name)
            continue
        n = param_count(build(name, c, h, w, classes))
        good = n == want
        ok &= good
        print("%-14s %dx%dx%d %4d classes %11s parameters (expected %s) %s"
              % (name, c, h, w, classes, format(n, ","), format(want, ","),
                 "ok" if good else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
