#!/usr/bin/python3
"""An independent PyTorch reference of the RETRO network defined in docs/model.md.

It shares no code with retro's C implementation (model/retro.c); the only contract
between the two is docs/model.md and the fixture this script writes.

Subcommands:

  retro_ref.py fixture OUT.safetensors
      Builds a tiny model, runs it in float64 (the "truth") and writes parameters,
      inputs, logits, loss, gradients and two short AdamW training runs (full
      training and RETRO-fitting) into a safetensors file for tests/test_model.c.

  retro_ref.py bench [--threads N] [--steps S] [--warmup W] [--baseline] [config]
      A float32 training benchmark of the same architecture (forward + backward +
      gradient clipping + AdamW), printing one JSON line.

Only torch and numpy are needed (Debian's python3-torch, 1.13: no
F.scaled_dot_product_attention, so attention is written out by hand).
"""
import argparse
import json
import math
import statistics
import struct
import sys
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------
# Configuration


class Config:
    """The network's hyperparameters; `cca` holds 1-based decoder layer numbers."""

    KEYS = ("V", "C", "L", "NH", "F", "T", "m", "K", "R", "EL", "EC", "ENH", "EF", "cca", "B")

    def __init__(self, V, C, L, NH, F, T, m, K, R, EL, EC, ENH, EF, cca, B):
        self.V, self.C, self.L, self.NH, self.F = V, C, L, NH, F
        self.T, self.m, self.K, self.R = T, m, K, R
        self.EL, self.EC, self.ENH, self.EF = EL, EC, ENH, EF
        self.cca = sorted(cca)
        self.B = B
        assert T % m == 0, "T must be a multiple of m"
        assert C % NH == 0 and (C // NH) % 2 == 0, "decoder head size must be even"
        assert EC % ENH == 0 and (EC // ENH) % 2 == 0, "encoder head size must be even"
        assert all(1 <= l <= L for l in self.cca)

    @property
    def Lc(self):
        return self.T // self.m

    def is_cca(self, l):
        """Whether 0-based decoder layer l carries chunked cross-attention."""
        return (l + 1) in self.cca

    def as_dict(self):
        return {k: getattr(self, k) for k in self.KEYS}


TINY = Config(V=48, C=16, L=4, NH=2, F=64, T=16, m=4, K=2, R=8, EL=2, EC=8, ENH=2, EF=32,
              cca=[2, 4], B=2)

# ----------------------------------------------------------------------------
# Parameters


def param_shapes(cfg):
    """(name, shape) of every parameter, in the order of docs/model.md's table."""
    C, F_, EC, EF = cfg.C, cfg.F, cfg.EC, cfg.EF
    out = [("wte", (cfg.V, C))]
    for l in range(cfg.L):
        p = "h.%d." % l
        out += [(p + "ln1", (C,)), (p + "attn_qkv", (3 * C, C)), (p + "attn_proj", (C, C))]
        if cfg.is_cca(l):
            out += [(p + "cca_ln", (C,)), (p + "cca_q", (C, C)), (p + "cca_kv", (2 * C, EC)),
                    (p + "cca_qb", (C,)), (p + "cca_kb", (C,)), (p + "cca_proj", (C, C))]
        out += [(p + "ln2", (C,)), (p + "fc", (F_, C)), (p + "fc_proj", (C, F_))]
    out.append(("ln_f", (C,)))
    if cfg.cca:  # the encoder exists only when there are CCA layers
        out.append(("enc.in", (EC, C)))
        for j in range(cfg.EL):
            p = "enc.%d." % j
            out += [(p + "ln1", (EC,)), (p + "attn_qkv", (3 * EC, EC)), (p + "attn_proj", (EC, EC))]
            if j == 0:
                out += [(p + "x_ln", (EC,)), (p + "x_q", (EC, EC)), (p + "x_kv", (2 * EC, C)),
                        (p + "x_proj", (EC, EC))]
            out += [(p + "ln2", (EC,)), (p + "fc", (EF, EC)), (p + "fc_proj", (EC, EF))]
        out.append(("enc.ln_f", (EC,)))
    return out


CCA_BIAS_INIT = 4.0  # every element of the CCA's query and key biases at initialisation


def init_params(cfg, seed=1234):
    """float32 parameters, initialised as docs/model.md says, drawn in table order."""
    gen = torch.Generator().manual_seed(seed)
    dec_resid = 0.02 / math.sqrt(2 * cfg.L)   # projections into the decoder's residual stream
    enc_resid = 0.02 / math.sqrt(2 * cfg.EL)  # ... and into the encoder's
    params = OrderedDict()
    for name, shape in param_shapes(cfg):
        last = name.rsplit(".", 1)[-1]
        if last in ("cca_qb", "cca_kb"):      # CCA query and key biases
            params[name] = torch.full(shape, CCA_BIAS_INIT, dtype=torch.float32)
            continue
        if len(shape) == 1:                   # norm gains
            params[name] = torch.ones(shape, dtype=torch.float32)
            continue
        std = 0.02
        if name.startswith("h.") and last in ("attn_proj", "fc_proj", "cca_proj"):
            std = dec_resid
        elif name.startswith("enc.") and last in ("attn_proj", "x_proj", "fc_proj"):
            std = enc_resid
        params[name] = torch.randn(shape, generator=gen, dtype=torch.float32) * std
    return params


# ----------------------------------------------------------------------------
# Building blocks


def rmsnorm(x, g):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g


def gelu(x):
    """GPT-2's tanh approximation:
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (checked against F.gelu by the fixture)."""
    return F.gelu(x, approximate="tanh")


def gelu_explicit(x):
    """The same formula written out, for the fixture's self-check."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def rope_tables(n, hs, dtype):
    """cos/sin of the angles pos * 10000^(-2i/hs), pos = 0..n-1, i = 0..hs/2-1: (n, hs/2)."""
    i = torch.arange(hs // 2, dtype=torch.float64)
    inv_freq = torch.pow(10000.0, -2.0 * i / hs)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def rope(x, cos, sin):
    """Rotate the pairs (x[2i], x[2i+1]) of x (..., n, hs) counter-clockwise by the
    angles of the tables (n, hs/2):  (a, b) -> (a cos - b sin, a sin + b cos)."""
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


def split_heads(x, nh):
    """(N, n, D) -> (N, nh, n, D/nh): head h owns the columns h*hs .. h*hs+hs-1."""
    N, n, D = x.shape
    return x.view(N, n, nh, D // nh).transpose(1, 2)


def merge_heads(x):
    """(N, nh, n, hs) -> (N, n, nh*hs)."""
    N, nh, n, hs = x.shape
    return x.transpose(1, 2).reshape(N, n, nh * hs)


def attention(q, k, v, visible=None):
    """softmax(q k^T / sqrt(hs)) v over the keys each query may see.

    q (N, H, nq, hs), k and v (N, H, nk, hs); `visible` is a boolean tensor that
    broadcasts to (N, H, nq, nk) (True = the query may see the key), or None for all.
    A query that sees no key outputs exactly zero: its row of scores is left finite
    (no -inf, so neither the softmax nor its gradient produces NaN) and its
    probabilities are then replaced by zeros.
    """
    # scaling q rather than the (nq, nk) scores saves an operation on the big tensor
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
    if visible is None:
        return torch.matmul(torch.softmax(scores, dim=-1), v)
    # the mask ops run on visible's own (broadcastable, usually small) shape
    any_visible = visible.any(dim=-1, keepdim=True)
    # hide the invisible keys, but only in rows where something stays visible
    scores = scores.masked_fill(~visible & any_visible, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    if not bool(any_visible.all()):
        p = p.masked_fill(~any_visible, 0.0)
    return torch.matmul(p, v)


def self_attention(a, w_qkv, w_proj, nh, cos, sin, visible):
    """Multi-head self-attention with rotary positions on q and k: (N, n, D) -> (N, n, D)."""
    q, k, v = (a @ w_qkv.t()).chunk(3, dim=-1)
    q, k, v = split_heads(q, nh), split_heads(k, nh), split_heads(v, nh)
    q, k = rope(q, cos, sin), rope(k, cos, sin)
    return merge_heads(attention(q, k, v, visible)) @ w_proj.t()


# ----------------------------------------------------------------------------
# The network


def encoder(P, cfg, nbr, c):
    """E (B, Lc, K, R, EC) for the neighbour tokens nbr (B, Lc, K, R) and the decoder's
    normed activations c (B, T, C) at the first CCA layer."""
    B, Lc, K, R = nbr.shape
    EC, m, nh = cfg.EC, cfg.m, cfg.ENH
    dt = P["wte"].dtype
    valid = nbr != -1                                        # (B, Lc, K, R)
    # token embeddings, zero for the -1 padding, projected to the encoder width
    emb = P["wte"][nbr.clamp(min=0)] * valid.unsqueeze(-1).to(dt)
    h = (emb @ P["enc.in"].t()).reshape(B * Lc * K, R, EC)
    cos, sin = rope_tables(R, EC // nh, dt)
    kmask = valid.reshape(B * Lc * K, 1, 1, R)               # keys: existing tokens only
    # the keys of every neighbour of chunk u: the m rows of chunk u of c
    cu = c.reshape(B * Lc, m, cfg.C)
    for j in range(cfg.EL):
        p = "enc.%d." % j
        a = rmsnorm(h, P[p + "ln1"])
        h = h + self_attention(a, P[p + "attn_qkv"], P[p + "attn_proj"], nh, cos, sin, kmask)
        if j == 0:
            # cross-attention to the decoder chunk: all K*R rows of the K neighbours of
            # chunk u are queries against the same m keys (no positions, no mask)
            a = rmsnorm(h, P[p + "x_ln"])
            q = split_heads((a @ P[p + "x_q"].t()).reshape(B * Lc, K * R, EC), nh)
            k, v = (cu @ P[p + "x_kv"].t()).chunk(2, dim=-1)
            o = merge_heads(attention(q, split_heads(k, nh), split_heads(v, nh)))
            h = h + (o @ P[p + "x_proj"].t()).reshape(B * Lc * K, R, EC)
        a = rmsnorm(h, P[p + "ln2"])
        h = h + gelu(a @ P[p + "fc"].t()) @ P[p + "fc_proj"].t()
    return rmsnorm(h, P["enc.ln_f"]).reshape(B, Lc, K, R, EC)


def chunked_cross_attention(P, cfg, l, c, E, nbr):
    """The CCA update of layer l, (B, T, C), already shifted to the positions it is
    added at: query i of chunk u is position u*m + m-1 + i (positions >= T dropped)."""
    B, T, C = c.shape
    m, Lc, K, R, nh = cfg.m, cfg.Lc, cfg.K, cfg.R, cfg.NH
    p = "h.%d." % l
    # g[b, u, i] = c[b, u*m + m-1 + i], zero past the end: c shifted left by m-1
    g = torch.cat((c[:, m - 1:], c.new_zeros(B, m - 1, C)), dim=1).reshape(B * Lc, m, C)
    q = split_heads(g @ P[p + "cca_q"].t() + P[p + "cca_qb"], nh)
    k, v = (E.reshape(B * Lc, K * R, cfg.EC) @ P[p + "cca_kv"].t()).chunk(2, dim=-1)
    k = k + P[p + "cca_kb"]
    k, v = split_heads(k, nh), split_heads(v, nh)
    # relative positions: query i of the span at position m + i, token j of each
    # neighbour at position j (a neighbour's continuation token i + m lines up with
    # the query that predicts it, at relative distance 0)
    cos, sin = rope_tables(max(2 * m, R), C // nh, q.dtype)
    q = rope(q, cos[m:2 * m], sin[m:2 * m])
    N, H, _, hs = k.shape
    k = rope(k.reshape(N, H, K, R, hs), cos[:R], sin[:R]).reshape(N, H, K * R, hs)
    kmask = (nbr != -1).reshape(B * Lc, 1, 1, K * R)
    o = merge_heads(attention(q, k, v, kmask))
    o = (o @ P[p + "cca_proj"].t()).reshape(B, T, C)
    # o[:, s] belongs at position s + m-1: shift right by m-1, dropping the overflow
    return torch.cat((o.new_zeros(B, m - 1, C), o[:, :T - (m - 1)]), dim=1)


def forward(P, cfg, idx, nbr, targets=None, use_cca=True):
    """logits (B, T, V) and, given targets, the mean cross-entropy over targets != -1.

    P maps parameter names to tensors (all of one dtype, which the computation uses).
    use_cca=False runs the same decoder with its CCA layers skipped (used to check
    that a model whose neighbours are all missing equals it exactly).
    """
    B, T = idx.shape
    C, nh = cfg.C, cfg.NH
    dt = P["wte"].dtype
    cos, sin = rope_tables(T, C // nh, dt)
    causal = torch.ones(T, T, dtype=torch.bool).tril()       # key j visible to query i if j <= i
    x = P["wte"][idx]
    E = None
    for l in range(cfg.L):
        p = "h.%d." % l
        a = rmsnorm(x, P[p + "ln1"])
        x = x + self_attention(a, P[p + "attn_qkv"], P[p + "attn_proj"], nh, cos, sin, causal)
        if use_cca and cfg.is_cca(l):
            c = rmsnorm(x, P[p + "cca_ln"])
            if E is None:                                    # the first CCA layer
                E = encoder(P, cfg, nbr, c)
            x = x + chunked_cross_attention(P, cfg, l, c, E, nbr)
        a = rmsnorm(x, P[p + "ln2"])
        x = x + gelu(a @ P[p + "fc"].t()) @ P[p + "fc_proj"].t()
    logits = rmsnorm(x, P["ln_f"]) @ P["wte"].t()
    if targets is None:
        return logits, None
    loss = F.cross_entropy(logits.reshape(-1, cfg.V), targets.reshape(-1).long(), ignore_index=-1)
    return logits, loss


# ----------------------------------------------------------------------------
# Training: AdamW as docs/model.md defines it (written out, for the fixture)

ADAMW = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1,
         "clip": 1.0, "steps": 10}


def is_fitted(name):
    """The parameters RETRO-fitting trains: the encoder and the decoder's CCA."""
    return name.startswith("enc.") or ".cca_" in name


def train(P0, cfg, idx, nbr, targets, trained, hp=ADAMW):
    """hp["steps"] AdamW steps at a constant learning rate on one batch, training only
    the names in `trained`. Returns (losses before each update, final parameters)."""
    lr, b1, b2, eps, wd, clip = (hp[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "clip"))
    P = OrderedDict((n, t.detach().clone().requires_grad_(n in trained)) for n, t in P0.items())
    mom = {n: torch.zeros_like(P[n]) for n in trained}
    vel = {n: torch.zeros_like(P[n]) for n in trained}
    losses = []
    for step in range(1, hp["steps"] + 1):
        _, loss = forward(P, cfg, idx, nbr, targets)
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, [P[n] for n in trained])
        grads = dict(zip(trained, grads))
        # global-norm clipping over the trained gradients
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        scale = clip / (norm + 1e-6) if norm > clip else 1.0
        with torch.no_grad():
            for n in trained:
                p, g = P[n], grads[n] * scale
                if p.dim() == 2:                         # decoupled decay, matrices only
                    p -= lr * wd * p
                mom[n].mul_(b1).add_(g, alpha=1 - b1)
                vel[n].mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat = mom[n] / (1 - b1 ** step)
                v_hat = vel[n] / (1 - b2 ** step)
                p -= lr * m_hat / (v_hat.sqrt() + eps)
    return losses, OrderedDict((n, t.detach()) for n, t in P.items())


def make_torch_adamw(params, hp=ADAMW):
    """torch.optim.AdamW with the same hyperparameters: decay on matrices only."""
    decay = [t for t in params if t.dim() == 2]
    no_decay = [t for t in params if t.dim() != 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])


