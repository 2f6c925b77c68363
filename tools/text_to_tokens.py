#!/usr/bin/python3
"""Convert text files to llm.c token files for dataset_type=tokens.

Byte-level: every byte of the input is one token (vocab 256), so the result
trains like dataset_type=text but loads faster and can be split or mixed by
other tools. Output: a header of 256 little-endian int32 (magic 20240520,
version 1, token count), then the tokens as uint16.

    tools/text_to_tokens.py INPUT [INPUT ...] -o OUTPUT.bin

Several inputs are concatenated in order. Standard library only.
"""
import argparse
import os
import struct
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="text files")
    ap.add_argument("-o", "--output", required=True, help="token file to write")
    args = ap.parse_args()
    data = bytearray()
    for path in args.inputs:
        try:
            with open(path, "rb") as f:
                data += f.read()
        except OSError as e:
            sys.exit(f"text_to_tokens: error: cannot read {path}: {e.strerror}")
    if not data:
        sys.exit("text_to_tokens: error: the inputs are empty")
    header = [0] * 256
    header[0], header[1], header[2] = 20240520, 1, len(data)
    tmp = args.output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{len(data)}H", *data))
    os.replace(tmp, args.output)       # never a half-written token file
    print(f"{args.output}: {len(data)} tokens")


if __name__ == "__main__":
    main()
