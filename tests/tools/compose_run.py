#!/usr/bin/env python3
"""compose_run: deploy/'s compose files, checked without Docker.

  compose_run.py --validate --env ENV FILE...
      `docker-compose --env-file ENV -f FILE config -q` for each FILE (exit 77 when docker-compose
      is not installed: the caller skips).
  compose_run.py --run SERVICE,... --env ENV --binary BIN --workdir DIR FILE...
      Reads the compose files (python3-yaml), substitutes the ENV values as compose does (${V},
      ${V:-default}, ${V:?message}, $$), and starts each named service's command as a process
      of BIN: paths inside the container are mapped back through the service's volumes (host
      paths relative to the compose file's folder), its environment is added. While they run,
      each service's healthcheck (its CMD, run with BIN) must pass at least once. Exits 0 when
      every process exited 0 and every healthcheck passed, else 1 (with the failing logs).

Only services whose command starts with a role (server, worker, eigensvc) can be run.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROLES = ("server", "worker", "eigensvc")
RUN_TIMEOUT_S = 150     # the whole run
HEALTH_WINDOW_S = 30    # a service's healthcheck must pass within this time of its start
HEALTH_RETRY_S = 0.5


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env


VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def subst(value, env):
    """Compose's interpolation of one string."""
    def one(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        val = env.get(name)
        if op in (":-", "-"):
            return val if val or (op == "-" and val is not None) else arg
        if op in (":?", "?") and not val:
            raise SystemExit("compose_run: %s is not set: %s" % (name, arg))
        return val or ""
    return VAR.sub(one, value)


def interpolate(node, env):
    if isinstance(node, str):
        return subst(node, env)
    if isinstance(node, list):
        return [interpolate(x, env) for x in node]
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    return node


def load_services(files, env):
    import yaml  # python3-yaml
    services = {}
    for f in files:
        with open(f) as fh:
            doc = yaml.safe_load(fh)
        base = os.path.dirname(os.path.abspath(f))
        for name, svc in (doc.get("services") or {}).items():
            services[name] = (interpolate(svc, env), base)
    return services


def mounts(svc, base):
    """(container path, host path) pairs, longest container path first."""
    out = []
    for v in svc.get("volumes", []):
        parts = v.split(":")
        if len(parts) < 2 or not parts[0].startswith((".", "/")):
            continue  # a named volume
        out.append((parts[1].rstrip("/"), os.path.normpath(os.path.join(base, parts[0]))))
    return sorted(out, key=lambda m: -len(m[0]))


def map_arg(arg, mts):
    for cpath, hpath in mts:
        if arg == cpath or arg.startswith(cpath + "/"):
            return hpath + arg[len(cpath):]
    return arg


def service_env(svc):
    env = dict(os.environ)
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    env.update({k: str(v) for k, v in e.items()})
    return env


def health_cmd(svc, mts, binary):
    test = (svc.get("healthcheck") or {}).get("test")
    if not test or test[0] != "CMD" or test[1] != "eigenbatch":
        return None
    return [binary] + [map_arg(a, mts) for a in test[2:]]


def validate(files, env_file):
    dc = shutil.which("docker-compose")
    if not dc:
        print("compose_run: docker-compose not installed: skipped")
        return 77
    rc = 0
    for f in files:
        p = subprocess.run([dc, "--env-file", env_file, "-f", f, "config", "-q"],
                           capture_output=True, text=True)
        print("%s: %s" % (f, "ok" if p.returncode == 0 else "FAILED\n" + p.stderr))
        rc |= p.returncode != 0
    return rc


def tail(path, n=40):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def run(files, env_file, names, binary, workdir):
    services = load_services(files, read_env(env_file))
    procs, checks = [], {}
    for name in names:
        if name not in services:
            raise SystemExit("compose_run: no service %s" % name)
        svc, base = services[name]
        cmd = svc.get("command")
        if not isinstance(cmd, list) or not cmd or cmd[0] not in ROLES:
            raise SystemExit("compose_run: %s: command is not a role's" % name)
        mts = mounts(svc, base)
        args = [binary] + [map_arg(a, mts) for a in cmd]
        log = os.path.join(workdir, name + ".log")
        print("compose_run: %s: %s" % (name, " ".join(args)), flush=True)
        p = subprocess.Popen(args, cwd=workdir, env=service_env(svc), stdout=open(log, "w"),
                             stderr=subprocess.STDOUT)
        procs.append((name, p, log))
        hc = health_cmd(svc, mts, binary)
        if hc:
            checks[name] = [hc, time.time(), None]
    deadline = time.time() + RUN_TIMEOUT_S
    failed = []
    # every service's healthcheck runs at once, again and again until it passes (one after the
    # other, a short run could end before the later services' turn)
    running = {}
    ended_at = {}  # service: time it exited 0
    while any(p.poll() is None for _, p, _ in procs) and time.time() < deadline:
        for name, c in checks.items():
            h = running.get(name)
            if h is not None and h.poll() is not None:
                if h.returncode == 0:
                    c[2] = h.stdout.read().strip()
                    print("compose_run: %s healthy: %s" % (name, c[2]), flush=True)
                running.pop(name)
            if c[2] is None and name not in running and time.time() - c[1] < HEALTH_WINDOW_S:
                running[name] = subprocess.Popen(c[0], stdout=subprocess.PIPE,
                                                 stderr=subprocess.DEVNULL, text=True)
        for name, p, _ in procs:
            if p.poll() == 0 and name not in ended_at:
                ended_at[name] = time.time()
        if any(p.poll() not in (None, 0) for _, p, _ in procs):
            break
        time.sleep(HEALTH_RETRY_S)
    for name, p, _ in procs:  # those that exited 0 since the loop's last look
        if p.poll() == 0 and name not in ended_at:
            ended_at[name] = time.time()
    for h in running.values():
        h.kill()
        h.wait()
    for name, p, log in procs:
        if p.poll() is None:
            p.kill()
            failed.append("%s: still running after %d s" % (name, RUN_TIMEOUT_S))
        p.wait()
        if p.returncode != 0:
            failed.append("%s: exit %d\n%s" % (name, p.returncode, tail(log)))
    ended = {name: t for name, t in ended_at.items()}
    for name, c in checks.items():
        if c[2] is None:
            # a check that missed only because its service had already finished its work (a
            # short run; a shard > 0 answers nothing while it waits for a held epoch start) is
            # reported, not failed; one that never passed while its service ran the whole
            # window fails
            if name in ended and ended[name] - c[1] < HEALTH_WINDOW_S:
                print("compose_run: %s: ended (exit 0) before its healthcheck passed" % name,
                      flush=True)
                continue
            failed.append("%s: healthcheck never passed: %s" % (name, " ".join(c[0])))
    for f in failed:
        print("compose_run: " + f, file=sys.stderr)
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--validate", action="store_true")
    ap.add_argument("--run", help="services to start, comma-separated")
    ap.add_argument("--env", required=True)
    ap.add_argument("--binary")
    ap.add_argument("--workdir", default=".")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    if a.validate:
        return validate(a.files, a.env)
    try:
        import yaml  # noqa: F401
    except ImportError:
        print("compose_run: python3-yaml not installed: skipped")
        return 77
    return run(a.files, a.env, a.run.split(","), a.binary, a.workdir)


if __name__ == "__main__":
    sys.exit(main())