def torch_adamw_losses(P0, cfg, idx, nbr, targets, hp=ADAMW):
    """The losses of train() (all parameters trained), computed with torch.optim."""
    P = OrderedDict((n, t.detach().clone().requires_grad_(True)) for n, t in P0.items())
    params = list(P.values())
    opt = make_torch_adamw(params, hp)
    losses = []
    for _ in range(hp["steps"]):
        opt.zero_grad(set_to_none=True)
        _, loss = forward(P, cfg, idx, nbr, targets)
        losses.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, hp["clip"])
        opt.step()
    return losses


# ----------------------------------------------------------------------------
# safetensors writer (struct + json + numpy)

ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}


def write_safetensors(path, tensors, metadata):
    """tensors: OrderedDict name -> numpy array (float32 or int32), laid out in order."""
    header, blobs, off = OrderedDict(), [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": ST_DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * (-len(hdr) % 8)                        # pad to a multiple of 8
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for raw in blobs:
            f.write(raw)


# ----------------------------------------------------------------------------
# fixture


def fixture_inputs(cfg, seed=4321):
    """idx, targets (B, T) and nbr (B, Lc, K, R) as int64, with the special cases."""
    gen = torch.Generator().manual_seed(seed)
    B, T = cfg.B, cfg.T
    idx = torch.randint(0, cfg.V, (B, T), generator=gen)
    targets = torch.randint(0, cfg.V, (B, T), generator=gen)
    targets[0, 5] = -1                                   # two targets not counted
    targets[1, 12] = -1
    nbr = torch.randint(0, cfg.V, (B, cfg.Lc, cfg.K, cfg.R), generator=gen)
    nbr[0, 1, 0, :] = -1                                 # a missing neighbour
    nbr[0, 2, 1, -3:] = -1                               # a neighbour cut short by 3 tokens
    nbr[1, 2, :, :] = -1                                 # a chunk without neighbours
    return idx, targets, nbr


def check_gradients(P64, cfg, idx, nbr, targets, grads):
    """Compare autograd's gradients with central finite differences on a few entries
    of every parameter, and run gradcheck on a couple of whole parameters."""
    gen = torch.Generator().manual_seed(7)
    h, worst = 1e-5, 0.0
    with torch.no_grad():
        for name, p in P64.items():
            flat = p.view(-1)
            for i in torch.randint(0, flat.numel(), (3,), generator=gen).tolist():
                old = flat[i].item()
                flat[i] = old + h
                lp = forward(P64, cfg, idx, nbr, targets)[1].item()
                flat[i] = old - h
                lm = forward(P64, cfg, idx, nbr, targets)[1].item()
                flat[i] = old
                fd, ad = (lp - lm) / (2 * h), grads[name].view(-1)[i].item()
                err = abs(fd - ad) / max(1e-4, abs(fd), abs(ad))
                worst = max(worst, err)
                assert err < 1e-5, "gradient mismatch in %s[%d]: fd %g autograd %g" % (name, i, fd, ad)

    for names in (["h.1.cca_q", "enc.0.x_ln"], ["h.3.cca_kv", "enc.1.attn_qkv"]):
        def f(*ts):
            Q = OrderedDict(P64)
            Q.update(zip(names, ts))
            return forward(Q, cfg, idx, nbr, targets)[1]
        ts = tuple(P64[n].detach().clone().requires_grad_(True) for n in names)
        assert torch.autograd.gradcheck(f, ts, eps=1e-6, atol=1e-8, rtol=1e-5)
    return worst


def cmd_fixture(args):
    cfg = TINY
    P32 = init_params(cfg)
    # the CCA biases start as one constant; random values exercise them in every
    # direction (and keep the tiny heads' attention soft enough that float32 and
    # float64 AdamW runs stay comparable)
    gen = torch.Generator().manual_seed(99)
    for name in P32:
        if name.endswith((".cca_qb", ".cca_kb")):
            P32[name] = torch.randn(P32[name].shape, generator=gen, dtype=torch.float32)
    P64 = OrderedDict((n, t.double()) for n, t in P32.items())  # exact widening
    idx, targets, nbr = fixture_inputs(cfg)

    # forward and gradients in float64
    Pg = OrderedDict((n, t.clone().requires_grad_(True)) for n, t in P64.items())
    logits, loss = forward(Pg, cfg, idx, nbr, targets)
    loss.backward()
    grads = OrderedDict((n, t.grad.detach()) for n, t in Pg.items())
    logits = logits.detach()
    assert torch.isfinite(logits).all() and all(torch.isfinite(g).all() for g in grads.values())

    # self-checks ------------------------------------------------------------
    worst = check_gradients(P64, cfg, idx, nbr, targets, grads)
    with torch.no_grad():
        # without neighbours the CCA adds exactly zero: the logits equal the decoder's
        # without CCA layers, bit for bit
        none = torch.full_like(nbr, -1)
        a, _ = forward(P64, cfg, idx, none)
        b, _ = forward(P64, cfg, idx, none, use_cca=False)
        assert torch.equal(a, b), "CCA with no neighbours is not exactly zero"
        assert not torch.equal(logits, b), "the neighbours have no effect at all"
        # torch's tanh-approximate gelu is GPT-2's formula
        xs = torch.linspace(-6, 6, 1001, dtype=torch.float64)
        assert torch.allclose(gelu(xs), gelu_explicit(xs), rtol=0, atol=1e-15)
        # causality: changing the tokens after position t (and the neighbours of the
        # chunks whose last token is after t) leaves the logits up to t unchanged
        t = 9                                                 # inside chunk 2
        idx2, nbr2 = idx.clone(), nbr.clone()
        idx2[:, t + 1:] = (idx2[:, t + 1:] + 1) % cfg.V
        first_hidden = (t + 1) // cfg.m                      # chunks u with u*m+m-1 > t
        nbr2[:, first_hidden:] = torch.where(nbr2[:, first_hidden:] >= 0,
                                             (nbr2[:, first_hidden:] + 1) % cfg.V, nbr2[:, first_hidden:])
        c, _ = forward(P64, cfg, idx2, nbr2)
        assert torch.allclose(c[:, :t + 1], logits[:, :t + 1], rtol=0, atol=1e-12), "not causal"
        assert not torch.allclose(c[:, t + 1:], logits[:, t + 1:]), "causality check is vacuous"
        # chunk 2 of batch 1 has no neighbours: its CCA queries (positions 11..14)
        # get exactly zero, whatever the activations
        g = torch.Generator().manual_seed(8)
        cr = torch.randn(cfg.B, cfg.T, cfg.C, generator=g, dtype=torch.float64)
        Er = torch.randn(cfg.B, cfg.Lc, cfg.K, cfg.R, cfg.EC, generator=g, dtype=torch.float64)
        o = chunked_cross_attention(P64, cfg, 1, cr, Er, nbr)
        s = 2 * cfg.m + cfg.m - 1
        assert torch.all(o[1, s:s + cfg.m] == 0) and torch.all(o[:, :cfg.m - 1] == 0)
        assert torch.all(o[0, s:s + cfg.m] != 0)

    # training runs -----------------------------------------------------------
    all_names = list(P64.keys())
    fit_names = [n for n in all_names if is_fitted(n)]
    losses, P_after = train(P64, cfg, idx, nbr, targets, all_names)
    losses_fit, _ = train(P64, cfg, idx, nbr, targets, fit_names)
    assert losses[0] == loss.item() and losses_fit[0] == loss.item()
    # the hand-written AdamW agrees with torch.optim.AdamW (+ clip_grad_norm_)
    ref = torch_adamw_losses(P64, cfg, idx, nbr, targets)
    assert max(abs(a - b) for a, b in zip(losses, ref)) < 1e-10, (losses, ref)
    assert losses[-1] < losses[0] and losses_fit[-1] < losses_fit[0]

    # write ------------------------------------------------------------------
    out = OrderedDict()
    f32 = lambda t: t.detach().to(torch.float32).numpy()
    i32 = lambda t: t.to(torch.int32).numpy()
    for n, t in P32.items():
        out["param." + n] = t.numpy()
    out["idx"], out["targets"], out["nbr"] = i32(idx), i32(targets), i32(nbr)
    out["logits"] = f32(logits)
    out["loss"] = np.array([loss.item()], dtype=np.float32)
    for n, g in grads.items():
        out["grad." + n] = f32(g)
    out["losses"] = np.array(losses, dtype=np.float32)
    out["losses_fit"] = np.array(losses_fit, dtype=np.float32)
    for n, t in P_after.items():
        out["param_after." + n] = f32(t)
    meta = {"config": json.dumps(cfg.as_dict()), "adamw": json.dumps(ADAMW)}
    write_safetensors(args.out, out, meta)

    nparams = sum(t.numel() for t in P32.values())
    print("wrote %s: %d tensors, %d parameters, loss %.6f, losses %.4f -> %.4f, fit %.4f -> %.4f, "
          "worst finite-difference error %.2e" % (args.out, len(out), nparams, loss.item(),
                                                    losses[0], losses[-1], losses_fit[0],
                                                    losses_fit[-1], worst))


# ----------------------------------------------------------------------------
# bench


def cmd_bench(args):
    torch.set_num_threads(args.threads)
    cca = [] if args.baseline else [int(s) for s in args.cca.split(",") if s]
    cfg = Config(V=args.V, C=args.C, L=args.L, NH=args.NH, F=args.F, T=args.T, m=args.m,
                 K=args.K, R=args.R, EL=args.EL, EC=args.EC, ENH=args.ENH, EF=args.EF,
                 cca=cca, B=args.B)
    P = OrderedDict((n, t.requires_grad_(True)) for n, t in init_params(cfg).items())
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, cfg.V, (cfg.B, cfg.T), generator=gen)
    targets = torch.randint(0, cfg.V, (cfg.B, cfg.T), generator=gen)
    nbr = torch.randint(0, cfg.V, (cfg.B, cfg.Lc, cfg.K, cfg.R), generator=gen)
    hp = ADAMW
    params = list(P.values())
    opt = make_torch_adamw(params, hp)

    def step():
        opt.zero_grad(set_to_none=True)
        _, loss = forward(P, cfg, idx, nbr, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, hp["clip"])
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"impl": "torch", "baseline": int(bool(args.baseline)), "threads": args.threads,
                      "steps": args.steps,
                      "step_ms_median": round(med * 1e3, 3),
                      "tokens_per_s": round(cfg.B * cfg.T / med, 1),
                      "params": sum(t.numel() for t in params)}))


# ----------------------------------------------------------------------------


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    fx = sub.add_parser("fixture", help="write the golden fixture of the tiny model")
    fx.add_argument("out")
    bn = sub.add_parser("bench", help="float32 training benchmark")
    bn.add_argument("--threads", type=int, default=2)
    bn.add_argument("--steps", type=int, default=10)
    bn.add_argument("--warmup", type=int, default=2)
    bn.add_argument("--baseline", action="store_true", help="no CCA layers and no encoder")
    for k, v in (("V", 4096), ("C", 256), ("L", 6), ("NH", 4), ("T", 512), ("B", 4), ("K", 2),
                 ("R", 128), ("EL", 2), ("EC", 128), ("ENH", 2), ("EF", 512), ("F", 1024), ("m", 64)):
        bn.add_argument("--" + k, type=int, default=v)
    bn.add_argument("--cca", default="3,6", help="1-based decoder layers with CCA")
    args = ap.parse_args(argv)
    {"fixture": cmd_fixture, "bench": cmd_bench}[args.cmd](args)


if __name__ == "__main__":
    main(sys.argv[1:])
