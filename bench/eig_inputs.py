#!/usr/bin/python3
"""eig_inputs: weights and a Hessian batch for comparing `eigenbatch eig` with torch_ref.py.

Writes, for each model named: OUT/MODEL.safetensors (PyTorch default init under --seed, state_dict
names, as eigenbatch reads them) and OUT/MODEL_in.safetensors holding "x" (the first --n training
images of Fashion-MNIST, pixel / 255: what `eigenbatch eig --first N` reads from the LMDB made by
`eigenbatch convert fashion-mnist`), "labels" and a direction "v" that torch_ref.py requires.

    eig_inputs.py --idx-dir /usr/share/datasets/fashion-mnist --out DIR --n 128 cnn resnet20
"""
import argparse
import gzip
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
import torch_zoo  # noqa: E402


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idx-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("models", nargs="+", choices=torch_zoo.MODELS)
    a = ap.parse_args(argv)
    img = read_idx(os.path.join(a.idx_dir, "train-images-idx3-ubyte.gz"))[:a.n]
    lab = read_idx(os.path.join(a.idx_dir, "train-labels-idx1-ubyte.gz"))[:a.n]
    x = (img.astype(np.float32) / 255.0).reshape(a.n, 1, 28, 28)
    for m in a.models:
        torch.manual_seed(a.seed)
        model = torch_zoo.build(m, 1, 28, 28, 10)
        state = {k: v for k, v in model.state_dict().items()}
        safetensors_io.save(os.path.join(a.out, m + ".safetensors"), state, {"format": "pt"})
        v = np.random.default_rng(a.seed).standard_normal(torch_zoo.param_count(model))
        safetensors_io.save(os.path.join(a.out, m + "_in.safetensors"),
                            {"x": x, "labels": lab.astype(np.int32), "v": v.astype(np.float32)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
