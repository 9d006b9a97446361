#!/usr/bin/python3
"""bench_torch_train: PyTorch's side of `eigenbatch bench train`, on the same protocol.

Times K training steps (forward + backward + SGD with momentum 0.9 and weight decay 5e-4, BatchNorm
in train mode) and K Hessian-vector products by double backpropagation (forward, gradient with
create_graph=True, then the gradient of g.v; BatchNorm in eval mode) of a zoo model (torch_zoo.py)
on random data, after one untimed warm-up of each, on the CPU with torch.set_num_threads(T), or
with --device cuda on the GPU (fp32 eager, TF32 off as in eigenbatch; each timed step and HVP ends
with torch.cuda.synchronize()). On the GPU it also times the steps with the batch copied from host
memory inside each step (x.to(device) from a plain CPU tensor), as `eigenbatch bench train` does,
since its nets take their input from the host: step_host_s and images_per_s_host.
Prints, as its last line, one JSON object with the keys of `eigenbatch bench train`:
model, batch, threads, steps, input, classes, params, flops_per_image, images_per_s, step_s,
step_s_min, hvp_s, hvp_s_min, hvp_over_step, gflops, peak_rss_mib, step_cpu_s, hvp_cpu_s (plus impl and torch).

    bench_torch_train.py --model cnn --batch 128 --threads 1 [--steps 10] [--input 1x28x28]
                         [--classes 10] [--seed 1] [--device cpu|cuda]
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_zoo  # noqa: E402


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=torch_zoo.MODELS)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--input", default="1x28x28")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args(argv)
    try:
        c, h, w = (int(s) for s in a.input.split("x"))
    except ValueError:
        print("bench_torch_train: invalid --input '%s' (expected CxHxW)" % a.input,
              file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    if a.device == "cuda":
        if not torch.cuda.is_available():
            print("bench_torch_train: --device cuda but torch sees no GPU", file=sys.stderr)
            return 77
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    model = torch_zoo.build(a.model, c, h, w, a.classes).to(dev)
    params = list(model.parameters())
    nparam = sum(p.numel() for p in params)
    x = torch.rand(a.batch, c, h, w, device=dev)
    labels = torch.randint(0, a.classes, (a.batch,), device=dev)
    v = [torch.randn_like(p) for p in params]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.functional.cross_entropy
    print("bench_torch_train %s: %d parameters, batch %d, %d threads, torch %s" %
          (a.model, nparam, a.batch, a.threads, torch.__version__), file=sys.stderr)

    model.train()
    steps, steps_cpu = [], []
    for s in range(-1, a.steps):  # s = -1: warm-up, not timed
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()
        if a.device == "cuda":
            torch.cuda.synchronize()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if s >= 0:
            steps.append(dt)
            steps_cpu.append(dc)
            print("bench_torch_train %s: step %d/%d %.2f ms loss %.4f" %
                  (a.model, s + 1, a.steps, dt * 1e3, loss.item()), file=sys.stderr)

    host = []  # the same steps with the batch uploaded from host memory in each (GPU only)
    if a.device == "cuda":
        x_host = x.cpu()
        for s in range(-1, a.steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(model(x_host.to(dev)), labels)
            loss.backward()
            opt.step()
            torch.cuda.synchronize()
            if s >= 0:
                host.append(time.perf_counter() - t0)

    model.eval()
    hvps, hvps_cpu = [], []
    for s in range(-1, a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = loss_fn(model(x), labels)
        g = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(g, params, grad_outputs=v)
        hv[0].reshape(-1)[0].item()  # the result is materialised
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if s >= 0:
            hvps.append(dt)
            hvps_cpu.append(dc)
            print("bench_torch_train %s: hvp %d/%d %.2f ms" % (a.model, s + 1, a.steps, dt * 1e3),
                  file=sys.stderr)

    step_s = sum(steps) / len(steps)
    hvp_s = sum(hvps) / len(hvps)
    flops = torch_zoo.forward_flops(a.model, c, h, w, a.classes)
    print(json.dumps({
        "model": a.model, "batch": a.batch, "threads": a.threads, "steps": a.steps,
        "input": a.input, "classes": a.classes, "params": nparam, "flops_per_image": flops,
        "images_per_s": a.batch / step_s, "step_s": step_s, "step_s_min": min(steps),
        "hvp_s": hvp_s, "hvp_s_min": min(hvps), "hvp_over_step": hvp_s / step_s,
        # Training FLOPs: forward + input and weight gradients = 3 x forward (as eigenbatch).
        "gflops": 3.0 * flops * a.batch / step_s * 1e-9,
        "impl": "torch", "torch": torch.__version__, "device": a.device,
        **({"step_host_s": sum(host) / len(host),
            "images_per_s_host": a.batch * len(host) / sum(host)} if host else {}),
        # peak resident memory of the process (as eigenbatch's: getrusage's maxrss)
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        # process CPU seconds (all threads), as eigenbatch's step_cpu_s and hvp_cpu_s
        "step_cpu_s": sum(steps_cpu) / len(steps_cpu), "hvp_cpu_s": sum(hvps_cpu) / len(hvps_cpu),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
