#!/usr/bin/python3
"""Read every TensorBoard event file (events.out.tfevents.*) of a directory, independently of
eigenbatch's writer: check each TFRecord's length and data CRCs (masked CRC32C, Debian's
python3-crc32c), decode the Event messages (protobuf wire format, TensorFlow's field numbers:
Event.wall_time 1, step 2, file_version 3, summary 5; Summary.value 1; Value.tag 1,
simple_value 2) and print JSON: {"files": N, "version": [...], "scalars": {tag: [[step, value]]}}.
Exit 1 with a message on any malformed record."""
import glob
import json
import os
import struct
import sys

import crc32c


def masked(data):
    c = crc32c.crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def fields(buf):
    """Yield (number, wire type, value) of a protobuf message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def main(d):
    out = {"files": 0, "version": [], "scalars": {}}
    for path in sorted(glob.glob(os.path.join(d, "events.out.tfevents.*"))):
        out["files"] += 1
        data = open(path, "rb").read()
        i = 0
        while i < len(data):
            if i + 12 > len(data):
                sys.exit("%s: record header cut short at byte %d" % (path, i))
            (n,) = struct.unpack("<Q", data[i:i + 8])
            (hc,) = struct.unpack("<I", data[i + 8:i + 12])
            if hc != masked(data[i:i + 8]):
                sys.exit("%s: length CRC mismatch at byte %d" % (path, i))
            rec = data[i + 12:i + 12 + n]
            (dc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
            if len(rec) != n or dc != masked(rec):
                sys.exit("%s: data CRC mismatch at byte %d" % (path, i))
            i += 16 + n
            step = 0
            values = []
            for num, wt, v in fields(rec):
                if num == 2 and wt == 0:
                    step = v
                elif num == 3 and wt == 2:
                    out["version"].append(v.decode())
                elif num == 5 and wt == 2:
                    for sn, swt, sv in fields(v):
                        if sn == 1 and swt == 2:
                            tag, val = None, None
                            for vn, vwt, vv in fields(sv):
                                if vn == 1 and vwt == 2:
                                    tag = vv.decode()
                                elif vn == 2 and vwt == 5:
                                    (val,) = struct.unpack("<f", vv)
                            values.append((tag, val))
            for tag, val in values:
                out["scalars"].setdefault(tag, []).append([step, val])
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
