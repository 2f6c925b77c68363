#!/usr/bin/python3
"""An independent reference for importing Hugging Face checkpoints: small
random models in Hugging Face's layout (config.json with HF's field names,
model.safetensors with HF's tensor names, nn.Linear's [out, in] weights),
and what they compute, in float64 PyTorch from HF's modelling conventions
(transformers' modeling_llama.py: RMSNorm, rotate_half RoPE with the
"llama3" rope_scaling, grouped-query attention with repeat_kv, SwiGLU MLP;
modeling_qwen2.py's q/k/v biases; modeling_qwen3.py's per-head q/k norms
before RoPE and tied embeddings; modeling_gemma.py's (1 + w) RMSNorm,
sqrt(hidden) embedding normalizer and tanh GeGLU; modeling_gemma2.py's four
norms a layer, query_pre_attn_scalar, attention and final soft caps and
sliding window on even layers; modeling_mixtral.py's softmax -> top-k ->
renormalise routing over SwiGLU experts).
Nothing of mtxc is used.

A case may have a smaller vocabulary than mtxc's model (pad_to): mtxc pads
the table with zero rows, as MaxText's converter does, so its logits have
pad_to - vocab_size more entries, each 0; the loss and greedy tokens here are
computed over logits padded the same way (the test decodes token ids, with
no tokenizer to restrict the choice to the real vocabulary).

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
    # configs/models/tiny-gemma.yml, its vocabulary 6 rows short of mtxc's 256
    "gemma-tiny": dict(TINY, architectures=["GemmaForCausalLM"], model_type="gemma", num_key_value_heads=1,
                       head_dim=32, vocab_size=250, pad_to=256, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh"),
    # configs/models/tiny-gemma2.yml (4 HF layers: 2 of mtxc's local/global pairs), query_pre_attn_scalar 24
    "gemma2-tiny": dict(TINY, architectures=["Gemma2ForCausalLM"], model_type="gemma2", head_dim=32,
                        num_hidden_layers=4, rms_norm_eps=1e-6, tie_word_embeddings=True,
                        hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                        query_pre_attn_scalar=24, sliding_window=8, attn_logit_softcapping=4.0,
                        final_logit_softcapping=8.0),
    # configs/models/tiny-mixtral.yml: 4 experts, 2 a token
    "mixtral-tiny": dict(TINY, architectures=["MixtralForCausalLM"], model_type="mixtral", intermediate_size=96,
                         num_local_experts=4, num_experts_per_tok=2, sliding_window=None, rope_scaling=None),
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
    gemma = cfg["model_type"].startswith("gemma")
    def norm_weight(n):   # gemma's norms compute x (1 + w)
        return normal(n, std=0.1) if gemma else bf16(1 + normal(n, std=0.1))
    w = {"model.embed_tokens.weight": normal(V, E, std=1.0), "model.norm.weight": norm_weight(E)}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(V, E, std=E ** -0.5)
    else:   # logits = h @ embed.T: a smaller table keeps them in range
        w["model.embed_tokens.weight"] = normal(V, E, std=E ** -0.5)
    norms = ["input_layernorm", "post_attention_layernorm"]
    if cfg["model_type"] == "gemma2":
        norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        for n in norms:
            w[p + n + ".weight"] = norm_weight(E)
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
        if cfg["model_type"] == "mixtral":
            w[p + "block_sparse_moe.gate.weight"] = normal(cfg["num_local_experts"], E, std=E ** -0.5)
            for e in range(cfg["num_local_experts"]):
                q = p + f"block_sparse_moe.experts.{e}."
                w[q + "w1.weight"] = normal(F, E, std=E ** -0.5)
                w[q + "w3.weight"] = normal(F, E, std=E ** -0.5)
                w[q + "w2.weight"] = normal(E, F, std=F ** -0.5)
            continue
        w[p + "mlp.gate_proj.weight"] = normal(F, E, std=E ** -0.5)
        w[p + "mlp.up_proj.weight"] = normal(F, E, std=E ** -0.5)
        w[p + "mlp.down_proj.weight"] = normal(E, F, std=F ** -0.5)
    return w


def inv_freq(cfg):
    """HF's rotary frequencies, with the llama3 rope_scaling when set (_compute_llama3_parameters)."""
    Dh = cfg["head_dim"]
    f = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, Dh, 2) / Dh))
    s = cfg.get("rope_scaling")
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


