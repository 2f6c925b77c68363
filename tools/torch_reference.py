#!/usr/bin/python3
"""Reference data for one training step, computed independently with PyTorch.

For a config (resolved by `mtxc config`), draws random parameters and a batch,
then computes in float64, following MaxText's layers and optax's update rules:
the loss, every parameter's gradient and the parameters after one AdamW step.
Writes them to a small binary file that tests/unit/test_reference.c reads.

Run only by a developer, to regenerate tests/data (needs python3-torch:
tools/install-deps --with-torch):

    tools/torch_reference.py build/mtxc tests/data/tiny.ref model_name=tiny \\
        per_device_batch_size=2 max_target_length=16 warmup_steps_fraction=0 steps=10

With --two-steps, the optimizer named by opt_type (adamw, adam_pax, sgd, muon) runs
two steps on two batches; the parameters start from formula_params() (which
tests/unit/test_reference.c computes the same way, so they are not stored) and
only every 13th element of the final parameters is stored:

    tools/torch_reference.py --two-steps build/mtxc tests/data/tiny-adam_pax.ref \\
        model_name=tiny opt_type=adam_pax per_device_batch_size=2 max_target_length=16 \\
        warmup_steps_fraction=0 steps=10

With --bf16 (implies --two-steps' form, for three steps), the forward pass
rounds to bfloat16 (round to nearest even, from float32) wherever mtxc's
dtype=bfloat16 program holds a bf16 value, MaxText's points: the embedding
rows, every matmul's output (from bf16 weights, float32 accumulation), bias
adds, norm outputs, RoPE, attention scores, probabilities and context,
activations, residual sums and the logits; the loss and the optimizer run in
float64 as before. The backward pass rounds the gradient of each such value
to bf16; weights' gradients stay unrounded (mtxc's GEMM writes them in
float32):

    tools/torch_reference.py --bf16 build/mtxc tests/data/tiny-bf16.ref \\
        model_name=tiny dtype=bfloat16 per_device_batch_size=2 max_target_length=16 \\
        warmup_steps_fraction=0 steps=10

File format, little-endian, one record after another:
    u32 name length, name (utf-8), u32 dtype (0 f32, 1 i32), u32 rank,
    rank x u64 dims, then the elements.
"""
import json
import math
import struct
import subprocess
import sys

import torch


def resolved_config(mtxc, overrides):
    # the reference shrinks presets (batch, length): the command line may change what they set
    out = subprocess.run([mtxc, "config", "configs/base.yml", "override_model_config=true", *overrides],
                         check=True, capture_output=True, text=True).stdout
    cfg = {}
    for line in out.splitlines():
        if line.startswith("#") or ": " not in line:
            continue
        key, value = line.split(": ", 1)
        value = value.split("  # derived")[0]
        cfg[key] = None if value == "None" else json.loads(value) if not value.startswith("{") else value
    return cfg


def sublayers(c):
    """(layer, names' suffix, sliding window, float32 attention) of each
    attention + MLP block: gemma2's layer is a local and a global one."""
    if c["decoder_block"] != "gemma2":
        return [(l, "", 0, False) for l in range(c["num_decoder_layers"])]
    return [(l, sfx, c["sliding_window_size"] if sfx == "_local" else 0, sfx == "_global")
            for l in range(c["num_decoder_layers"]) for sfx in ("_local", "_global")]


def norm_names(c):
    """A layer's pre-attention and pre-MLP norms, as MaxText names them."""
    if c["decoder_block"].startswith("gemma"):
        return "pre_self_attention_norm", "pre_ffw_norm"
    if c["decoder_block"] == "gpt3":
        return "pre_self_attention_norm", "post_self_attention_norm"
    return "pre_self_attention_layer_norm", "post_self_attention_layer_norm"


def qkv_bias(c):
    return c["decoder_block"] == "qwen2" and c["attention_bias"]


def qk_norm(c):
    return c["use_qk_norm"] and c["decoder_block"] != "gpt3"


