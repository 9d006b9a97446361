#!/usr/bin/python3
"""PIL baseline for the loader benchmark: decode each JPEG (held in memory, as the loader's records
sit in the LMDB map) and take a random-resized crop to 224x224 (torchvision's RandomResizedCrop
parameters, bilinear resize of the box) with a random horizontal flip, on one thread.
Prints images per CPU-second twice: decode+crop+flip to a uint8 image, and the same plus the
conversion to a float32 CHW array /255 (what eigenbatch's loader outputs). When torchvision imports,
also torchvision's ImageNet training pipeline on the same bytes: PIL decode, RandomResizedCrop(224),
RandomHorizontalFlip, ToTensor, Normalize(ImageNet's mean and std) (torch on one thread).

With `torchvision-eval`: torchvision's ImageNet evaluation pipeline alone: PIL decode, Resize(256),
CenterCrop(224), ToTensor, Normalize.

usage: pil_loader.py JPEG_DIR SAMPLES [torchvision | torchvision-eval]"""
import io
import math
import os
import random
import sys
import time

import numpy as np
from PIL import Image

OUT = 224
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def rrc_box(rng, w, h):
    area = w * h
    lr = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        ar = math.exp(rng.uniform(*lr))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            y, x = rng.randint(0, h - ch), rng.randint(0, w - cw)
            return x, y, x + cw, y + ch
    return 0, 0, w, h


def run(blobs, samples, to_float):
    rng = random.Random(1)
    t0 = time.process_time()
    for i in range(samples):
        img = Image.open(io.BytesIO(blobs[i % len(blobs)])).convert("RGB")
        box = rrc_box(rng, *img.size)
        img = img.resize((OUT, OUT), Image.BILINEAR, box=box)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if to_float:
            np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return samples / (time.process_time() - t0)


def run_torchvision(blobs, samples):
    """torchvision's ImageNet training transform (its reference training script's), one thread."""
    import torch
    import torchvision.transforms as T
    torch.set_num_threads(1)
    torch.manual_seed(1)
    tf = T.Compose([T.RandomResizedCrop(OUT), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    t0 = time.process_time()
    for i in range(samples):
        tf(Image.open(io.BytesIO(blobs[i % len(blobs)])).convert("RGB"))
    return samples / (time.process_time() - t0)


def run_torchvision_eval(blobs, samples):
    """torchvision's ImageNet evaluation transform (its reference script's), one thread."""
    import torch
    import torchvision.transforms as T
    torch.set_num_threads(1)
    tf = T.Compose([T.Resize(256), T.CenterCrop(OUT), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    t0 = time.process_time()
    for i in range(samples):
        tf(Image.open(io.BytesIO(blobs[i % len(blobs)])).convert("RGB"))
    return samples / (time.process_time() - t0)


def main():
    root, samples = sys.argv[1], int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else ""
    tv_only = mode in ("torchvision", "torchvision-eval")
    blobs = []
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.lower().endswith((".jpg", ".jpeg")):
                with open(os.path.join(d, f), "rb") as fh:
                    blobs.append(fh.read())
    if not tv_only:
        run(blobs, min(50, samples), False)  # warm-up
        a = run(blobs, samples, False)
        b = run(blobs, samples, True)
        print("pil %s: %d images, decode+rrc224+flip: %.0f images per CPU-second; "
              "with float32 CHW /255: %.0f images per CPU-second (PIL %s)"
              % (root, samples, a, b, Image.__version__))
    try:
        import torchvision
    except ImportError:
        return
    if mode == "torchvision-eval":
        run_torchvision_eval(blobs, min(50, samples))  # warm-up
        c = run_torchvision_eval(blobs, samples)
        print("torchvision %s: %d images, Resize(256)+CenterCrop(224)+ToTensor+Normalize: "
              "%.0f images per CPU-second (torchvision %s)"
              % (root, samples, c, torchvision.__version__))
        return
    run_torchvision(blobs, min(50, samples))  # warm-up
    c = run_torchvision(blobs, samples)
    print("torchvision %s: %d images, RandomResizedCrop(224)+flip+ToTensor+Normalize: "
          "%.0f images per CPU-second (torchvision %s)" % (root, samples, c, torchvision.__version__))


if __name__ == "__main__":
    main()