def softcap(x, cap):
    return torch.tanh(x / cap) * cap if cap else x


def mlp(cfg, w, p, h):
    if cfg["model_type"] == "mixtral":   # softmax over all experts, the top k renormalised
        probs = (h @ w[p + "block_sparse_moe.gate.weight"].T).softmax(-1)
        top, chosen = probs.topk(cfg["num_experts_per_tok"], dim=-1)
        top = top / top.sum(-1, keepdim=True)
        out = torch.zeros_like(h)
        for e in range(cfg["num_local_experts"]):
            q = p + f"block_sparse_moe.experts.{e}."
            y = (torch.nn.functional.silu(h @ w[q + "w1.weight"].T) * (h @ w[q + "w3.weight"].T)) @ w[q + "w2.weight"].T
            out += y * (top * (chosen == e)).sum(-1, keepdim=True)
        return out
    gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
    act = (torch.nn.functional.gelu(gate, approximate="tanh") if cfg["model_type"].startswith("gemma")
           else torch.nn.functional.silu(gate))
    return (act * up) @ w[p + "mlp.down_proj.weight"].T


def forward(cfg, w, tokens):
    """Logits [T, V] of one sequence (V: pad_to when the case pads, the extra logits 0)."""
    E, H, KV, Dh = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    gemma, gemma2 = cfg["model_type"].startswith("gemma"), cfg["model_type"] == "gemma2"
    eps = cfg["rms_norm_eps"]
    norm = (lambda x, n: rmsnorm(x, 1 + n, eps)) if gemma else (lambda x, n: rmsnorm(x, n, eps))
    T = len(tokens)
    def padded(table):   # mtxc's zero rows past the checkpoint's vocabulary
        return torch.cat((table, torch.zeros(cfg.get("pad_to", cfg["vocab_size"]) - cfg["vocab_size"], E)))
    x = padded(w["model.embed_tokens.weight"])[torch.tensor(tokens)]
    if gemma:
        x = x * math.sqrt(E)
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq(cfg))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    causal = torch.full((T, T), float("-inf")).triu(1)
    window = causal + torch.full((T, T), float("-inf")).tril(-(cfg.get("sliding_window") or T))   # keys j <= i - W
    scale = cfg.get("query_pre_attn_scalar", Dh) ** -0.5 if gemma2 else Dh ** -0.5
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q, k, v = (h @ w[p + f"self_attn.{n}_proj.weight"].T + w.get(p + f"self_attn.{n}_proj.bias", 0)
                   for n in "qkv")
        q, k, v = q.view(T, H, Dh), k.view(T, KV, Dh), v.view(T, KV, Dh)
        if p + "self_attn.q_norm.weight" in w:   # Qwen3: RMSNorm over each head, before RoPE
            q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        scores = softcap(torch.einsum("qhd,khd->hqk", q, k) * scale, cfg.get("attn_logit_softcapping"))
        scores = scores + (window if gemma2 and l % 2 == 0 else causal)   # gemma2: even layers slide
        o = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(T, H * Dh) @ w[p + "self_attn.o_proj.weight"].T
        if gemma2:
            x = x + norm(o, w[p + "post_attention_layernorm.weight"])
            x = x + norm(mlp(cfg, w, p, norm(x, w[p + "pre_feedforward_layernorm.weight"])),
                         w[p + "post_feedforward_layernorm.weight"])
        else:
            x = x + o
            x = x + mlp(cfg, w, p, norm(x, w[p + "post_attention_layernorm.weight"]))
    head = padded(w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"])
    return softcap(norm(x, w["model.norm.weight"]) @ head.T, cfg.get("final_logit_softcapping"))


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
            json.dump({k: v for k, v in cfg.items() if k != "pad_to"}, f, indent=2)
        write_safetensors(os.path.join(d, "model.safetensors"), w)
        stream = tokens_file_sequence(cfg.get("pad_to", cfg["vocab_size"]))
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