def param_shapes(c):
    """Names and shapes as mtxc's model builder declares them."""
    D, H, KV, Dh, M, V = c["emb_dim"], c["num_query_heads"], c["num_kv_heads"], c["head_dim"], c["mlp_dim"], c["vocab_size"]
    gpt3 = c["decoder_block"] == "gpt3"
    gemma2 = c["decoder_block"] == "gemma2"
    qwen = c["decoder_block"].startswith("qwen")
    gated = len(c["mlp_activations"]) == 2
    shapes = {"token_embedder.embedding": (V, D)}
    if gpt3 and c["trainable_position_size"] > 0:
        shapes["position_embedder.embedding"] = (c["trainable_position_size"], D)
    for l, sfx, _, _ in sublayers(c):
        at, mlp = f"layers.{l}.self_attention{sfx}", f"layers.{l}.mlp{sfx}"
        shapes[f"layers.{l}.{norm_names(c)[0]}{sfx}.scale"] = (D,)
        if gpt3:
            shapes[f"layers.{l}.pre_self_attention_norm.bias"] = (D,)
        shapes[f"{at}.query.kernel"] = (D, H * Dh)
        shapes[f"{at}.key.kernel"] = (D, KV * Dh)
        shapes[f"{at}.value.kernel"] = (D, KV * Dh)
        shapes[f"{at}.out.kernel"] = (H * Dh, D)
        if gpt3:
            shapes[f"{at}.query.bias"] = (H * Dh,)
            shapes[f"{at}.key.bias"] = (KV * Dh,)
            shapes[f"{at}.value.bias"] = (KV * Dh,)
            shapes[f"{at}.out.bias"] = (D,)
        elif qkv_bias(c):
            shapes[f"{at}.query.bias"] = (H * Dh,)
            shapes[f"{at}.key.bias"] = (KV * Dh,)
            shapes[f"{at}.value.bias"] = (KV * Dh,)
        if qk_norm(c):
            shapes[f"{at}.query_norm.scale"] = (Dh,)
            shapes[f"{at}.key_norm.scale"] = (Dh,)
        if gemma2 and c["use_post_attn_norm"]:
            shapes[f"layers.{l}.post_self_attention_norm{sfx}.scale"] = (D,)
        if gpt3:
            shapes[f"{mlp}.mlp_layer_norm.scale"] = (D,)
            shapes[f"{mlp}.mlp_layer_norm.bias"] = (D,)
        else:
            shapes[f"layers.{l}.{norm_names(c)[1]}{sfx}.scale"] = (D,)
        if c["decoder_block"] == "mixtral":      # moe.py RoutedMoE, MaxText's names
            E, moe = c["num_experts"], f"layers.{l}.MoeBlock_0"
            shapes[f"{moe}.gate.kernel"] = (D, E)
            shapes[f"{moe}.wi_0"] = (E, D, M)
            shapes[f"{moe}.wi_1"] = (E, D, M)
            shapes[f"{moe}.wo"] = (E, M, D)
            continue
        if gated:
            shapes[f"{mlp}.wi_0.kernel"] = (D, M)
            shapes[f"{mlp}.wi_1.kernel"] = (D, M)
        else:
            shapes[f"{mlp}.wi.kernel"] = (D, M)
        shapes[f"{mlp}.wo.kernel"] = (M, D)
        if gpt3:
            shapes[f"{mlp}.wi.bias"] = (M,)
            shapes[f"{mlp}.wo.bias"] = (D,)
        if gemma2 and c["use_post_ffw_norm"]:
            shapes[f"layers.{l}.post_ffw_norm{sfx}.scale"] = (D,)
    shapes["decoder_norm.scale"] = (D,)
    if gpt3:
        shapes["decoder_norm.bias"] = (D,)
    if not c["logits_via_embedding"]:
        shapes["logits_dense.kernel"] = (D, V)
    return shapes


class _RoundBf16(torch.autograd.Function):
    """A bf16 value: rounded to nearest even (from float32) forward, and its gradient too."""
    @staticmethod
    def forward(ctx, x):
        return x.float().bfloat16().to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g.float().bfloat16().to(g.dtype)


