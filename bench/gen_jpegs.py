#!/usr/bin/python3
"""Write N synthetic 500x375 photographs-like JPEGs (smooth colour fields, edges and noise, quality
90) into OUT/class_K/ folders, for the loader benchmark: gen_jpegs.py OUT N [CLASSES]."""
import os
import sys

import numpy as np
from PIL import Image

W, H, QUALITY = 500, 375, 90


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    classes = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    for i in range(n):
        k = i % classes
        d = os.path.join(out, "class_%02d" % k)
        os.makedirs(d, exist_ok=True)
        f = rng.uniform(0.005, 0.05, size=(3, 2))
        ph = rng.uniform(0, 6.3, size=(3,))
        img = np.empty((H, W, 3), np.float32)
        for c in range(3):
            img[..., c] = 128 + 90 * np.sin(f[c, 0] * xx + f[c, 1] * yy + ph[c])
        # a few rectangles for edges, then sensor-like noise
        for _ in range(6):
            x0, y0 = rng.integers(0, W - 50), rng.integers(0, H - 50)
            dy, dx = rng.integers(20, 150), rng.integers(20, 150)
            img[y0:y0 + dy, x0:x0 + dx] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 8, size=img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            os.path.join(d, "img_%06d.jpg" % i), quality=QUALITY)


if __name__ == "__main__":
    main()
