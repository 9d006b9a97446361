#!/usr/bin/python3
"""Check eigenbatch's sample transforms against torchvision's (test_data_torchvision).

usage: tv_transforms.py MANIFEST

Each manifest line names one sample eigenbatch wrote:
  eval  JPEG H W RESIZE OUT                       Resize(RESIZE) + CenterCrop((H, W))
  ident JPEG H W OUT                              no resize (the image is H x W)
  train JPEG H W SEED FLIP I J BH BW OUT          RandomResizedCrop((H, W)) + flip
OUT holds 3*H*W float32 (CHW) normalised with ImageNet's mean and std. For train lines the
random draws come from eigenbatch's stream (splitmix64 from SEED, as core/rt/rt_rng.c), fed to
torchvision's own RandomResizedCrop.get_params, whose box must equal (I, J, BH, BW). Pixels must
agree within TOL levels of 255 after resizing, and exactly (bit for bit) without resizing.
Prints one line per kind with the largest difference; exits 1 on any mismatch."""
import struct
import sys

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
import torchvision.transforms.transforms as TT
from PIL import Image

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TOL = 2.0  # levels of 255: Pillow's and eigenbatch's fixed-point resamplers may round apart
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


class Stream:
    """eigenbatch's rt_rng: splitmix64 from a state."""

    def __init__(self, state):
        self.state = state

    def next(self):
        self.state = (self.state + GOLDEN) & MASK
        z = (self.state + GOLDEN) & MASK  # rt_rng_mix adds the increment once more
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)


class TorchShim:
    """torch as get_params sees it, with the random draws taken from a Stream."""

    def __init__(self, stream):
        self.s = stream

    def __getattr__(self, name):
        return getattr(torch, name)

    def empty(self, *size):
        s = self.s

        class Draw:
            def uniform_(self, a, b):
                a, b = float(a), float(b)
                return torch.tensor([a + (b - a) * s.uniform()])

        return Draw()

    def randint(self, lo, hi, size):
        return torch.tensor([lo + self.s.next() % (hi - lo)])


def load(path, n):
    with open(path, "rb") as f:
        return torch.tensor(struct.unpack("%df" % n, f.read()))


def main():
    norm = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    std = torch.tensor(STD).view(3, 1, 1)
    worst = {}
    bad = 0
    for line in open(sys.argv[1]):
        t = line.split()
        kind, path, h, w = t[0], t[1], int(t[2]), int(t[3])
        img = Image.open(path).convert("RGB")
        if kind == "eval":
            want = T.Compose([T.Resize(int(t[4])), T.CenterCrop((h, w))])(img)
        elif kind == "ident":
            want = img
        else:
            seed, flip, box = int(t[4]), int(t[5]), tuple(int(v) for v in t[6:10])
            s = Stream(seed)
            flipped = bool(s.next() & 1) if flip else False
            real = TT.torch
            TT.torch = TorchShim(s)
            try:
                got = T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
            finally:
                TT.torch = real
            if tuple(got) != box:
                print("BOX MISMATCH %s seed %d: torchvision %s, eigenbatch %s" % (path, seed, got, box))
                bad += 1
            want = F.resized_crop(img, *got, (h, w))
            if flipped:
                want = F.hflip(want)
        want = norm(want)
        ours = load(t[-1], 3 * h * w).view(3, h, w)
        diff = ((ours - want).abs() * std * 255).max().item()
        exact = torch.equal(ours, want)
        worst[kind] = max(worst.get(kind, 0.0), diff)
        if (kind == "ident" and not exact) or diff > TOL:
            print("MISMATCH %s %s: %.3f levels (exact %s)" % (kind, path, diff, exact))
            bad += 1
    for k in sorted(worst):
        print("%s: largest difference %.3f levels of 255" % (k, worst[k]))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