class _CastWeight(torch.autograd.Function):
    """A float32 weight read as bf16: rounded forward; its gradient is not rounded."""
    @staticmethod
    def forward(ctx, w):
        return w.float().bfloat16().to(w.dtype)

    @staticmethod
    def backward(ctx, g):
        return g


BF16 = False                    # --bf16: round where mtxc's bf16 program does


def bf(x):
    return _RoundBf16.apply(x) if BF16 else x


def wcast(w):
    return _CastWeight.apply(w) if BF16 else w


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def layernorm(x, scale, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * (1 + scale) + bias


def llama31_scaled(freq):
    """Meta's Llama 3.1 frequency scaling (llama-models apply_scaling)."""
    factor, low, high, old = 8.0, 1.0, 4.0, 8192.0
    wavelen = 2 * math.pi / freq
    smooth = (old / wavelen - low) / (high - low)
    blended = (1 - smooth) * freq / factor + smooth * freq
    return torch.where(wavelen < old / high, freq, torch.where(wavelen > old / low, freq / factor, blended))


def rope_variant(c):
    """MaxText: Llama's RoPE (pairs 2i, 2i+1) for model_name llama3.1* or rope_type llama3.1."""
    if not (c["model_name"].startswith("llama3.1") or c["rope_type"] == "llama3.1"):
        return "halves"
    return "llama31" if c["rope_use_scale"] else "pairs"


def rope(x, min_ts, max_ts, variant="halves"):
    B, T, H, Dh = x.shape
    half = Dh // 2
    frac = 2 * torch.arange(half, dtype=torch.float64) / Dh
    freq = 1 / (min_ts * (max_ts / min_ts) ** frac)
    if variant == "llama31":
        freq = llama31_scaled(freq)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    sin, cos = torch.sin(angle)[None, :, None, :], torch.cos(angle)[None, :, None, :]
    if variant == "halves":
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).reshape(B, T, H, Dh)


def activation(name, x):
    if name == "silu":
        return torch.nn.functional.silu(x)
    if name == "gelu":
        return torch.nn.functional.gelu(x, approximate="tanh")
    if name == "relu":
        return torch.relu(x)
    return x


def experts(c, P, name, h):
    """MaxText's dropless RoutedMoE, written densely: every expert on every
    token, then each token's k chosen outputs weighted by the softmax of
    their gate logits (top_k on the logits; the weights rounded to dtype and
    summed in float32, float32_weight_sum)."""
    k, E = c["num_experts_per_tok"], c["num_experts"]
    B, T = h.shape[0], h.shape[1]
    logits = bf(h @ wcast(P[f"{name}.gate.kernel"]))
    top, chosen = torch.topk(logits, k, dim=-1)
    weights = torch.softmax(top, dim=-1)
    if c["norm_topk_prob"]:                # get_topk: the weights in dtype over their sum in dtype
        weights = bf(weights)
        weights = bf(weights / bf(weights.sum(-1, keepdim=True)))
    if not c["sparse_matmul"] and c["capacity_factor"] > 0:    # dense_matmul's generate_masks
        cap = int(max(math.ceil(T * k / E) * c["capacity_factor"], c["capacity_factor"]))
        flat = chosen.reshape(B, T * k)
        onehot = torch.nn.functional.one_hot(flat.long(), E)
        count = (onehot.cumsum(1) * onehot).sum(-1)            # position of each choice in its expert's queue
        weights = weights * (count <= cap).reshape(B, T, k).to(weights.dtype)
    weights = bf(weights)
    lb = None
    if c["load_balance_loss_weight"] > 0:                       # moe.py load_balance_loss, per sequence
        probs = bf(torch.softmax(logits, dim=-1))
        density = torch.nn.functional.one_hot(chosen.long(), E).sum(2).to(torch.float64).mean(1)
        lb = (density * probs.mean(1)).mean() * E * E * c["load_balance_loss_weight"]
    act = c["mlp_activations"][0]
    y0 = bf(torch.einsum("btd,edm->btem", h, wcast(P[f"{name}.wi_0"])))
    y1 = bf(torch.einsum("btd,edm->btem", h, wcast(P[f"{name}.wi_1"])))
    hidden = bf(bf(activation(act, y0)) * y1)
    out = bf(torch.einsum("btem,emd->bted", hidden, wcast(P[f"{name}.wo"])))
    picked = out.gather(2, chosen[..., None].expand(*chosen.shape, out.shape[-1]))
    return bf((weights[..., None] * picked).sum(2)), lb


