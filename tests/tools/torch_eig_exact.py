#!/usr/bin/python3
"""torch_eig_exact: reference top Hessian eigenvalues of a zoo model, for test_eig_trained.

Independent of eigenbatch's products and iterations: PyTorch's double-backpropagation
Hessian-vector products in float64, and Lanczos with full reorthogonalisation (twice) in float64,
run until each of the top K Ritz values has relative residual beta_j |s_j| / |theta| <= --tol (or
the Krylov space is exhausted, which makes them exact). The Hessian is that of the mean
cross-entropy over the first N images of an idx file pair (pixel / 255, as `eigenbatch eig
--first N` reads them from the converted LMDB), BatchNorm in eval mode: the full one and the block
of the last --block parameter layers (a Linear or Conv2d with its bias, a BatchNorm's weight and
bias: one layer each, as eigenbatch counts them). Prints one JSON line:
{"full": [...], "block": [...], "full_steps": j, "block_steps": j, "params": P}.

    torch_eig_exact.py --model cnn --weights W.safetensors --images IMG.gz --labels LAB.gz \\
                       --n 32 --top 3 --block 2
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np
import torch

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")
sys.path.insert(0, BENCH)
import safetensors_io  # noqa: E402
import torch_zoo  # noqa: E402


def read_idx(path, n):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)[:n]


def layer_groups(model):
    """Parameters grouped by layer, in model order (a module's direct parameters form a layer)."""
    groups = []
    for mod in model.modules():
        own = [p for _, p in mod.named_parameters(recurse=False)]
        if own:
            groups.append(own)
    return groups


def lanczos_top(hvp, n, top, tol, max_steps, seed):
    """Top `top` eigenvalues of the operator hvp on R^n (float64), with full reorthogonalisation."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=gen, dtype=torch.float64)
    basis = [v / torch.norm(v)]
    alphas, betas = [], []
    theta = None
    for j in range(min(max_steps, n)):
        w = hvp(basis[j])
        alphas.append(float(torch.dot(basis[j], w)))
        for _ in range(2):
            q = torch.stack(basis)
            w = w - q.T @ (q @ w)
        beta = float(torch.norm(w))
        m = j + 1
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        for i in range(m - 1):
            t[i, i + 1] = t[i + 1, i] = betas[i]
        evals, evecs = torch.linalg.eigh(t)
        k = min(top, m)
        theta = evals.flip(0)[:k]
        last = evecs[-1, :].flip(0)[:k]
        res = (beta * last.abs()) / theta.abs().clamp_min(1e-300)
        if m >= top and (bool((res <= tol).all()) or beta <= 1e-12 * float(theta.abs().max())):
            return [float(x) for x in theta], m
        betas.append(beta)
        basis.append(w / beta)
    return [float(x) for x in theta], len(alphas)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=torch_zoo.MODELS)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--block", type=int, default=2)
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    img = read_idx(a.images, a.n)
    lab = read_idx(a.labels, a.n)
    x = torch.from_numpy(img.astype(np.float64) / 255.0).reshape(a.n, 1, img.shape[1],
                                                                   img.shape[2])
    y = torch.from_numpy(lab.astype(np.int64))
    model = torch_zoo.build(a.model, 1, img.shape[1], img.shape[2], a.classes)
    model.load_state_dict(safetensors_io.load_torch(a.weights), strict=True)
    model = model.double().eval()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    groups = layer_groups(model)
    out = {"params": sum(p.numel() for g in groups for p in g)}
    for name, params in (("full", [p for g in groups for p in g]),
                         ("block", [p for g in groups[-a.block:] for p in g])):
        grads = torch.autograd.grad(loss, params, create_graph=True)

        def hvp(v, params=params, grads=grads):
            parts, k = [], 0
            for p in params:
                parts.append(v[k:k + p.numel()].view_as(p))
                k += p.numel()
            hv = torch.autograd.grad(grads, params, grad_outputs=parts, retain_graph=True)
            return torch.cat([t.reshape(-1) for t in hv])

        size = sum(p.numel() for p in params)
        vals, steps = lanczos_top(hvp, size, a.top, a.tol, a.max_steps, a.seed)
        out[name], out[name + "_steps"] = vals, steps
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
