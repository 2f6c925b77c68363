#!/usr/bin/python3
"""An independent reference for importing Hugging Face checkpoints: small
random models in Hugging Face's layout (config.json with HF's field names,
model.safetensors with HF's tensor names, nn.Linear's [out, in] weights),
and what they compute, in float64 PyTorch from HF's modelling conventions
(transformers' modeling_llama.py: RMSNorm, rotate_half RoPE with the
"llama3" rope_scaling, grouped-query attention with repeat_kv, SwiGLU MLP;
modeling_qwen2.py's q/k/v biases; modeling_qwen3.py's per-head q/k norms
before RoPE and tied embeddings).
Nothing of mtxc is used.

For each case it writes tests/data/hf/CASE/ (config.json, model.safetensors
in F32, every weight a bfloat16 value so that BF16 and F16 copies hold the
same numbers) and CASE.ref: the loss of the first training batch of the
token file the test writes (mean next-token cross-entropy over batch x seq
positions), and the greedy continuation of a prompt with the smallest
top-2 logit margin met on the way (ties would make the comparison fragile).

Usage: /usr/bin/python3 tools/hf_reference.py   (needs python3-torch: tools/install-deps --with-torch)
"""
import json
import math
import os
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# mtxc's tiny preset (configs/models/tiny.yml): what config.json must say.
TINY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            num_hidden_layers=2, vocab_size=256, rms_norm_eps=1e-5, rope_theta=10000.0,
            tie_word_embeddings=False, max_position_embeddings=64)
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192}
# configs/models/tiny-qwen2.yml and tiny-qwen3.yml
QWEN = dict(TINY, rms_norm_eps=1e-6, rope_theta=1000000.0, rope_scaling=None, use_sliding_window=False)
CASES = {
    "llama-tiny": dict(TINY, architectures=["LlamaForCausalLM"], model_type="llama", rope_scaling=None),
    "llama3.1-tiny": dict(TINY, architectures=["LlamaForCausalLM"], model_type="llama", rope_scaling=LLAMA3_SCALING),
    # Mistral is Llama's architecture with an optional sliding window (none here, as from v0.2 on)
    "mistral-tiny": dict(TINY, architectures=["MistralForCausalLM"], model_type="mistral", rope_scaling=None,
                         sliding_window=None),
    "qwen2-tiny": dict(QWEN, architectures=["Qwen2ForCausalLM"], model_type="qwen2"),
    "qwen3-tiny": dict(QWEN, architectures=["Qwen3ForCausalLM"], model_type="qwen3", head_dim=32,
                       tie_word_embeddings=True, attention_bias=False),
}
BATCH, SEQ, PROMPT = 8, 64, [3, 14, 15, 92, 65, 35, 89, 79]


def bf16(x):
    """x rounded to bfloat16 (nearest even), kept in float64."""
    return x.float().to(torch.bfloat16).to(torch.float64)


def weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    E, F, H, KV, Dh, V = (cfg[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                            "num_key_value_heads", "head_dim", "vocab_size"))
    def normal(*shape, std):
        return bf16(torch.randn(*shape, generator=g) * std)
    w = {"model.embed_tokens.weight": normal(V, E, std=1.0), "model.norm.weight": bf16(1 + normal(E, std=0.1))}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(V, E, std=E ** -0.5)
    else:   # logits = h @ embed.T: a smaller table keeps them in range
        w["model.embed_tokens.weight"] = normal(V, E, std=E ** -0.5)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = bf16(1 + normal(E, std=0.1))
        w[p + "post_attention_layernorm.weight"] = bf16(1 + normal(E, std=0.1))
        w[p + "self_attn.q_proj.weight"] = normal(H * Dh, E, std=E ** -0.5)
        w[p + "self_attn.k_proj.weight"] = normal(KV * Dh, E, std=E ** -0.5)
        w[p + "self_attn.v_proj.weight"] = normal(KV * Dh, E, std=E ** -0.5)
        w[p + "self_attn.o_proj.weight"] = normal(E, H * Dh, std=(H * Dh) ** -0.5)
        if cfg["model_type"] == "qwen2":
            for n, rows in (("q", H * Dh), ("k", KV * Dh), ("v", KV * Dh)):
                w[p + f"self_attn.{n}_proj.bias"] = normal(rows, std=0.5)
        if cfg["model_type"] == "qwen3":
            w[p + "self_attn.q_norm.weight"] = bf16(1 + normal(Dh, std=0.1))
            w[p + "self_attn.k_norm.weight"] = bf16(1 + normal(Dh, std=0.1))
        w[p + "mlp.gate_proj.weight"] = normal(F, E, std=E ** -0.5)
        w[p + "mlp.up_proj.weight"] = normal(F, E, std=E ** -0.5)
        w[p + "mlp.down_proj.weight"] = normal(E, F, std=F ** -0.5)
    return w