def forward(c, P, inputs, targets, seg):
    D, H, KV, Dh = c["emb_dim"], c["num_query_heads"], c["num_kv_heads"], c["head_dim"]
    eps = c["normalization_layer_epsilon"]
    gpt3 = c["decoder_block"] == "gpt3"
    gemma = c["decoder_block"].startswith("gemma")
    qwen = c["decoder_block"].startswith("qwen")
    B, T = inputs.shape
    norm = (lambda x, p, e=eps: bf(layernorm(x, P[p + ".scale"], P[p + ".bias"], e))) if gpt3 else \
           (lambda x, p, e=eps: bf(rmsnorm(x, P[p + ".scale"], e)))
    layer_eps = 1e-6 if gemma else eps      # MaxText's gemma layer norms: RMSNorm's default epsilon
    dense = lambda x, name: bf(x @ wcast(P[name]))
    x = bf(P["token_embedder.embedding"][inputs])
    if "position_embedder.embedding" in P:
        x = bf(x + P["position_embedder.embedding"][:T][None])
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    lb_losses = []
    for l, sfx, window, f32 in sublayers(c):
        at, mlp = f"layers.{l}.self_attention{sfx}", f"layers.{l}.mlp{sfx}"
        h = norm(x, f"layers.{l}.{norm_names(c)[0]}{sfx}", layer_eps)
        # gemma2's global attention: float32_qk_product and float32_logits (no bf16 rounding)
        ab = (lambda t: t) if f32 else bf

        def proj(name, heads):
            y = dense(h, f"{at}.{name}.kernel")
            if gpt3 or qkv_bias(c):
                y = bf(y + P[f"{at}.{name}.bias"])
            return y.reshape(B, T, heads, Dh)
        q, k, v = proj("query", H), proj("key", KV), proj("value", KV)
        if qk_norm(c):      # per head, before RoPE (attentions.py query_norm / key_norm)
            q = bf(rmsnorm(q, P[f"{at}.query_norm.scale"], eps))
            k = bf(rmsnorm(k, P[f"{at}.key_norm.scale"], eps))
        if not gpt3:
            q = bf(rope(q, c["rope_min_timescale"], c["rope_max_timescale"], rope_variant(c)))
            k = bf(rope(k, c["rope_min_timescale"], c["rope_max_timescale"], rope_variant(c)))
        k = k.repeat_interleave(H // KV, dim=2)
        v = v.repeat_interleave(H // KV, dim=2)
        # MaxText folds 1/sqrt(head_dim) into the query's init (attentions.py
        # init_query_w); gpt3 divides the query at run time, qwen multiplies it
        # by query_pre_attn_scalar = head_dim^-0.5
        s = torch.einsum("bthd,bshd->bhts", q, k)
        s = ab(s / math.sqrt(Dh) if gpt3 or qwen else s)
        if c.get("attn_logits_soft_cap", 0) > 0:      # gemma2: before the mask and softmax
            s = ab(torch.tanh(s / c["attn_logits_soft_cap"]) * c["attn_logits_soft_cap"])
        visible = causal
        if window > 0:      # MaxText's LOCAL_SLIDING: key j visible to query i iff i - window < j <= i
            visible = causal & torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1 - window)
        s = s.masked_fill(~visible, float("-inf"))
        p = ab(torch.softmax(s, dim=-1))
        o = bf(torch.einsum("bhts,bshd->bthd", p, v)).reshape(B, T, H * Dh)
        o = dense(o, f"{at}.out.kernel")
        if gpt3:
            o = bf(o + P[f"{at}.out.bias"])
        if f"layers.{l}.post_self_attention_norm{sfx}.scale" in P and gemma:
            o = norm(o, f"layers.{l}.post_self_attention_norm{sfx}", layer_eps)
        x = bf(x + o)
        h = norm(x, f"{mlp}.mlp_layer_norm" if gpt3 else f"layers.{l}.{norm_names(c)[1]}{sfx}", layer_eps)
        acts = c["mlp_activations"]
        if c["decoder_block"] == "mixtral":
            y, lb = experts(c, P, f"layers.{l}.MoeBlock_0", h)
            if lb is not None:
                lb_losses.append(lb)
            x = bf(x + y)
            continue
        if len(acts) == 2:
            y = bf(bf(activation(acts[0], dense(h, f"{mlp}.wi_0.kernel"))) *
                   bf(activation(acts[1], dense(h, f"{mlp}.wi_1.kernel"))))
        else:
            y = dense(h, f"{mlp}.wi.kernel")
            if gpt3:
                y = bf(y + P[f"{mlp}.wi.bias"])
            y = bf(activation(acts[0], y))
        y = dense(y, f"{mlp}.wo.kernel")
        if gpt3:
            y = bf(y + P[f"{mlp}.wo.bias"])
        if f"layers.{l}.post_ffw_norm{sfx}.scale" in P:
            y = norm(y, f"layers.{l}.post_ffw_norm{sfx}", layer_eps)
        x = bf(x + y)
    x = norm(x, "decoder_norm")
    if c["logits_via_embedding"]:
        logits = x @ wcast(P["token_embedder.embedding"]).T
        if c["normalize_embedding_logits"]:
            logits = logits / math.sqrt(D)
        logits = bf(logits)
        if c.get("final_logits_soft_cap", 0) > 0:      # MaxText: in the tied branch only
            cap = c["final_logits_soft_cap"]
            logits = bf(torch.tanh(logits / cap) * cap)
    else:
        logits = dense(x, "logits_dense.kernel")
    logp = torch.log_softmax(logits, dim=-1)      # MaxText's cast_logits_to_fp32: the loss in full precision
    xent = -logp.gather(-1, targets[..., None])[..., 0]
    w = (seg != 0).to(torch.float64)
    loss = (xent * w).sum() / (w.sum() + 1e-8)
    if lb_losses:                      # train.py: loss += the mean of the layers' moe_lb_loss
        loss = loss + sum(lb_losses) / len(lb_losses)
    return loss


def cosine_lr(c, step):
    """MaxText's cosine schedule (no zero tail needed for the first steps)."""
    total = c["learning_rate_schedule_steps"]
    total = c["steps"] if total == -1 else total
    warmup = int(total * c["warmup_steps_fraction"])
    peak = c["learning_rate"]
    if step < warmup:
        return peak * step / warmup
    a = 0.5 * (math.cos(math.pi * (step - warmup) / (total - warmup)) + 1)
    return peak * a + peak * c["learning_rate_final_fraction"] * (1 - a)


def is_hidden_matrix(name, p):
    """Muon's share: 2-D attention and MLP kernels, not embeddings or the output head."""
    return p.dim() == 2 and name not in ("token_embedder.embedding", "position_embedder.embedding",
                                         "logits_dense.kernel")


def optimizer_step(c, P, G, state, step):
    """optax clip_by_global_norm, then MaxText's opt_type, at update `step` (0-based)."""
    norm = math.sqrt(sum(float((g * g).sum()) for g in G.values()))
    thr = c["gradient_clipping_threshold"]
    clip = 1.0 if thr <= 0 or norm < thr else thr / norm
    lr = cosine_lr(c, step)
    b1, b2, eps, eps_root, wd = c["adam_b1"], c["adam_b2"], c["adam_eps"], c["adam_eps_root"], c["adam_weight_decay"]
    t = step + 1
    out = {}
    for name, p in P.items():
        g = G[name] * clip
        if c["opt_type"] == "sgd":                       # optax.sgd
            out[name] = p - lr * g
            continue
        if c["opt_type"] == "muon":                      # optax.contrib.muon, nesterov=True
            if is_hidden_matrix(name, p):
                beta, mu = c["muon_beta"], state.get(name, torch.zeros_like(p))
                mu = beta * mu + (1 - beta) * g
                x = beta * mu / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta ** t)
                transposed = x.shape[0] > x.shape[1]
                if transposed:
                    x = x.T
                x = x / (torch.linalg.norm(x) + eps)
                for _ in range(5):
                    a = x @ x.T
                    x = 3.4445 * x + (-4.7750 * a + 2.0315 * a @ a) @ x
                if transposed:
                    x = x.T
                u = math.sqrt(max(1.0, p.shape[1] / p.shape[0])) * x
                state[name] = mu
                out[name] = p - lr * (u + c["muon_weight_decay"] * p)
                continue
            mu, nu = state.get(name, (torch.zeros_like(p), torch.zeros_like(p)))
            mu, nu = b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g * g
            m = b1 * mu / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1 ** t)
            state[name] = (mu, nu)
            out[name] = p - lr * (m / (torch.sqrt(nu / (1 - b2 ** t) + eps_root) + eps) + wd * p)
            continue
        mu, nu = state.get(name, (torch.zeros_like(p), torch.zeros_like(p)))
        if c["opt_type"] == "adam_pax":                  # bias correction folded into the decays
            d1 = b1 * (1 - b1 ** (t - 1)) / (1 - b1 ** t)
            d2 = b2 * (1 - b2 ** (t - 1)) / (1 - b2 ** t)
            mu, nu = (1 - d1) * g + d1 * mu, (1 - d2) * g * g + d2 * nu
            update = mu / (torch.sqrt(nu + eps_root) + eps) + wd * p
        else:                                            # optax.adamw
            mu, nu = b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g * g
            update = (mu / (1 - b1 ** t)) / (torch.sqrt(nu / (1 - b2 ** t) + eps_root) + eps) + wd * p
        state[name] = (mu, nu)
        out[name] = p - lr * update
    return out, norm


