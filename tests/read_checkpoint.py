#!/usr/bin/env python3
"""Read an mtxc checkpoint with the standard library only (struct, json): the
format is plain safetensors, so anyone's tools can. Checks every tensor's
dtype, shape and offsets, and its checksum in meta.json against an independent
implementation of XXH3-64 (the xxhsum command), and prints a summary.
Usage: read_checkpoint.py STEP_DIR [EXPECTED_STEP]"""
import json
import struct
import subprocess
import sys

SIZES = {"F32": 4, "I32": 4, "I64": 8, "U64": 8}


def xxh3(data):
    out = subprocess.run(["xxhsum", "-H3", "-"], input=data, capture_output=True, check=True).stdout
    return out.decode().split()[-1]            # "XXH3 (stdin) = 0123456789abcdef"


def main():
    step_dir = sys.argv[1]
    with open(f"{step_dir}/state.safetensors", "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    data = raw[8 + hlen:]
    meta = json.load(open(f"{step_dir}/meta.json"))
    names = [n for n in header if n != "__metadata__"]
    assert header["__metadata__"]["format"] == meta["format"] == "mtxc-checkpoint-2"
    assert meta["checksum"] == "XXH3-64"
    for name in names:
        e = header[name]
        begin, end = e["data_offsets"]
        count = 1
        for d in e["shape"]:
            count *= d
        assert end - begin == count * SIZES[e["dtype"]], name
        assert xxh3(data[begin:end]) == meta["checksums"][name], f"checksum of {name}"
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
