#!/usr/bin/env python3
"""Seeded mutation fuzzing of every input mtxc and its trainers read.

    tests/fuzz.py MTXC [--seed N] [--scale K] [--keep DIR]

Run from the source root. Mutates, from one seed (the same seed, the same
inputs): config files (base.yml with a preset), mtxc's key=value overrides,
a built trainer's run-time arguments, checkpoints (state.safetensors bytes
and header fields, meta.json fields and bytes, headers of 200,000 entries),
checkpoint directories (symlinked, FIFO, misnamed and non-directory steps),
and token/text data files; FIFOs and devices stand in for files, and YAML
alias bombs for values.
Every run must end in time, without a signal or a sanitizer report, with
exit status 0 or the input's error status and a one-line message; and:
  * a config mtxc accepts prints a config that mtxc reads back to the same;
  * a run-time value mtxc refuses is refused by the trainer with mtxc's line;
  * a checkpoint whose data, structure or checked fields were changed is
    refused, and a refused checkpoint's files are left as they were;
  * nothing outside a run's directory is changed through a symlink in it.
--scale multiplies the number of runs (1: about 300, under a minute).
Prints the runs, the outcomes and every defect with what reproduces it;
exits 1 if there is any defect. Standard library only.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading

TIMEOUT = 60          # a run's limit; a run past it is tried once more with RETRY_TIMEOUT
RETRY_TIMEOUT = 240   # (CI machines are shared: a stall of the host is not a hang of ours)
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")

# Values that broke parsers before, or might: bounds, non-numbers, YAML syntax.
HOSTILE = ["0", "-1", "1", "3", "65", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
           "4294967296", "4294967360", "2147483648", "9007199254740993", "1e19", "1e309", "-1e309", "nan", ".nan",
           ".inf", "-.inf", "1_000", "0x10", "1e-320", "0.5", "''", '""', "~", "None", "null", "[]", "{}", "[[[[",
           "{a: [b", "&a x", "*a", "!!binary aGk=", "yes", "True", "'True'", "'7'", "../..", "/", ".", "x" * 5000,
           "[" * 100000, "\t", "\u00e9", "a\\nb", "- x", "? x", ": x", "|", ">", "%", "@", "`", "#", "a: b",
           "[silu, linear]", "[gelu]", "[data, fsdp, tensor]", "\x01", "text", "tokens", "synthetic", "float32",
           "bfloat16", "muon", "full", "none", "llama2", "gpt3", "cpu-4", "cpu-0", "cpu-99999999999", "cpu-46341",
           "65536", "\xff\xfeab", "save_dot_with_context_except_mlp",
           # aliases: 9^8 nodes, and one anchor repeated
           "[&a [x,x,x,x,x,x,x,x,x], " + ", ".join("&%s [%s]" % (b, ",".join(["*" + a] * 9))
                                                 for a, b in zip("abcdefg", "bcdefgh")) + "]",
           "{k: &m [1, 2], j: *m}"]
# Path-like values stay inside the fuzz directory (the trainer writes there).
PATHS = ["", "''", "nope", "sub/dir/x", "a b", "~", "[x]", "x" * 300, ".", "..", "runs", "-", "'#x'", "fifo",
         "/dev/zero", "/dev/null", "base/checkpoints/2"]
PATH_KEYS = {"dataset_path", "eval_dataset_path", "metrics_file", "base_output_directory",
             "load_parameters_path", "load_full_state_path"}


class Fuzz:
    def __init__(self, mtxc, root, work, seed):
        self.mtxc, self.root, self.work, self.seed = mtxc, root, work, seed
        self.results = []               # (area, outcome, defect or None)
        self.local = threading.local()  # the running case's results

    # ---- running and judging ----

    def run(self, args, cwd=None):
        # Two runs at a time on two cores: one OpenMP thread each.
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", OMP_NUM_THREADS="1")
        for limit in (TIMEOUT, RETRY_TIMEOUT):
            try:
                p = subprocess.run(args, cwd=cwd or self.work, capture_output=True, timeout=limit, env=env,
                                   stdin=subprocess.DEVNULL)
                return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                print(f"fuzz: no answer within {limit} s from {' '.join(args)[:200]}", flush=True)
        return None, "", ""

    def judge(self, area, what, rc, err, ok=(0, 2), must_fail=False):
        """One run's outcome: 'ok', 'refused' or a defect (returned)."""
        defect = None
        if rc is None:
            defect = f"no answer within {TIMEOUT} s, nor within {RETRY_TIMEOUT} s on a second try"
        elif rc < 0 or rc >= 128:
            defect = f"killed by signal {-rc if rc < 0 else rc - 128}"
        elif any(s in err for s in SANITIZER):
            defect = "sanitizer report: " + next(l for l in err.splitlines() if any(s in l for s in SANITIZER))
        elif rc not in ok:
            defect = f"exit status {rc}: {err.strip()[:300]}"
        elif rc == 0 and must_fail:
            defect = "accepted an invalid input (exit 0)"
        elif rc != 0:
            lines = [l for l in err.splitlines() if "error:" in l]
            if len(lines) != 1 or len(lines[0]) > 1200:
                defect = f"refused without exactly one short error line: {err.strip()[:300]!r}"
        outcome = "defect" if defect else ("ok" if rc == 0 else "refused")
        self.local.res.append((area, outcome, f"{what}: {defect}" if defect else None))
        return rc

    # ---- config files ----

    def config_case(self, rng, i):
        text = open(os.path.join(self.root, "configs/base.yml")).read()
        text = text.replace('model_name: "default"', 'model_name: "tiny"')
        lines = text.splitlines()
        for _ in range(rng.randint(1, 3)):
            op, k = rng.randrange(7), rng.randrange(len(lines))
            key = re.match(r"^(\w+):", lines[k])
            if op <= 2 and key:
                lines[k] = f"{key.group(1)}: {rng.choice(HOSTILE)}"
            elif op == 3:
                del lines[k]
            elif op == 4:
                lines.insert(k, lines[k])
            elif op == 5 and key:
                name = list(key.group(1))
                name[rng.randrange(len(name))] = rng.choice("abcxyz_")
                lines[k] = "".join(name) + lines[k][len(name):]
            else:
                at = rng.randrange(len(lines[k]) + 1)
                lines[k] = lines[k][:at] + rng.choice(["\x00", "\t", "'", '"', "[", "{", ": ", " #", "\u2028"]) + lines[k][at:]
        body = "\n".join(lines)
        if rng.random() < 0.1:
            body = body[:rng.randrange(len(body))]
        path = os.path.join(self.work, "configs", f"fuzz{i}.yml")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(body)
        rc, out, err = self.run([self.mtxc, "config", path])
        what = f"config file {i} (seed {self.seed})"
        if self.judge("config", what, rc, err) == 0:
            again = os.path.join(self.work, "configs", f"again{i}.yml")
            with open(again, "w") as f:            # the derived values are not input
                f.write("".join(l + "\n" for l in out.split("\n")[:-1] if not l.endswith("# derived")))
            rc2, out2, err2 = self.run([self.mtxc, "config", again])
            if rc2 != 0 or out2 != out:
                self.local.res.append(("config", "defect", f"{what}: printed config does not read back: {err2.strip()[:200]}"))
        if not any(r[1] == "defect" for r in self.local.res):
            os.unlink(path)

    # ---- key=value: mtxc's, and a trainer's with the same words ----

    def override_case(self, rng, i, keys):
        key = rng.choice(keys + ["stepz", "emb_dim", "", "=", "base_emb_dim.x"])
        args = [f"{key}={rng.choice(HOSTILE)}" for _ in range(1)] + \
               [f"{rng.choice(keys)}={rng.choice(HOSTILE)}" for _ in range(rng.randint(0, 1))]
        rc, _, err = self.run([self.mtxc, "config", "configs/base.yml", "model_name=tiny"] + args, cwd=self.root)
        self.judge("override", f"mtxc config configs/base.yml model_name=tiny {' '.join(a[:60] for a in args)}", rc, err)

    def trainer_case(self, rng, i, run_keys):
        key = rng.choice(run_keys)
        value = rng.choice(PATHS if key in PATH_KEYS else HOSTILE)
        arg = f"{key}={value}"
        rc, _, err = self.run(["./trainer", arg, "steps=1", "log_period=1", "peak_tflops_per_device=1",
                               "enable_checkpointing=false"])
        what = f"trainer {arg[:80]!r}"
        if self.judge("trainer", what, rc, err) != 0:
            rcm, _, errm = self.run([self.mtxc, "config", "configs/base.yml", arg], cwd=self.root)
            if rcm == 2 and errm.startswith("argument") and rc is not None and err.strip() != errm.strip():
                self.local.res.append(("trainer", "defect", f"{what}: trainer says {err.strip()[:200]!r}, "
                                                          f"mtxc says {errm.strip()[:200]!r}"))
        else:
            rcm, _, errm = self.run([self.mtxc, "config", "configs/base.yml", arg], cwd=self.root)
            if rcm != 0:
                self.local.res.append(("trainer", "defect", f"{what}: the trainer accepts what mtxc refuses: {errm.strip()[:200]}"))

    # ---- checkpoints ----

    def checkpoint_case(self, rng, i):
        run = f"ck{i}"
        step_dir = os.path.join(self.work, run, "checkpoints", "2")
        shutil.copytree(os.path.join(self.work, "base", "checkpoints", "2"), step_dir)
        state, meta = os.path.join(step_dir, "state.safetensors"), os.path.join(step_dir, "meta.json")
        raw = bytearray(open(state, "rb").read())
        hlen = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + hlen])
        m = json.loads(open(meta).read())
        op = rng.randrange(10)
        must_fail = True
        if op == 0:                                   # a data byte
            at = rng.randrange(8 + hlen, len(raw))
            raw[at] ^= rng.randrange(1, 256)
            what = f"data byte {at} changed"
        elif op == 1:
            cut = rng.randint(1, len(raw) - 1)
            del raw[cut:]
            what = f"state truncated to {cut} bytes"
        elif op == 2:
            raw += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            what = "bytes appended to the state"
        elif op in (3, 4):                            # a header field, data kept
            name = rng.choice(list(header))
            field = rng.choice(list(header[name]))
            old = header[name][field]
            new = rng.choice([-1, 0, 1, 2 ** 63, 2 ** 64, 1e300, "F16", "I64", "x", None, [], {}, [0, 0], [1, 2 ** 62],
                              [[[]]], "mtxc-checkpoint-1", "3", "-1", "", old if isinstance(old, list) else [old]])
            if new == old:
                return
            header[name][field] = new
            text = json.dumps(header).encode()
            text += b" " * (-len(text) % 8)
            raw = bytearray(struct.pack("<Q", len(text)) + text + raw[8 + hlen:])
            what = f"header {name}.{field}: {json.dumps(old)[:40]} -> {json.dumps(new)[:40]}"
        elif op == 5:                                 # any header byte: may be padding
            at = rng.randrange(0, 8 + hlen)
            raw[at] = rng.randrange(256)
            must_fail = False
            what = f"header byte {at} set"
        elif op in (6, 7):                            # a checked meta.json field
            field = rng.choice(["format", "checksum", "step", "data_position", "checksums", "checksums.x"])
            new = rng.choice([-1, 0, 1, 3, 2 ** 63, 2 ** 64, 1e300, "x", "-1", "18446744073709551615", "00", "2",
                              None, [], {}, "mtxc-checkpoint-1", "XXH3-64", "0" * 30, [[[[]]]]])
            if field == "checksums.x":
                name = rng.choice(list(m["checksums"]))
                if m["checksums"][name] == new:
                    return
                m["checksums"][name] = new
            else:
                if m[field] == new:
                    return
                m[field] = new
            what = f"meta.json {field} -> {json.dumps(new)[:40]}"
        elif op == 9:                                 # 200,000 zero-size entries (a quadratic check hung)
            for k in range(200000):
                header[f"z{k}"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                if rng.random() < 0.5:
                    m["checksums"][f"z{k}"] = "2d06800538d394c2"
            text = json.dumps(header).encode()
            text += b" " * (-len(text) % 8)
            raw = bytearray(struct.pack("<Q", len(text)) + text + raw[8 + hlen:])
            with open(meta, "w") as f:
                json.dump(m, f)
            what = "200,000 zero-size entries in the header"
        else:                                         # meta.json bytes
            text = bytearray(open(meta, "rb").read())
            kind = rng.randrange(3)
            if kind == 0:
                text = text[:rng.randrange(len(text))]
            elif kind == 1:
                text = bytearray(b"[" * 100000)
            else:
                text[rng.randrange(len(text))] = rng.randrange(256)
            with open(meta, "wb") as f:
                f.write(text)
            must_fail = kind < 2
            what = f"meta.json bytes ({['truncated', 'nested 100,000 deep', 'one byte set'][kind]})"
        if op <= 5 or op == 9:
            with open(state, "wb") as f:
                f.write(raw)
        elif op in (6, 7):
            with open(meta, "w") as f:
                json.dump(m, f)
        before = tree_hashes(os.path.join(self.work, run))
        how = rng.randrange(3)
        extra = ["run_name=" + run] if how == 0 else \
                [f"run_name={run}x", f"load_full_state_path={run}/checkpoints/2"] if how == 1 else \
                [f"run_name={run}x", f"load_parameters_path={run}/checkpoints/2"]
        rc, _, err = self.run(["./trainer", "steps=3", "log_period=1", "peak_tflops_per_device=1"] + extra)
        what = f"checkpoint {i} (seed {self.seed}, {extra[-1]}): {what}"
        if self.judge("checkpoint", what, rc, err, must_fail=must_fail) != 0 and rc is not None:
            if tree_hashes(os.path.join(self.work, run)) != before or os.path.exists(os.path.join(self.work, run + "x")):
                self.local.res.append(("checkpoint", "defect", f"{what}: a refused run changed or created files"))

    # ---- checkpoint directories ----

    def ckdir_case(self, rng, i):
        """Steps that are symlinks (to a directory outside the run), FIFOs,
        files, misnamed copies or FIFOs inside a step: a run resumes, saves
        and prunes without hanging and without touching what a link names."""
        run, outside = f"cd{i}", f"outside{i}"
        ck = os.path.join(self.work, run, "checkpoints")
        os.makedirs(ck)
        base = os.path.join(self.work, "base", "checkpoints", "2")
        shutil.copytree(base, os.path.join(self.work, outside))
        made = []
        for _ in range(rng.randint(1, 3)):
            kind, step = rng.randrange(6), rng.choice(["1", "2", "3", "4", "5"])
            name = os.path.join(ck, step)
            if os.path.lexists(name):
                continue
            if kind == 0:
                os.symlink(os.path.join(self.work, outside), name)
            elif kind == 1:
                os.mkfifo(name)
            elif kind == 2:
                open(name, "w").close()
            elif kind == 3:
                name = os.path.join(ck, rng.choice(["0" + step, "+" + step, " " + step, "18446744073709551616"]))
                shutil.copytree(base, name)
            else:
                shutil.copytree(base, name)
                victim = os.path.join(name, rng.choice(["state.safetensors", "meta.json"]))
                os.unlink(victim)
                os.mkfifo(victim) if kind == 4 else os.symlink(os.path.join(self.work, outside, "meta.json"), victim)
            made.append(f"{['symlink', 'FIFO', 'file', 'misnamed copy', 'FIFO inside', 'symlinked file'][kind]} "
                        f"{os.path.basename(name)!r}")
        before = tree_hashes(os.path.join(self.work, outside))
        keep = rng.choice(["1", "2", "None"])
        rc, _, err = self.run(["./trainer", "steps=5", "checkpoint_period=1", "log_period=1", "peak_tflops_per_device=1",
                               f"run_name={run}", f"max_num_checkpoints_to_keep={keep}"])
        what = f"checkpoint directory {i} (seed {self.seed}, keep {keep}): {', '.join(made)}"
        self.judge("ckdir", what, rc, err, ok=(0, 1, 2))
        if tree_hashes(os.path.join(self.work, outside)) != before:
            self.local.res.append(("ckdir", "defect", f"{what}: files outside the run changed"))

    # ---- data files ----

    def data_case(self, rng, i):
        path = os.path.join(self.work, f"data{i}.bin")
        if rng.random() < 0.25:
            body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 10, 64, 65, 3000])))
            kind, what = "text", f"{len(body)} random bytes as text"
        else:
            count = 3000
            head = [20240520, 1, count] + [0] * 253
            tokens = [rng.randrange(256) for _ in range(count)]
            op = rng.randrange(5)
            if op == 0:
                head[rng.randrange(3)] = rng.choice([0, -1, 7, 20240801, 2 ** 31 - 1, -2 ** 31, count + 1, count - 1])
            elif op == 1:
                tokens[rng.randrange(count)] = rng.choice([256, 65535, 300])
            body = struct.pack("<256i", *head) + struct.pack(f"<{count}H", *tokens)
            if op == 2:
                body = body[:rng.randrange(len(body))]
            elif op == 3:
                body += b"\x01" * rng.randint(1, 9)
            kind, what = "tokens", ["a header field", "a token past the vocabulary", "truncated", "bytes appended",
                                    "unchanged"][op]
        with open(path, "wb") as f:
            f.write(body)
        rc, _, err = self.run(["./trainer", "steps=1", "log_period=1", "peak_tflops_per_device=1",
                               f"dataset_type={kind}", f"dataset_path=data{i}.bin", "enable_checkpointing=false"])
        self.judge("data", f"{kind} file {i} (seed {self.seed}): {what}", rc, err)