def fnv1a(name):
    h = 1469598103934665603
    for byte in name.encode():
        h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def init_scale(c, name):
    """A tensor's scale beside the others: MaxText divides the query
    kernel's init by sqrt(head_dim) (attentions.py init_query_w; not gpt3,
    which divides the query at run time, nor qwen, which scales it at run
    time, nor with qk norms), so the test parameters do too:
    otherwise the scores are sqrt(head_dim) times too large and softmax
    saturates."""
    if c["decoder_block"] != "gpt3" and not c["decoder_block"].startswith("qwen") and not qk_norm(c) \
            and name.endswith(".query.kernel"):
        return 1 / math.sqrt(c["head_dim"])
    return 1.0


def formula_params(c, shapes, amplitude=0.5):
    """Deterministic parameters both PyTorch and the C test compute exactly:
    amplitude * sin(0.37 * i + 1.3 * k) for element i of a tensor whose name
    hashes (FNV-1a 64) to k mod 997, in float64, then rounded to float32.
    (--bf16 uses amplitude 0.1, near the scale of real inits: at 0.5 the
    attention saturates and bf16 rounding alone moves the gradient norm by a
    fifth, so the comparison would measure chaos, not rounding points.)"""
    P = {}
    for name, shape in shapes.items():
        k = fnv1a(name) % 997
        n = math.prod(shape)
        a = amplitude * init_scale(c, name)
        x = [a * math.sin(0.37 * i + 1.3 * k) for i in range(n)]
        P[name] = torch.tensor(x, dtype=torch.float64).to(torch.float32).reshape(shape)
    return P


