#!/usr/bin/env python3
"""Read an mtxc checkpoint with the standard library only (struct, json): the
format is plain safetensors, so anyone's tools can. Checks every tensor's
dtype, shape, offsets and checksum against meta.json, and prints a summary.
Usage: read_checkpoint.py STEP_DIR [EXPECTED_STEP]"""
import json
import struct
import sys

SIZES = {"F32": 4, "I32": 4, "I64": 8, "U64": 8}


def fnv1a(data):
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    step_dir = sys.argv[1]
    with open(f"{step_dir}/state.safetensors", "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]
    meta = json.load(open(f"{step_dir}/meta.json"))
    names = [n for n in header if n != "__metadata__"]
    assert header["__metadata__"]["format"] == "mtxc-checkpoint-1"
    for name in names:
        e = header[name]
        begin, end = e["data_offsets"]
        count = 1
        for d in e["shape"]:
            count *= d
        assert end - begin == count * SIZES[e["dtype"]], name
        assert f"{fnv1a(data[begin:end]):016x}" == meta["checksums"][name], f"checksum of {name}"
    step = struct.unpack("<q", data[header["step"]["data_offsets"][0]:][:8])[0]
    emb = header["params/token_embedder.embedding"]
    first = struct.unpack("<4f", data[emb["data_offsets"][0]:][:16])
    assert all(abs(x) < 100 for x in first)
    assert any(n.startswith("opt_state/mu/") for n in names) and "params/token_embedder.embedding" in names
    if len(sys.argv) > 2:
        assert step == int(sys.argv[2]) == meta["step"], (step, sys.argv[2], meta["step"])
    print(f"{step_dir}: {len(names)} tensors, step {step}, embedding {emb['shape']} starts {first[0]:.6f}")


if __name__ == "__main__":
    main()