def inv_freq(cfg):
    """HF's rotary frequencies, with the llama3 rope_scaling when set (_compute_llama3_parameters)."""
    Dh = cfg["head_dim"]
    f = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, Dh, 2) / Dh))
    s = cfg["rope_scaling"]
    if not s:
        return f
    low_wavelen = s["original_max_position_embeddings"] / s["low_freq_factor"]
    high_wavelen = s["original_max_position_embeddings"] / s["high_freq_factor"]
    wavelen = 2 * math.pi / f
    scaled = torch.where(wavelen > low_wavelen, f / s["factor"], f)
    smooth = (s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"]) / (
        s["high_freq_factor"] - s["low_freq_factor"])
    smoothed = (1 - smooth) * scaled / s["factor"] + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(cfg, w, tokens):
    """Logits [T, V] of one sequence."""
    E, H, KV, Dh = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    T = len(tokens)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq(cfg))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, w[p + "input_layernorm.weight"], cfg["rms_norm_eps"])
        q, k, v = (h @ w[p + f"self_attn.{n}_proj.weight"].T + w.get(p + f"self_attn.{n}_proj.bias", 0)
                   for n in "qkv")
        q, k, v = q.view(T, H, Dh), k.view(T, KV, Dh), v.view(T, KV, Dh)
        if p + "self_attn.q_norm.weight" in w:   # Qwen3: RMSNorm over each head, before RoPE
            q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], cfg["rms_norm_eps"])
            k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], cfg["rms_norm_eps"])
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(Dh) + mask
        o = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(T, H * Dh)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], cfg["rms_norm_eps"])
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return rmsnorm(x, w["model.norm.weight"], cfg["rms_norm_eps"]) @ head.T


def tokens_file_sequence(vocab):
    """The token stream the test writes (tests/test_hf_checkpoint.sh): BATCH windows of SEQ + 1 tokens, stride SEQ."""
    return [(i * 7919 + 13) % vocab for i in range(BATCH * SEQ + 1)]


def write_safetensors(path, w):
    header, blobs, at = {}, [], 0
    for name in sorted(w):
        data = w[name].float().numpy().tobytes() if hasattr(w[name], "numpy") else w[name]
        header[name] = {"dtype": "F32", "shape": list(w[name].shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    for case, cfg in CASES.items():
        w = weights(cfg, seed=sum(map(ord, case)))
        d = os.path.join(ROOT, "tests", "data", "hf", case)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        write_safetensors(os.path.join(d, "model.safetensors"), w)
        stream = tokens_file_sequence(cfg["vocab_size"])
        losses = []
        for b in range(BATCH):
            seq = stream[b * SEQ:(b + 1) * SEQ + 1]
            logits = forward(cfg, w, seq[:-1])
            losses.append(torch.nn.functional.cross_entropy(logits, torch.tensor(seq[1:]), reduction="sum"))
        loss = float(sum(losses)) / (BATCH * SEQ)
        out, margin = list(PROMPT), float("inf")
        while len(out) < SEQ:
            last = forward(cfg, w, out)[-1]
            top = last.topk(2).values
            margin = min(margin, float(top[0] - top[1]))
            out.append(int(last.argmax()))
        with open(os.path.join(ROOT, "tests", "data", "hf", case + ".ref"), "w") as f:
            f.write(f"loss {loss:.17g}\nprompt {' '.join(map(str, PROMPT))}\n")
            f.write(f"greedy {' '.join(map(str, out[len(PROMPT):]))}\nmargin {margin:.6g}\n")
        print(f"{case}: loss {loss:.6f}, greedy margin {margin:.4g}")


if __name__ == "__main__":
    sys.exit(main())