def random_batch(B, T, V, gen):
    inputs = torch.randint(0, V, (B, T), dtype=torch.int32, generator=gen)
    targets = torch.randint(0, V, (B, T), dtype=torch.int32, generator=gen)
    seg = torch.ones(B, T, dtype=torch.int32)
    seg[0, T - 3:] = 0          # padding at the end of the first sequence is not counted
    return inputs, targets, seg


def record(f, name, t):
    t = t.detach().contiguous()
    dtype = 1 if t.dtype == torch.int32 else 0
    data = t.numpy().astype("<i4" if dtype else "<f4").tobytes()
    enc = name.encode()
    f.write(struct.pack("<I", len(enc)) + enc + struct.pack("<II", dtype, t.dim()))
    f.write(struct.pack(f"<{t.dim()}Q", *t.shape) + data)


def loss_and_grads(c, P, batch):
    P64 = {n: p.to(torch.float64).requires_grad_() for n, p in P.items()}
    inputs, targets, seg = batch
    loss = forward(c, P64, inputs.long(), targets.long(), seg)
    loss.backward()
    return loss.item(), {n: p.grad for n, p in P64.items()}


def two_steps(c, path, nsteps=2):
    B, T, V = c["global_batch_size_to_train_on"], c["max_target_length"], c["vocab_size"]
    gen = torch.Generator().manual_seed(4321)
    batches = [random_batch(B, T, V, gen) for _ in range(nsteps)]
    P = {n: p.to(torch.float64) for n, p in formula_params(c, param_shapes(c), 0.1 if BF16 else 0.5).items()}
    state, losses, norms = {}, [], []
    for step, batch in enumerate(batches):
        loss, G = loss_and_grads(c, P, batch)
        with torch.no_grad():
            P, norm = optimizer_step(c, P, G, state, step)
        losses.append(loss)
        norms.append(norm)
    with open(path, "wb") as f:
        for k, batch in enumerate(batches):
            for name, t in zip(("inputs", "targets", "segmentation"), batch):
                record(f, f"batch{k + 1}/{name}", t)
        record(f, "losses", torch.tensor(losses))
        record(f, "grad_norms", torch.tensor(norms))
        for n in P:
            record(f, "final_every_13th/" + n, P[n].flatten()[::13].clone())
    print(f"{path}: {c['opt_type']}{' bf16' if BF16 else ''}, losses", " ".join(f"{x:.6f}" for x in losses),
          "grad norms", " ".join(f"{x:.6f}" for x in norms))


