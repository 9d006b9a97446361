#!/usr/bin/python3
"""paper_report.py: table and figures of the paper comparison from the committed raw metrics.

    /usr/bin/python3 bench/paper_report.py [--runs-dir bench/results/paper]
        [--fig-dir bench/results] [--md bench/RESULTS.md] [--title TEXT]

Reads RUNS_DIR/<run>/metrics.jsonl (written by bench/paper_compare.sh; runs <method>-<max batch>)
and, without retraining:
  - prints and writes the table of the paper's Tables 4-7: method, max batch, final test accuracy,
    its difference to BL-128, number of SGD updates and the ratio to BL-128's, final batch and lr;
  - draws with gnuplot (no matplotlib in Debian's python here) FIG_DIR/paper_acc_epoch.png and
    FIG_DIR/paper_acc_updates.png (test accuracy against epoch and against updates, one panel per
    max batch, BL-128 in both) and FIG_DIR/paper_schedule.png (ABS/ABSA: batch, lr and the top
    Hessian eigenvalue against epoch);
  - when RUNS_DIR/investigate/<variant>/abs-2048/metrics.jsonl exist (bench/abs_investigate.sh),
    adds the investigation table (one row per variant of ABS-2048) and
    FIG_DIR/paper_investigate.png (eigenvalue, eigenvalue / lambda_ref and the norm of the
    convolution kernels against epoch, one line per variant);
  - replaces the section between the markers below in MD (appended when missing), leaving the
    rest of the file as it is; RUNS_DIR/NOTES.md (hand-written: timings, findings, causes of
    claims that fail) is copied into the section after the table.

The number of updates is the step counter at the end of the last epoch ("step" of the last epoch
event): one update per global batch. The final accuracy is the last epoch's test accuracy.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

METHODS = ["bl", "fb", "gg", "abs", "absa"]
RUN_VARIANTS = ["bntrain"]  # run-name suffixes of ABS/ABSA variants (e.g. abs-2048-bntrain)
ORDER = ["bl-128"] + ["%s-%d%s" % (m, b, v) for b in (2048, 8192) for m in METHODS
                      for v in [""] + (["-" + x for x in RUN_VARIANTS] if m in ("abs", "absa")
                                       else [])]


def markers(key):
    """The comment lines around the generated section (one pair per --section key)."""
    tag = "paper-compare" + ("-" + key if key else "")
    return ("<!-- %s:begin (bench/paper_report.py rewrites this section) -->" % tag,
            "<!-- %s:end -->" % tag)


def split_name(name):
    """abs-2048-bntrain -> ("abs", 2048, "bntrain"); bl-128 -> ("bl", 128, "")."""
    parts = name.split("-")
    return parts[0], int(parts[1]), "-".join(parts[2:])


def load_run(path):
    """Epoch and eig events of one metrics.jsonl (bad lines are reported and skipped)."""
    epochs, eigs = {}, []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
            except ValueError as e:
                print("%s:%d: not JSON (%s), skipped" % (path, n, e), file=sys.stderr)
                continue
            ev = o.get("event")
            if ev == "epoch":
                epochs[int(o["epoch"])] = o  # a repeated epoch keeps the last one
            elif ev == "eig":
                eigs.append(o)
    return [epochs[k] for k in sorted(epochs)], eigs


def num(o, key):
    v = o.get(key)
    return float(v) if isinstance(v, (int, float)) else float("nan")


def fmt(v, spec):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def growths(eigs):
    """The batch increases of an ABS/ABSA run: (epoch that decided it, old B, new B, cause), the
    cause read from the rule's reason: "eigenvalue" (lambda <= lambda_ref / alpha), "timer"
    (kappa epochs without it) or "other"."""
    out = []
    for e in eigs:
        m = re.search(r"B (\d+) -> (\d+)", e.get("reason") or "")
        if not m or not e.get("changed", True):
            continue
        why = e.get("reason") or ""
        cause = ("eigenvalue" if re.search(r"lambda \S+ <= lambda_ref", why) else
                 "timer" if "kappa timer" in why else "other")
        out.append((int(e.get("epoch", -1)), int(m.group(1)), int(m.group(2)), cause))
    return out


def summarise(name, epochs, eigs):
    method, maxb, variant = split_name(name)
    last = epochs[-1]
    acc = [num(e, "test_accuracy") for e in epochs]
    measured = [e for e in eigs if isinstance(e.get("eigenvalue"), (int, float))]
    return {
        "run": name,
        "method": method.upper() + (" (%s)" % variant if variant else ""),
        "max_batch": maxb,
        "growths": growths(eigs) if method in ("abs", "absa") else [],
        "epochs": len(epochs),
        "acc": num(last, "test_accuracy"),
        "best": max((a for a in acc if not math.isnan(a)), default=float("nan")),
        "updates": int(last.get("step", 0)),
        "final_batch": int(last.get("batch_size", 0)),
        "final_lr": num(last, "lr"),
        "eig_measured": len(measured),
    }


def table(rows):
    base = next((r for r in rows if r["run"] == "bl-128"), None)
    out = ["| run | method | max batch | epochs | final test acc. | vs BL-128 | best | "
           "updates | updates vs BL-128 | final B | final lr | eig. measured |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        dacc = (r["acc"] - base["acc"]) * 100 if base else float("nan")
        ratio = base["updates"] / r["updates"] if base and r["updates"] else float("nan")
        out.append("| %s | %s | %d | %d | %s%% | %s | %s%% | %d | %s | %d | %s | %d |" % (
            r["run"], r["method"], r["max_batch"], r["epochs"], fmt(r["acc"] * 100, ".2f"),
            fmt(dacc, "+.2f"), fmt(r["best"] * 100, ".2f"), r["updates"],
            "1" if r["run"] == "bl-128" else
            "n/a" if math.isnan(ratio) else "1/%s" % fmt(ratio, ".1f"),
            r["final_batch"], fmt(r["final_lr"], ".4g"), r["eig_measured"]))
    return "\n".join(out)


def claims(rows):
    """The paper's shape, checked row by row (text lines for RESULTS.md)."""
    by = {r["run"]: r for r in rows}
    base = by.get("bl-128")
    if not base:
        return ["- BL-128 has no results yet: no claim can be checked."]
    lines = []
    for b in (2048, 8192):
        have = [m for m in METHODS if "%s-%d" % (m, b) in by]
        if not have:
            continue
        r = {m: by["%s-%d" % (m, b)] for m in have}
        d = {m: (r[m]["acc"] - base["acc"]) * 100 for m in have}
        if "bl" in r:
            lines.append("- B_max %d, BL degrades at large batch: %s (%+.2f%%)." % (
                b, "yes" if d["bl"] < -0.5 else "no", d["bl"]))
        if "fb" in r:
            lines.append("- B_max %d, FB degrades or diverges: %s (%+.2f%%)." % (
                b, "yes" if math.isnan(d["fb"]) or d["fb"] < -0.5 else "no", d["fb"]))
        if "gg" in r:
            lines.append("- B_max %d, GG keeps accuracy (within 0.5%%): %s (%+.2f%%, %d updates)." % (
                b, "yes" if d["gg"] >= -0.5 else "no", d["gg"], r["gg"]["updates"]))
        for m in ("abs", "absa") + tuple("%s-%s" % (a, v) for a in ("abs", "absa")
                                          for v in RUN_VARIANTS):
            key = "%s-%d" % (m.split("-")[0], b) + (m[m.index("-"):] if "-" in m else "")
            if key not in by:
                continue
            r[m] = by[key]
            d[m] = (r[m]["acc"] - base["acc"]) * 100
            ok_acc = d[m] >= -0.5
            ok_upd = r[m]["updates"] * 3 <= base["updates"]
            ok_gg = "gg" not in r or r[m]["updates"] < r["gg"]["updates"]
            lines.append(
                "- B_max %d, %s within 0.5%% of BL-128 with >= 3x fewer updates and fewer than GG: "
                "%s (%+.2f%%, %d updates = 1/%.1f of BL-128%s)." % (
                    b, m.upper(), "yes" if ok_acc and ok_upd and ok_gg else "no", d[m],
                    r[m]["updates"], base["updates"] / max(1, r[m]["updates"]),
                    ", GG %d" % r["gg"]["updates"] if "gg" in r else
                    "; GG not run yet, so that part is unchecked"))
    return lines


