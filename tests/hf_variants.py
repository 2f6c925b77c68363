#!/usr/bin/env python3
"""Copies of a Hugging Face model directory for tests/test_hf_checkpoint.sh,
in plain Python (no numpy, no torch): other dtypes, shards, and broken ones.

  hf_variants.py equal A B [bf16|ulp]
    exit 0 if the directories' tensors (any shards) hold the same values; with
    bf16, if B's are A's rounded to bfloat16 (nearest even); with ulp, if each
    of B's is A's or a float32 neighbour (a folded scale that is no power of 2
    maps several float32 values to one) or, for values near 0, within 2^-24
    (gemma's norms are stored as 1 + w)
  hf_variants.py SRC DST MODE
    bf16-sharded   BF16 tensors in two shards with model.safetensors.index.json
    f16            F16 tensors in one file
    nan            one NaN in the first layer's query weights
    missing        without model.layers.1.mlp.up_proj.weight
    extra          with one more tensor, model.layers.9.mlp.up_proj.weight
    shape          lm_head.weight with its two dimensions swapped
    dtype          model.norm.weight as I64
    truncated      the file cut 1000 bytes before its end
    offsets        the header says model.norm.weight ends past the file
    no-shard       the index names a shard that is not there
    family         config.json of a Qwen3ForCausalLM
    hidden         config.json with hidden_size 128
    nested         a header of 100,000 nested brackets
    hugelen        a header length of 2^63
    dotdot         an index naming ../model.safetensors
    nanoffset      data_offsets [NaN, 1e300]
"""
import json
import os
import shutil
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v, data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


def convert(info, raw, dtype):
    vals = struct.unpack(f"<{len(raw) // 4}f", raw)
    if dtype == "BF16":   # the values are bfloat16 numbers: the upper halves
        return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in vals)
    if dtype == "F16":
        return struct.pack(f"<{len(vals)}e", *vals)
    return raw


def write(path, tensors, lie=None):
    header, blobs, at = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        info, raw = tensors[name]
        end = at + len(raw) + (4096 if name == lie else 0)
        header[name] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [at, end]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def tensors(d):
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for f in files:
        for name, (info, raw) in read(os.path.join(d, f)).items():
            if info["dtype"] == "F32":
                vals = struct.unpack(f"<{len(raw) // 4}f", raw)
            else:
                vals = tuple(struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2))
            out[name] = (info["shape"], vals)
    return out


def bf16(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    if x != x:
        return x
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def neighbours(x, y):
    """One float32 step apart, or (gemma's norms, stored as 1 + w) within float32's resolution at 1."""
    bits = [struct.unpack("<i", struct.pack("<f", v))[0] for v in (x, y)]
    return x == y or abs(bits[0] - bits[1]) <= 1 or abs(x - y) <= 2.0 ** -24


def equal(a, b, how=None):
    ta, tb = tensors(a), tensors(b)
    if set(ta) != set(tb):
        sys.exit(f"tensors differ: {sorted(set(ta) ^ set(tb))[:4]}")
    for name in sorted(ta):
        want = ta[name] if how != "bf16" else (ta[name][0], tuple(bf16(v) for v in ta[name][1]))
        if how == "ulp" and want[0] == tb[name][0] and all(map(neighbours, want[1], tb[name][1])):
            continue
        if want != tb[name]:
            sys.exit(f"{name} differs")


def main(src, dst, mode):
    if src == "equal":
        return equal(dst, mode, *sys.argv[4:])
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    cfg = json.load(open(os.path.join(src, "config.json")))
    t = read(os.path.join(src, "model.safetensors"))
    model = os.path.join(dst, "model.safetensors")
    if mode in ("bf16-sharded", "no-shard"):
        names = sorted(t)
        halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
                  "model-00002-of-00002.safetensors": names[len(names) // 2:]}
        for file, part in halves.items():
            write(os.path.join(dst, file),
                  {n: (dict(t[n][0], dtype="BF16"), convert(t[n][0], t[n][1], "BF16")) for n in part})
        weight_map = {n: f for f, part in halves.items() for n in part}
        if mode == "no-shard":
            os.remove(os.path.join(dst, "model-00002-of-00002.safetensors"))
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map},
                  open(os.path.join(dst, "model.safetensors.index.json"), "w"))
    elif mode == "f16":
        write(model, {n: (dict(i, dtype="F16"), convert(i, r, "F16")) for n, (i, r) in t.items()})
    elif mode == "nan":
        i, r = t["model.layers.0.self_attn.q_proj.weight"]
        t["model.layers.0.self_attn.q_proj.weight"] = (i, struct.pack("<f", float("nan")) + r[4:])
        write(model, t)
    elif mode == "missing":
        del t["model.layers.1.mlp.up_proj.weight"]
        write(model, t)
    elif mode == "extra":
        t["model.layers.9.mlp.up_proj.weight"] = t["model.layers.1.mlp.up_proj.weight"]
        write(model, t)
    elif mode == "shape":
        i, r = t["lm_head.weight"]
        t["lm_head.weight"] = (dict(i, shape=i["shape"][::-1]), r)
        write(model, t)
    elif mode == "dtype":
        i, r = t["model.norm.weight"]
        t["model.norm.weight"] = (dict(i, dtype="I64", shape=[i["shape"][0] // 2]), r)
        write(model, t)
    elif mode == "truncated":
        write(model, t)
        with open(model, "r+b") as f:
            f.truncate(os.path.getsize(model) - 1000)
    elif mode == "offsets":
        write(model, t, lie="model.norm.weight")
    elif mode in ("nested", "hugelen"):
        text = b"[" * 100000 + b"]" * 100000
        with open(model, "wb") as f:
            f.write(struct.pack("<Q", 1 << 63 if mode == "hugelen" else len(text)) + text)
    elif mode == "dotdot":
        write(os.path.join(dst, "..", "model.safetensors"), t)
        json.dump({"weight_map": {n: "../model.safetensors" for n in t}},
                  open(os.path.join(dst, "model.safetensors.index.json"), "w"))
    elif mode == "nanoffset":
        write(model, t)
        with open(model, "r+b") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = f.read(n).replace(b'"data_offsets": [0,', b'"data_offsets": [NaN, 1e300, 0,', 1)
            f.seek(8)
            f.write(header[:n].ljust(n))
    elif mode in ("family", "hidden"):
        write(model, t)
        if mode == "family":
            cfg.update(architectures=["Qwen3ForCausalLM"], model_type="qwen3")
        else:
            cfg["hidden_size"] = 128
    else:
        sys.exit(f"unknown mode {mode}")
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:4])