def tree_hashes(top):
    out = {}
    for d, _, files in os.walk(top):
        for name in files:
            p = os.path.join(d, name)
            out[p] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mtxc")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--keep", help="keep the work directory here")
    args = ap.parse_args()
    root, mtxc = os.getcwd(), os.path.abspath(args.mtxc)
    work = args.keep or tempfile.mkdtemp(prefix="mtxc-fuzz-")
    os.makedirs(os.path.join(work, "configs"), exist_ok=True)
    if not os.path.exists(os.path.join(work, "fifo")):
        os.mkfifo(os.path.join(work, "fifo"))      # a path value that would block an open
    shutil.copytree(os.path.join(root, "configs/models"), os.path.join(work, "configs/models"), dirs_exist_ok=True)
    f = Fuzz(mtxc, root, work, args.seed)
    build = subprocess.run([mtxc, "build", "configs/base.yml", "model_name=tiny", "-o", os.path.join(work, "trainer")],
                           cwd=root, capture_output=True, text=True)
    base = subprocess.run(["./trainer", "steps=2", "run_name=base", "peak_tflops_per_device=1"], cwd=work,
                          capture_output=True, text=True)
    if build.returncode or base.returncode:
        sys.exit(f"fuzz: cannot build or run the tiny trainer: {build.stderr}{base.stderr}")
    keys = [m.group(1) for m in re.finditer(r"^(\w+):", open(os.path.join(root, "configs/base.yml")).read(), re.M)]
    # MaxText's other keys (ignored or only at their defaults), a sample of them
    keys += re.findall(r"^MKEY\((\w+),", open(os.path.join(root, "compiler/maxtext_keys.def")).read(), re.M)[::15]
    run_keys = [l.split("=")[0].strip() for l in subprocess.run(["./trainer", "--help"], cwd=work, capture_output=True,
                text=True).stdout.splitlines() if l.startswith("  ") and "=" in l]
    n = lambda k: max(1, int(k * args.scale))
    rng = random.Random(args.seed)
    # Each case draws from its own generator, so a case reproduces alone.
    cases = [(f.config_case, (i,)) for i in range(n(100))] + \
            [(f.override_case, (i, keys)) for i in range(n(60))] + \
            [(f.trainer_case, (i, run_keys)) for i in range(n(50))] + \
            [(f.checkpoint_case, (i,)) for i in range(n(50))] + \
            [(f.ckdir_case, (i,)) for i in range(n(30))] + \
            [(f.data_case, (i,)) for i in range(n(30))]
    seeds = [rng.randrange(2 ** 32) for _ in cases]
    def one(case, seed):
        f.local.res = []
        case[0](random.Random(seed), *case[1])
        return f.local.res
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for res in pool.map(one, cases, seeds):
            f.results += res
    defects = [r[2] for r in f.results if r[1] == "defect"]
    areas = sorted({r[0] for r in f.results})
    for a in areas:
        got = [r[1] for r in f.results if r[0] == a]
        print(f"fuzz {a:10s} {len(got):5d} runs: {got.count('ok'):5d} ok, {got.count('refused'):5d} refused, "
              f"{got.count('defect')} defects")
    for d in defects:
        print("DEFECT", d)
    print(f"fuzz: {len(f.results)} runs (seed {args.seed}), {len(defects)} defects")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if defects else 0)


if __name__ == "__main__":
    main()