def growth_lines(rows):
    """For each ABS/ABSA run: its batch increases and what caused each (text lines)."""
    lines = []
    for r in rows:
        if not r["growths"]:
            continue
        g = r["growths"]
        n_eig = sum(1 for x in g if x[3] == "eigenvalue")
        lines.append("- %s: %d increases, %d from the eigenvalue, %d from the kappa timer: %s." % (
            r["run"], len(g), n_eig, sum(1 for x in g if x[3] == "timer"),
            ", ".join("epoch %d B %d -> %d (%s)" % (e + 1, a, b, c) for e, a, b, c in g)))
    return lines


def gnuplot(script, workdir):
    exe = shutil.which("gnuplot")
    if not exe:
        print("paper_report.py: gnuplot not found: figures skipped", file=sys.stderr)
        return False
    p = subprocess.run([exe], input=script, text=True, cwd=workdir, capture_output=True)
    if p.returncode != 0:
        print("paper_report.py: gnuplot failed: %s" % p.stderr.strip(), file=sys.stderr)
        return False
    return True


def terminal():
    exe = shutil.which("gnuplot")
    if not exe:
        return "png"
    p = subprocess.run([exe, "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" if "pngcairo" in (p.stdout + p.stderr) else "png"


def figures(data, fig_dir):
    """data: run -> (epochs, eigs). Returns the written PNG paths."""
    os.makedirs(fig_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="paper_report.")
    written = []
    try:
        for run, (epochs, _) in data.items():
            with open(os.path.join(tmp, run + ".dat"), "w") as f:
                for e in epochs:
                    f.write("%d %d %.6g %d %.6g\n" % (
                        int(e["epoch"]) + 1, int(e.get("step", 0)), num(e, "test_accuracy") * 100,
                        int(e.get("batch_size", 0)), num(e, "lr")))
        term = terminal()
        for kind, xcol, xlabel, logx in (("epoch", 1, "epoch", False),
                                         ("updates", 2, "SGD updates", True)):
            png = os.path.abspath(os.path.join(fig_dir, "paper_acc_%s.png" % kind))
            s = ["set terminal %s size 1200,500" % term, "set output '%s'" % png,
                 "set multiplot layout 1,2", "set key bottom right", "set grid",
                 "set ylabel 'test accuracy (%)'", "set xlabel '%s'" % xlabel]
            if logx:
                s.append("set logscale x")
            for b in (2048, 8192):
                runs = [r for r in ORDER if r in data and (r == "bl-128" or split_name(r)[1] == b)]
                s.append("set title 'Fashion-MNIST, cnn, max batch %d'" % b)
                if not runs:
                    s.append("plot 0 notitle")
                    continue
                s.append("plot " + ", ".join("'%s.dat' using %d:3 with linespoints title '%s'" % (
                    r, xcol, r.upper()) for r in runs))
            s.append("unset multiplot")
            if gnuplot("\n".join(s) + "\n", tmp):
                written.append(png)
        sched = [r for r in ORDER if r in data and r.split("-")[0] in ("abs", "absa")]
        if sched:
            for r in sched:
                # epoch e (0-based) spans [e, e + 1) of the x axis; a closing row at E lets
                # "steps" draw the last epoch too
                epochs = data[r][0]
                with open(os.path.join(tmp, r + ".sched"), "w") as f:
                    for i, e in enumerate(epochs + [epochs[-1]]):
                        x = int(e["epoch"]) + (1 if i == len(epochs) else 0)
                        f.write("%d %d %.6g\n" % (x, int(e.get("batch_size", 0)), num(e, "lr")))
                # a measurement at the end of epoch e is drawn at x = e + 1
                with open(os.path.join(tmp, r + ".eig"), "w") as f:
                    for e in data[r][1]:
                        if isinstance(e.get("eigenvalue"), (int, float)):
                            f.write("%d %.6g\n" % (int(e["epoch"]) + 1, e["eigenvalue"]))
            png = os.path.abspath(os.path.join(fig_dir, "paper_schedule.png"))
            s = ["set terminal %s size 1500,450" % term, "set output '%s'" % png,
                 "set multiplot layout 1,3", "set key top left", "set grid", "set xlabel 'epoch'",
                 "set xrange [0:%d]" % max(len(data[r][0]) for r in sched),
                 "set xtics %d" % max(1, max(len(data[r][0]) for r in sched) // 10),
                 "set offsets 0, 0, graph 0.05, graph 0.05",
                 "set title 'batch size'", "set logscale y 2", "set ylabel 'B'",
                 "plot " + ", ".join("'%s.sched' using 1:2 with steps title '%s'" % (r, r.upper())
                                     for r in sched),
                 "set title 'learning rate'", "set logscale y 10", "set ylabel 'lr'",
                 "plot " + ", ".join("'%s.sched' using 1:3 with steps title '%s'" % (r, r.upper())
                                     for r in sched),
                 "set title 'top Hessian eigenvalue (end of epoch)'", "set ylabel 'lambda'",
                 "set key top right"]
            eig_runs = [r for r in sched if os.path.getsize(os.path.join(tmp, r + ".eig")) > 0]
            if eig_runs:
                s.append("plot " + ", ".join("'%s.eig' using 1:2 with linespoints title '%s'" % (
                    r, r.upper()) for r in eig_runs))
            else:
                s.append("plot 0 notitle")
            s.append("unset multiplot")
            if gnuplot("\n".join(s) + "\n", tmp):
                written.append(png)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


VARIANTS = [("base", "none (the table's ABS-2048 again)"),
            ("wd0", "weight decay 0 (HessianFlow's train.py) instead of 5e-4"),
            ("bn-train", "Hessian with BatchNorm in train mode"),
            ("hb-1024", "Hessian batch 1024 instead of 128"),
            ("no-decay", "no step decay of the lr"),
            ("e60", "60 epochs (decay at 30, 45) instead of 20")]


def load_variants(inv_dir):
    """(variant, run) -> (epochs, eigs) of INV_DIR/<variant>/<run>/metrics.jsonl, in VARIANTS
    order, then ORDER."""
    out = {}
    for v, _ in VARIANTS:
        for run in ORDER:
            path = os.path.join(inv_dir, v, run, "metrics.jsonl")
            if os.path.isfile(path):
                epochs, eigs = load_run(path)
                if epochs:
                    out[(v, run)] = (epochs, eigs)
    return out


def ratio_pairs(eigs):
    """(lambda, lambda_ref in force before it) of every measurement after the first one: the
    rule compares the two, and a measurement that triggers an increase becomes the new ref."""
    out, ref = [], None
    for e in eigs:
        lam = e.get("eigenvalue")
        if isinstance(lam, (int, float)) and ref is not None:
            out.append((float(lam), ref))
        if isinstance(e.get("lambda_ref"), (int, float)):
            ref = float(e["lambda_ref"])
    return out


def investigation_table(vdata):
    out = ["| variant | change | run | epochs | final test acc. | updates "
           "| batch increases (end of epoch: cause) "
           "| lambda, epochs 1-10 (min-max) | lambda, last 5 epochs (min-max) "
           "| min lambda / lambda_ref | conv kernel norm, first -> last |",
           "|---|---|---|---:|---:|---:|---|---|---|---:|---|"]
    change = dict(VARIANTS)
    for (v, run), (epochs, eigs) in vdata.items():
        last = epochs[-1]
        grows = ["%d: %s" % (int(e["epoch"]) + 1,
                             "kappa" if "kappa" in e.get("reason", "") else "lambda")
                 for e in eigs if e.get("changed")]
        lam = [(int(e["epoch"]), float(e["eigenvalue"])) for e in eigs
               if isinstance(e.get("eigenvalue"), (int, float))]
        early = [x for ep, x in lam if ep < 10]
        late = [x for ep, x in lam if ep >= len(epochs) - 5]
        ratios = [x / r for x, r in ratio_pairs(eigs) if r > 0]
        norms = [num(e, "conv_weight_norm") for e in eigs]
        norms = [x for x in norms if not math.isnan(x)]

        def rng(xs):
            return "%.1f - %.1f" % (min(xs), max(xs)) if xs else "n/a"
        out.append("| %s | %s | %s | %d | %s%% | %d | %s | %s | %s | %s | %s |" % (
            v, change.get(v, ""), run, len(epochs), fmt(num(last, "test_accuracy") * 100, ".2f"),
            int(last.get("step", 0)), ", ".join(grows) or "none" if eigs else "n/a",
            rng(early), rng(late),
            fmt(min(ratios) if ratios else float("nan"), ".3f"),
            "%.2f -> %.2f" % (norms[0], norms[-1]) if norms else "n/a"))
    return "\n".join(out)


def timer_only_updates(epochs, samples, b0, bmax, kappa=10, beta=2):
    """SGD updates of ABS when only the kappa timer grows the batch (no eigenvalue trigger):
    B starts at b0 and is multiplied by beta after every kappa epochs, up to bmax; an epoch of
    `samples` samples at batch B takes ceil(samples / B) updates (the last batch may be short)."""
    total, b = 0, b0
    for e in range(epochs):
        total += -(-samples // b)
        if (e + 1) % kappa == 0:
            b = min(b * beta, bmax)
    return total


def investigation_pairs(vdata):
    """Lines comparing ABS-2048 with BL-128 of the same variant (same number of epochs)."""
    lines = []
    for v, _ in VARIANTS:
        a, b = vdata.get((v, "abs-2048")), vdata.get((v, "bl-128"))
        if not a or not b:
            continue
        la, lb = a[0][-1], b[0][-1]
        ua, ub = int(la.get("step", 0)), int(lb.get("step", 0))
        d = (num(la, "test_accuracy") - num(lb, "test_accuracy")) * 100
        # samples per epoch from BL-128's first epoch: updates x 128 is within one batch of it
        n = int(b[0][0].get("step", 0)) * 128
        t = timer_only_updates(len(a[0]), n, 128, 2048)
        lines.append("- %s, %d epochs: ABS-2048 %s%% with %d updates against BL-128 %s%% with %d:"
                     " %+.2f%%, 1/%.2f of the updates (the kappa timer alone: %d updates,"
                     " 1/%.2f)." % (
                         v, len(a[0]), fmt(num(la, "test_accuracy") * 100, ".2f"), ua,
                         fmt(num(lb, "test_accuracy") * 100, ".2f"), ub, d, ub / max(1, ua),
                         t, ub / max(1, t)))
    return lines


def investigation_figure(vdata, fig_dir):
    tmp = tempfile.mkdtemp(prefix="paper_report.")
    try:
        have_norm = False
        names = []
        for (v, run), (_, eigs) in vdata.items():
            if not any(isinstance(e.get("eigenvalue"), (int, float)) for e in eigs):
                continue
            name = v if run == "abs-2048" else "%s-%s" % (v, run)
            names.append(name)
            with open(os.path.join(tmp, name + ".dat"), "w") as f:
                ref = float("nan")
                for e in eigs:
                    lam = e.get("eigenvalue")
                    prev, ref = ref, num(e, "lambda_ref")
                    if not isinstance(lam, (int, float)):
                        continue
                    ref_before = prev if not math.isnan(prev) else ref
                    cn = num(e, "conv_weight_norm")
                    have_norm |= not math.isnan(cn)
                    ratio = lam / ref_before if ref_before > 0 else float("nan")
                    f.write("%d %.6g %.6g %s\n" % (int(e["epoch"]) + 1, lam, ratio,
                                                   "NaN" if math.isnan(cn) else "%.6g" % cn))
        png = os.path.abspath(os.path.join(fig_dir, "paper_investigate.png"))
        plot = lambda col: "plot " + ", ".join(
            "'%s.dat' using 1:%d with linespoints title '%s'" % (n, col, n) for n in names)
        s = ["set terminal %s size 1500,450" % terminal(), "set output '%s'" % png,
             "set multiplot layout 1,3", "set grid", "set xlabel 'epoch'", "set key top left",
             "set title 'ABS-2048 variants: top Hessian eigenvalue'", "set ylabel 'lambda'",
             plot(2),
             "set title 'lambda / lambda_{ref} (the rule grows B at <= 0.5)'",
             "set ylabel 'ratio'", "set arrow from graph 0, first 0.5 to graph 1, first 0.5 nohead dt 2",
             plot(3), "unset arrow",
             "set title 'L2 norm of the conv kernels (they feed BatchNorms)'",
             "set ylabel 'norm'", plot(4) if have_norm else "plot 0 notitle",
             "unset multiplot"]
        return png if gnuplot("\n".join(s) + "\n", tmp) else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def update_md(md, section, key=""):
    begin, end = markers(key)
    text = open(md).read() if os.path.exists(md) else ""
    block = begin + "\n" + section.rstrip() + "\n" + end
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"
    with open(md + ".tmp", "w") as f:
        f.write(text)
    os.replace(md + ".tmp", md)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs-dir", default="bench/results/paper")
    ap.add_argument("--fig-dir", default="bench/results")
    ap.add_argument("--md", default="bench/RESULTS.md")
    ap.add_argument("--title", default="## Paper comparison (Fashion-MNIST)")
    ap.add_argument("--section", default="",
                    help="key of the generated section's markers, so that several comparisons"
                    " (e.g. e90) each keep a section of MD (default: the 20-epoch one's)")
    ap.add_argument("--notes", default=None,
                    help="markdown file whose text goes into the section after the table"
                    " (default: RUNS_DIR/NOTES.md when it exists)")
    a = ap.parse_args()
    if a.notes is None and os.path.isfile(os.path.join(a.runs_dir, "NOTES.md")):
        a.notes = os.path.join(a.runs_dir, "NOTES.md")

    data, rows = {}, []
    names = sorted(os.listdir(a.runs_dir)) if os.path.isdir(a.runs_dir) else []
    for run in sorted(names, key=lambda r: ORDER.index(r) if r in ORDER else len(ORDER)):
        path = os.path.join(a.runs_dir, run, "metrics.jsonl")
        if not os.path.isfile(path):
            continue
        if run not in ORDER:
            print("paper_report.py: %s: not a run name of paper_compare.sh, skipped" % run,
                  file=sys.stderr)
            continue
        epochs, eigs = load_run(path)
        if not epochs:
            print("paper_report.py: %s: no epoch events, skipped" % path, file=sys.stderr)
            continue
        data[run] = (epochs, eigs)
        rows.append(summarise(run, epochs, eigs))

    md_dir = os.path.dirname(os.path.abspath(a.md))
    lines = [a.title, ""]
    if not rows:
        lines.append("No runs in `%s` yet: run `bench/paper_compare.sh` (see its header)." %
                     a.runs_dir)
        lines.append("")
    else:
        ep = sorted({r["epochs"] for r in rows})
        lines += [
            "Generated by `bench/paper_report.py` from the raw metrics in `%s/<run>/metrics.jsonl`"
            " (written by `bench/paper_compare.sh`); re-running the script rewrites this section"
            " only." % os.path.relpath(os.path.abspath(a.runs_dir), md_dir),
            "",
            "Model cnn, Fashion-MNIST, %s epochs, 2 shards, 2 workers, eigen service on for"
            " ABS/ABSA (decisions sync); the same configs/*.yaml hyper-parameters for every"
            " method. Updates = SGD steps (one per global batch); accuracy = test accuracy after"
            " the last epoch." % "/".join(str(e) for e in ep),
            "", table(rows), ""]
        figs = figures(data, a.fig_dir)
        for f in figs:
            rel = os.path.relpath(f, md_dir)
            lines.append("![%s](%s)" % (os.path.basename(f), rel))
        if figs:
            lines.append("")
        lines += ["Paper's shape, as measured (thresholds of the issue: 0.5% accuracy, 3x"
                  " fewer updates):", ""] + claims(rows) + [""]
        grown = growth_lines(rows)
        if grown:
            lines += ["Batch increases of the ABS/ABSA runs (epoch that decided each, 1-based),"
                      " with their cause from the rule's reason:", ""] + grown + [""]
        vdata = load_variants(os.path.join(a.runs_dir, "investigate"))
        if vdata:
            lines += ["### Why ABS grows less: ABS-2048 with one thing changed", "",
                      "Generated from `%s/investigate/<variant>/abs-2048/metrics.jsonl` (written by"
                      " `bench/abs_investigate.sh`); same run as the table's ABS-2048 otherwise."
                      " Batch increases are listed at the end of the epoch that decided them"
                      " (1-based); min lambda / lambda_ref is the closest any measurement came to"
                      " the rule's threshold 0.5." % os.path.relpath(os.path.abspath(a.runs_dir),
                                                                    md_dir),
                      "", investigation_table(vdata), ""] + investigation_pairs(vdata) + [""]
            png = investigation_figure(vdata, a.fig_dir)
            if png:
                lines += ["![%s](%s)" % (os.path.basename(png), os.path.relpath(png, md_dir)), ""]
    if a.notes:
        lines += [open(a.notes).read().rstrip(), ""]
    section = "\n".join(lines)
    print(section)
    update_md(a.md, section, a.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