def main():
    global BF16
    args = sys.argv[1:]
    two = bool(args) and args[0] == "--two-steps"
    BF16 = bool(args) and args[0] == "--bf16"
    if two or BF16:
        args = args[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    mtxc, path, overrides = args[0], args[1], args[2:]
    c = resolved_config(mtxc, overrides)
    if BF16:
        return two_steps(c, path, 3)
    if two:
        return two_steps(c, path)
    torch.manual_seed(1234)
    B, T, V = c["global_batch_size_to_train_on"], c["max_target_length"], c["vocab_size"]
    P = {n: (0.5 * init_scale(c, n) * torch.randn(*s)).to(torch.float32) for n, s in param_shapes(c).items()}
    inputs, targets, seg = random_batch(B, T, V, None)
    P64 = {n: p.to(torch.float64).requires_grad_() for n, p in P.items()}
    loss = forward(c, P64, inputs.long(), targets.long(), seg)
    loss.backward()
    G = {n: p.grad for n, p in P64.items()}
    with torch.no_grad():
        updated, norm = optimizer_step(c, {n: p.detach() for n, p in P64.items()}, G, {}, 0)
    with open(path, "wb") as f:
        record(f, "batch/inputs", inputs)
        record(f, "batch/targets", targets)
        record(f, "batch/segmentation", seg)
        record(f, "loss", torch.tensor([loss.item()]))
        record(f, "grad_norm", torch.tensor([norm]))
        for n in P:
            record(f, "params/" + n, P[n])
            record(f, "grad/" + n, G[n])
            record(f, "updated/" + n, updated[n])
    print(f"{path}: loss {loss.item():.6f}, grad norm {norm:.6f}, {len(P)} parameters")


if __name__ == "__main__":
    main()
