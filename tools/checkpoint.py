#!/usr/bin/env python3
"""List or compare mtxc checkpoints (standard library only).

    tools/checkpoint.py list STEP_DIR        name, dtype, shape, checksum of every tensor
    tools/checkpoint.py diff STEP_DIR STEP_DIR
                                             tensors that differ (by checksum), are missing
                                             or changed shape; exit status 1 if any

STEP_DIR is {base_output_directory}/{run_name}/checkpoints/{step}.
"""
import json
import signal
import struct
import sys


def load(step_dir):
    try:
        with open(f"{step_dir}/state.safetensors", "rb") as f:
            (hlen,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(hlen))
        with open(f"{step_dir}/meta.json") as f:
            meta = json.load(f)
    except (OSError, ValueError, struct.error) as e:
        sys.exit(f"checkpoint: error: cannot read {step_dir}: {e}")
    header.pop("__metadata__", None)
    return header, meta


def cmd_list(step_dir):
    header, meta = load(step_dir)
    print(f"# {step_dir}: step {meta['step']}, data position {meta['data_position']}, {len(header)} tensors")
    for name, e in header.items():
        shape = "x".join(str(d) for d in e["shape"]) or "scalar"
        print(f"{name:70s} {e['dtype']:4s} {shape:>16s}  {meta['checksums'].get(name, '?')}")


def cmd_diff(a, b):
    ha, ma = load(a)
    hb, mb = load(b)
    differ = 0
    for name in sorted(set(ha) | set(hb)):
        if name not in ha or name not in hb:
            print(f"{name}: only in {a if name in ha else b}")
        elif ha[name]["shape"] != hb[name]["shape"] or ha[name]["dtype"] != hb[name]["dtype"]:
            print(f"{name}: {ha[name]['dtype']}{ha[name]['shape']} vs {hb[name]['dtype']}{hb[name]['shape']}")
        elif ma["checksums"][name] != mb["checksums"][name]:
            print(f"{name}: values differ")
        else:
            continue
        differ += 1
    if ma["data_position"] != mb["data_position"]:
        print(f"data position: {ma['data_position']} vs {mb['data_position']}")
        differ += 1
    print(f"{differ} difference(s)" if differ else "identical")
    return 1 if differ else 0


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)     # quiet when piped into head
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "list":
        return cmd_list(args[1])
    if len(args) == 3 and args[0] == "diff":
        return cmd_diff(args[1], args[2])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
