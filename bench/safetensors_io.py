#!/usr/bin/python3
"""safetensors_io: a small, independent safetensors reader/writer (struct + json + numpy).

Debian's python3-torch has no `safetensors` package, so the PyTorch reference scripts of eigenbatch
use this module to exchange tensors with the C side (core/rt/rt_safetensors.c). It follows the
format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} with
an optional "__metadata__" map of strings, then the little-endian data.

Library use:
    save(path, {"fc.weight": array_or_tensor, ...}, metadata={"format": "pt"})
    tensors, metadata = load(path)           # numpy arrays
    state = load_torch(path)                 # torch tensors (needs torch)

Command line (used by tests/test_rt_safetensors.c to check interoperability):
    safetensors_io.py sample PATH            write the reference sample file
    safetensors_io.py verify-sample PATH     exit 0 iff PATH holds exactly the sample
    safetensors_io.py dump PATH              print each tensor's name, dtype, shape and sum
"""
import json
import struct
import sys

import numpy as np

DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 1000 * 1000


def _as_numpy(t):
    if isinstance(t, np.ndarray):
        return t
    if hasattr(t, "detach"):  # torch tensor
        return t.detach().cpu().contiguous().numpy()
    return np.asarray(t)


def save(path, tensors, metadata=None, align=True):
    """Write a dict name -> array (numpy or torch) to path. Data follows the dict order. With
    align=False the header is not padded (the data may start at any byte)."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, t in tensors.items():
        a = np.array(_as_numpy(t), order="C", copy=False)  # keeps 0-d scalars 0-d
        if a.dtype not in NAMES:
            raise ValueError("%s: unsupported dtype %s" % (name, a.dtype))
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if align:
        h += b" " * ((-(len(h) + 8)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    """Read path; returns (dict name -> numpy array, metadata dict). Raises ValueError on a
    malformed file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: too short" % path)
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        raise ValueError("%s: bad header length %d" % (path, n))
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    spans = []
    for name, e in header.items():
        dt = np.dtype(DTYPES[e["dtype"]]).newbyteorder("<")
        b, end = e["data_offsets"]
        shape = tuple(e["shape"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not 0 <= b <= end <= len(data) or end - b != count * dt.itemsize:
            raise ValueError("%s: tensor %s: bad data_offsets" % (path, name))
        out[name] = np.frombuffer(data[b:end], dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
        spans.append((b, end, name))
    pos = 0
    for b, end, name in sorted(spans):
        if b != pos:
            raise ValueError("%s: tensor %s does not follow the previous one" % (path, name))
        pos = end
    if pos != len(data):
        raise ValueError("%s: trailing bytes" % path)
    return out, meta


def load_torch(path):
    """load() as a dict of torch tensors (a state_dict)."""
    import torch
    tensors, _ = load(path)
    return {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}


def sample():
    """The reference sample shared with tests/test_rt_safetensors.c (same formulas there)."""
    return {
        "layer.weight": (np.arange(12, dtype=np.float32) * 0.25 - 1.0).reshape(3, 4),
        "labels": np.arange(5, dtype=np.int32) * 7 - 3,
        "scale": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "big.x": ((np.arange(120) % 17) * 0.125 - 1.0).astype(np.float32).reshape(2, 3, 4, 5),
    }


def _verify_sample(path):
    tensors, meta = load(path)
    ref = sample()
    if set(tensors) != set(ref):
        print("names differ: %s vs %s" % (sorted(tensors), sorted(ref)))
        return 1
    for k, v in ref.items():
        t = tensors[k]
        if t.dtype != v.dtype or t.shape != v.shape or not np.array_equal(t, v):
            print("tensor %s differs: %s %s" % (k, t.dtype, t.shape))
            return 1
    if meta.get("producer") != "eigenbatch":
        print("metadata differs: %r" % meta)
        return 1
    return 0


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    cmd, path = argv[1], argv[2]
    if cmd == "sample":
        # Unpadded on purpose: the C reader must cope with unaligned data.
        save(path, sample(), metadata={"producer": "python"}, align=False)
        return 0
    if cmd == "verify-sample":
        return _verify_sample(path)
    if cmd == "dump":
        tensors, meta = load(path)
        print(json.dumps({"metadata": meta}))
        for k, v in tensors.items():
            print(json.dumps({"name": k, "dtype": NAMES[v.dtype], "shape": list(v.shape),
                              "sum": float(v.astype(np.float64).sum())}))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
