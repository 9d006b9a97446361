#!/usr/bin/python3
"""torch_ref: PyTorch reference values for eigenbatch's parity tests.

Given a zoo model, weights and inputs as safetensors files, computes with PyTorch:
    logits  [n, classes]   forward pass
    loss    []             mean softmax cross-entropy
    grad    [P]            dL/dw, flat in parameter order (models.md)
    dx      [n, c, h, w]   dL/dx
    hv      [P]            H v, the Hessian-vector product by double backpropagation
                           (torch.autograd.grad with create_graph=True), for the direction v
    buffers [R]            BatchNorm running statistics after this one forward pass (in train
                           mode they have been updated once with momentum 0.1; in eval unchanged)
and optionally (--eig) the top Hessian eigenvalue by power iteration, the same algorithm as
eigenbatch's eigensvc/eig_power (after HessianFlow): v0 = seeded Gaussian (or the input's "v0"),
normalised; repeat Hv, lambda = v.Hv (Rayleigh quotient), v = Hv/|Hv| until
|lambda - lambda_prev| <= tol |lambda| or --eig-iters iterations:
    eig [] (F32), eig_iters [] (I32), eig_v [P], eig_seconds [] (F32: the iteration's wall time,
    after the forward and backward passes that every product reuses)
Results are written to --out as safetensors (F32).

Inputs file: "x" (F32, n x c x h x w), "labels" (I32, I64 or F32 holding integers, [n]),
"v" (F32, [P]) unless --direction names another file holding "v", optional "v0" (F32, [P]).
Weights file: the model's state_dict names (as eigenbatch writes them).
Dropout (alexnet): in train mode every Dropout draws eigenbatch's mask for the pass seed
--dropout-seed (default 0; torch_zoo.use_masks), the mask eigenbatch uses after
nn_net_set_seed(net, seed, 1); in eval mode dropout is the identity.

    torch_ref.py --model cnn --weights w.safetensors --input in.safetensors --bn eval \\
                 --out ref.safetensors [--classes 10] [--double]
                 [--eig --eig-iters 20 --eig-tol 1e-3 --eig-seed 0]
--double computes in float64 (a more exact reference than float32 PyTorch). Exit status 0 on
success, 2 on bad arguments or files.
"""
import argparse
import time
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
import torch_zoo  # noqa: E402


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vec, like):
    out, k = [], 0
    for p in like:
        out.append(vec[k:k + p.numel()].view_as(p))
        k += p.numel()
    return out


def infer_classes(state):
    """Class count from the last Linear layer's bias in the weights."""
    for name in ("f3.bias", "f2.bias", "fc.bias", "classifier.6.bias"):
        if name in state:
            return int(state[name].shape[0])
    raise ValueError("cannot infer the class count from the weights; give --classes")


def power_iteration(params, grads, v0, iters, tol):
    """Top eigenvalue of the Hessian by power iteration on double-backprop HVPs."""
    v = v0 / torch.norm(v0)
    lam_prev = None
    lam = 0.0
    it = 0
    for it in range(1, iters + 1):
        hv = flat(torch.autograd.grad(grads, params, grad_outputs=unflat(v, params),
                                      retain_graph=True))
        lam = float(torch.dot(hv, v))
        v = hv / torch.norm(hv)
        if lam_prev is not None and abs(lam - lam_prev) <= tol * abs(lam):
            break
        lam_prev = lam
    return lam, it, v


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=torch_zoo.MODELS)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--direction", help="file holding 'v' (default: the input file)")
    ap.add_argument("--bn", choices=("eval", "train"), default="eval")
    ap.add_argument("--classes", type=int)
    ap.add_argument("--out", required=True)
    ap.add_argument("--double", action="store_true", help="compute in float64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dropout-seed", type=int, default=0,
                    help="pass seed of the dropout masks (train mode)")
    ap.add_argument("--eig", action="store_true", help="also run power iteration")
    ap.add_argument("--eig-iters", type=int, default=10)
    ap.add_argument("--eig-tol", type=float, default=1e-2)
    ap.add_argument("--eig-seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    dtype = torch.float64 if a.double else torch.float32

    try:
        state = safetensors_io.load_torch(a.weights)
        inp, _ = safetensors_io.load(a.input)
        dirs = inp if not a.direction else safetensors_io.load(a.direction)[0]
    except (OSError, ValueError, KeyError) as e:
        print("torch_ref: %s" % e, file=sys.stderr)
        return 2
    if "x" not in inp or "labels" not in inp or "v" not in dirs:
        print("torch_ref: the input needs tensors x and labels, and a direction v",
              file=sys.stderr)
        return 2
    x = torch.from_numpy(np.array(inp["x"])).to(dtype)
    labels = torch.from_numpy(np.array(inp["labels"]).astype(np.int64)).reshape(-1)
    if x.dim() != 4 or labels.numel() != x.shape[0]:
        print("torch_ref: x must be n x c x h x w with n labels", file=sys.stderr)
        return 2
    n, c, h, w = x.shape
    classes = a.classes or infer_classes(state)
    model = torch_zoo.build(a.model, c, h, w, classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        print("torch_ref: %s: %s" % (a.weights, e), file=sys.stderr)
        return 2
    model = torch_zoo.use_masks(model, a.dropout_seed).to(dtype)
    model.train(a.bn == "train")
    params = list(model.parameters())
    nparam = sum(p.numel() for p in params)
    v = torch.from_numpy(np.array(dirs["v"])).to(dtype).reshape(-1)
    if v.numel() != nparam:
        print("torch_ref: v has %d elements, the model %d parameters" % (v.numel(), nparam),
              file=sys.stderr)
        return 2

    x.requires_grad_(True)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    # Keep the graph of the first derivatives: the HVP differentiates g.v once more.
    g = torch.autograd.grad(loss, params + [x], create_graph=True)
    grads, dx = list(g[:-1]), g[-1]
    hv = torch.autograd.grad(grads, params, grad_outputs=unflat(v, params), retain_graph=True)
    buffers = [b for name, b in model.named_buffers() if not name.endswith("num_batches_tracked")]

    out = {
        "logits": logits.detach(),
        "loss": loss.detach(),
        "grad": flat(grads).detach(),
        "dx": dx.detach(),
        "hv": flat(hv).detach(),
        "buffers": flat(buffers).detach() if buffers else torch.zeros(0),
    }
    if a.eig:
        if "v0" in inp:
            v0 = torch.from_numpy(np.array(inp["v0"])).to(dtype).reshape(-1)
        else:
            gen = torch.Generator().manual_seed(a.eig_seed)
            v0 = torch.randn(nparam, generator=gen, dtype=torch.float64).to(dtype)
        t0 = time.perf_counter()
        lam, iters, vec = power_iteration(params, grads, v0, a.eig_iters, a.eig_tol)
        out["eig_seconds"] = torch.tensor(time.perf_counter() - t0)
        out["eig"] = torch.tensor(lam)
        out["eig_iters"] = torch.tensor(iters, dtype=torch.int32)
        out["eig_v"] = vec.detach()
    out = {k: (t.to(torch.float32) if t.is_floating_point() else t) for k, t in out.items()}
    safetensors_io.save(a.out, out, metadata={"model": a.model, "bn": a.bn,
                                              "dtype": "float64" if a.double else "float32"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
