"""A ternary ViT for the 8x8 digits: float QAT model, training, checkpoint, and the integer
golden model as a model graph (:mod:`ternac.golden.graph`) that the one lowering compiles.

Model (``ViTConfig``, defaults: d = 48, 3 heads of 16, 2 blocks, MLP 96): the 8x8 image (``golden.digits_data``, int8 pixels at
``INPUT_SCALE``) in 2x2 patches: 16 tokens of 4 pixels, plus a class token (T = 17).
Patch embedding: a BitLinear 4 -> d; learned class token and position embedding; ``depth``
pre-norm blocks, each ``x += Attn(LN1(x))``, ``x += MLP(LN2(x))``: multi-head
self-attention (QKV one BitLinear d -> 3d, ``heads`` heads of ``d/heads``, softmax of
``q.k / sqrt(dh)``, an output BitLinear d -> d), an MLP (BitLinear d -> mlp, GELU as
``x sigmoid(1.702 x)`` (ShiftGELU's form), BitLinear mlp -> d); a final LayerNorm of the
class token and a ternary classifier head (BitLinear d -> 10). LayerNorms have a weight and
no bias (the ISA's LAYERNORM). Trits are BitNet b1.58 absmean with a straight-through
estimator, int8 inputs of every BitLinear at a static (EMA-calibrated, then frozen) scale,
q/k/v fake-quantized to int8 at their own static scales.

Integer dataflow (one image; R_t int16 residual at ``res_scale``; t < T tokens, h < heads)
------------------------------------------------------------------------------------------
::

    E_t   = MATVEC(patch, px_t) WIDE           int16 at res_scale (t >= 1)
    P_t   = EMBED(pos, t)                      int8 row t of the table round(pos' / pos_scale)
                                               (pos'_0 = cls + pos_0: the class token)
    R_t   = ADD(E_t, P_t; 1,0, dyadic(pos_scale/res_scale))   (R_0 = ADD(P_0, P_0; pos, 0))
    per block:
      X_t      = LAYERNORM(R_t, ln1) OUT8 at qkv.act_scale
      Q_h,t    = MATVEC(Wq_h, X_t) OUT8 at q_scale   (rows h*dh.. of the QKV trits; one gamma)
      K_h[t]   = MATVEC(Wk_h, X_t) OUT8 at k_scale   (row t of the head's token-major K)
      V_h[t]   = MATVEC(Wv_h, X_t) OUT8 at v_scale
      S_h,t    = DOT(Q_h,t, K_h; k = dh)           int16 at score_scale (1/sqrt(dh) folded)
      A_h,t    = SHIFTMAX(S_h,t; exp_gain(score_scale))        Q15 probabilities over T
      C_t[h]   = DOTT(A_h,t, V_h; k = T) OUT8      at o.act_scale (P.V from token-major V)
      R_t      = ADD(R_t, MATVEC(Wo, C_t) WIDE)    at res_scale
      R_t      = ADD(R_t, MATVEC(fc2, GELU(MATVEC(fc1, LAYERNORM(R_t, ln2) OUT8) WIDE) OUT8) WIDE)
    the last block computes queries, attention and MLP for the class token only (the
    classifier reads nothing else); K and V still come from every token.
    logits = MATVEC(head, LAYERNORM(R_0, lnf) OUT8) RAW;  class = ARGMAX(logits)

Every int16 intermediate's scale is ``2 * absmax / 32767`` of the float model over the
training split (as golden.lm_int); attention scores likewise. The per-token and per-head
addressing is unrolled by the graph builder; the lowering's post-pass
(``ternac.lower.compress_program``) folds the per-token and per-head runs into REPEAT loops
(golden/isa.py): 633 instructions unrolled, 125 in the program memory for the committed
model (``ternac compile`` reports the count).

Source: Dosovitskiy et al. 2021 (ViT), Li & Gu 2023 (I-ViT: integer-only ViT with Shiftmax,
ShiftGELU, I-LayerNorm), Ma et al. 2024 (BitNet b1.58 absmean trits).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import intops, numerics
from .digits_data import INPUT_SCALE, N_CLASSES, dequantize_pixels, load_split, quantize_pixels
from .mlp import BitLinear, fake_quant_act
from .widths import GELU_ALPHA, WIDE_MAX

__all__ = ["ViTConfig", "TernaryViT", "IntViT", "DEFAULT_CHECKPOINT", "DEFAULT_EPOCHS",
           "train_vit_digits", "save_checkpoint", "load_checkpoint", "patches", "evaluate"]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "vit_digits.safetensors"
DEFAULT_EPOCHS = 400
_EMA = 0.9
_HEADROOM = 2.0


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Sizes of the digits ViT: ``d`` model width, ``heads`` (``d % heads == 0``),
    ``depth`` blocks, ``mlp`` hidden width, ``patch`` side (the 8x8 image in
    ``(8 / patch)^2`` patches), ``n_classes``."""
    d: int = 48
    heads: int = 3
    depth: int = 2
    mlp: int = 96
    patch: int = 2
    image: int = 8
    n_classes: int = N_CLASSES

    def __post_init__(self):
        if self.d % self.heads or self.image % self.patch:
            raise ValueError(f"d={self.d} must divide by heads={self.heads} and image={self.image} "
                             f"by patch={self.patch}")

    @property
    def dh(self) -> int:
        return self.d // self.heads

    @property
    def n_patches(self) -> int:
        return (self.image // self.patch) ** 2

    @property
    def tokens(self) -> int:
        return self.n_patches + 1

    @property
    def patch_dim(self) -> int:
        return self.patch * self.patch


def patches(x: torch.Tensor, cfg: ViTConfig = ViTConfig()) -> torch.Tensor:
    """(B, 64) pixels (row-major 8x8) -> (B, n_patches, patch^2), patches row-major."""
    p, s = cfg.patch, cfg.image
    b = x.reshape(x.shape[0], s // p, p, s // p, p)
    return b.permute(0, 1, 3, 2, 4).reshape(x.shape[0], cfg.n_patches, p * p)


class FakeQuant(nn.Module):
    """Int8 fake quantization at a static scale, calibrated as an EMA of absmax / 127 while
    training until :meth:`freeze`; buffer ``scale`` (real LSB)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor(0.0))
        self.calibrating = True

    def freeze(self):
        self.calibrating = False

    def forward(self, x):
        if self.training and self.calibrating:
            with torch.no_grad():
                a = max(float(x.detach().abs().max()), 1e-6) / numerics.ACT_MAX
                if float(self.scale) == 0:
                    self.scale.fill_(a)
                else:
                    self.scale.mul_(_EMA).add_((1 - _EMA) * a)
        return fake_quant_act(x, float(self.scale))


def _gelu(x):
    return x * torch.sigmoid(GELU_ALPHA * x)


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.d
        self.cfg = cfg
        self.ln1 = nn.LayerNorm(d, bias=False)
        self.qkv = BitLinear(d, 3 * d)
        self.fq = nn.ModuleList(FakeQuant() for _ in range(3))
        self.o = BitLinear(d, d)
        self.ln2 = nn.LayerNorm(d, bias=False)
        self.fc1 = BitLinear(d, cfg.mlp)
        self.fc2 = BitLinear(cfg.mlp, d)

    def forward(self, r, record=None, prefix=""):
        c = self.cfg
        B, T, d = r.shape
        x = self.ln1(r)
        q, k, v = (fq(t) for fq, t in zip(self.fq, self.qkv(x).split(d, -1)))
        q, k, v = (t.reshape(B, T, c.heads, c.dh).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-1, -2) / math.sqrt(c.dh)
        ctx = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, d)
        o = self.o(ctx)
        r = r + o
        u = self.fc1(self.ln2(r))
        r2 = r + self.fc2(_gelu(u))
        if record is not None:
            record(prefix + "scores", s)
            record(prefix + "u", u)
            record(prefix + "gelu", _gelu(u))
            record("res", r)
            record("res", r2)
        return r2


class TernaryViT(nn.Module):
    """The float QAT ViT (see the module docstring). Forward: ``x (B, 64)`` dequantized int8
    pixels -> ``(B, n_classes)`` logits."""

    def __init__(self, cfg: ViTConfig = ViTConfig()):
        super().__init__()
        self.cfg = cfg
        self.patch = BitLinear(cfg.patch_dim, cfg.d, act_scale=INPUT_SCALE)
        self.cls = nn.Parameter(torch.randn(cfg.d) * 0.02)
        self.pos = nn.Parameter(torch.randn(cfg.tokens, cfg.d) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.lnf = nn.LayerNorm(cfg.d, bias=False)
        self.head = BitLinear(cfg.d, cfg.n_classes)

    def bitlinears(self):
        return [m for m in self.modules() if isinstance(m, (BitLinear, FakeQuant))]

    def freeze_scales(self):
        for m in self.bitlinears():
            m.freeze()

    def forward(self, x, record=None):
        e = self.patch(patches(x, self.cfg))
        cls = self.cls.expand(x.shape[0], 1, -1)
        r = torch.cat([cls, e], 1) + self.pos
        if record is not None:
            record("emb", e)
            record("res", r)
        for i, blk in enumerate(self.blocks):
            r = blk(r, record, f"blocks.{i}.")
        return self.head(self.lnf(r[:, 0]))


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------

def save_checkpoint(model: TernaryViT, path, recipe: dict | None = None) -> Path:
    """Write the latent weights and static scales (safetensors) with the config and recipe
    in its metadata; atomic (golden.fileio)."""
    from safetensors.torch import save

    from .fileio import atomic_write

    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "ternac-vit-digits", "config": json.dumps(dataclasses.asdict(model.cfg)),
            "recipe": json.dumps(recipe or {})}
    path = Path(path)
    atomic_write(path, save(tensors, metadata=meta))
    return path


def load_checkpoint(path=None) -> tuple[TernaryViT, dict]:
    """Load a :func:`save_checkpoint` file (default the committed checkpoint): the model in
    eval mode with frozen scales, and the recipe.

    Raises
    ------
    CheckpointImportError (a ValueError; one sentence naming the file) if it is missing,
    unreadable, not a ViT checkpoint, its config is not positive integer sizes, its tensors
    do not match its config (missing, unexpected, misshapen: checked before the model is
    allocated, so a config declaring huge sizes fails fast), a tensor is not float16,
    bfloat16, float32 or float64 or holds NaN/infinite values, a scale is negative, or its
    recipe is not a JSON object.
    """
    from safetensors import safe_open

    from .errors import CheckpointImportError

    p = Path(DEFAULT_CHECKPOINT if path is None else path)

    def fail(msg):
        raise CheckpointImportError(f"ViT checkpoint {str(p)!r} {msg}")

    if not p.is_file():
        fail("does not exist or is not a file")
    try:
        with safe_open(str(p), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for a bad file
        fail(f"is not a readable safetensors file ({' '.join(str(exc).split())})")
    if meta.get("format") != "ternac-vit-digits":
        fail(f"is not a ternac ViT checkpoint (format {str(meta.get('format'))[:40]!r})")
    try:
        fields = json.loads(meta["config"])
        recipe = json.loads(meta.get("recipe", "{}"))
    except (KeyError, ValueError):
        fail("has no config or recipe JSON in its metadata")
    names = {f.name for f in dataclasses.fields(ViTConfig)}
    if not (isinstance(fields, dict) and set(fields) <= names and isinstance(recipe, dict)):
        fail("has a config that is not a JSON object of ViTConfig sizes, or a recipe that is "
             "not a JSON object")
    for k, v in fields.items():
        if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1 << 20):
            fail(f"has config {k} = {str(v)[:20]}, not a positive integer up to 2**20")
    try:
        cfg = ViTConfig(**fields)
    except ValueError as exc:
        fail(f"has a bad config: {exc}")
    if cfg.depth > len(tensors):
        fail(f"declares {cfg.depth} blocks but holds only {len(tensors)} tensors")
    with torch.device("meta"):      # shapes without allocating a model of declared sizes
        expected = {k: tuple(v.shape) for k, v in TernaryViT(cfg).state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        fail(f"does not match its config: {'missing' if missing else 'unexpected'} tensor "
             f"{(missing or extra)[0]!r}")
    for k, v in tensors.items():
        if tuple(v.shape) != expected[k]:
            fail(f"does not match its config: tensor {k!r} has shape {tuple(v.shape)}, not "
                 f"{expected[k]}")
        if v.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            fail(f"has tensor {k!r} of dtype {v.dtype}, not a floating-point type")
        if not bool(torch.isfinite(v).all()):
            fail(f"has NaN or infinite values in tensor {k!r}")
        if k.endswith("scale") and bool((v < 0).any()):
            fail(f"has a negative scale {k!r}")
    model = TernaryViT(cfg)
    model.load_state_dict(tensors)
    model.freeze_scales()
    return model.eval(), recipe


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------

def train_vit_digits(seed: int = 0, epochs: int = DEFAULT_EPOCHS, out=None,
                     progress: bool = True, cfg: ViTConfig = ViTConfig(), lr: float = 3e-3,
                     label_smoothing: float = 0.1, weight_decay: float = 0.1) -> dict:
    """Train the digits ViT (quantization-aware) on the fixed split and save its checkpoint.

    Deterministic on one CPU thread: ``torch.manual_seed(seed)``, batch order from a seeded
    generator. AdamW (lr 3e-3, weight decay 0.1, one-cycle), batch 64, cross-entropy with
    label smoothing 0.1; no augmentation (random one-pixel shifts cost 7 points of test
    accuracy in a measured ablation: 0.80 against 0.92 at d=32, 150 epochs); static scales follow EMAs for the first 75% of the epochs and are
    frozen for the rest. Returns the accuracies of the float and integer models on the test
    split (``float_accuracy``, ``int_accuracy``), ``seconds``, ``out``.
    """
    from tqdm import tqdm

    epochs = int(epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs!r}")
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x_tr, y_tr, x_te, y_te = load_split()
        xq = quantize_pixels(x_tr)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = TernaryViT(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        bs = 64
        steps = math.ceil(xq.shape[0] / bs)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps,
                                                    pct_start=0.1)
        freeze_at = max(1, round(0.75 * epochs))
        bar = tqdm(range(epochs), desc="train vit-digits", unit="epoch", disable=not progress)
        for ep in bar:
            if ep == freeze_at:
                model.freeze_scales()
            model.train()
            perm = torch.randperm(xq.shape[0], generator=gen)
            tot = 0.0
            for b in range(steps):
                idx = perm[b * bs:(b + 1) * bs]
                logits = model(dequantize_pixels(xq[idx]))
                loss = F.cross_entropy(logits, y_tr[idx], label_smoothing=label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                tot += float(loss.detach()) * idx.numel()
            bar.set_postfix(loss=f"{tot / xq.shape[0]:.4f}")
        model.freeze_scales()
        model.eval()
        recipe = {"seed": seed, "epochs": epochs, "config": dataclasses.asdict(cfg),
                  "optimizer": f"AdamW lr {lr} wd {weight_decay} one-cycle",
                  "batch": bs, "augment": "none", "label_smoothing": label_smoothing,
                  "command": f"ternac train vit-digits --seed {seed} --epochs {epochs}"}
        r = evaluate(model)
        r.update(seed=seed, epochs=epochs, seconds=round(time.perf_counter() - t0, 1))
        recipe["float_accuracy"], recipe["int_accuracy"] = r["float_accuracy"], r["int_accuracy"]
        if out is not None:
            save_checkpoint(model, out, recipe)
            r["out"] = str(out)
        return r
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def evaluate(model: TernaryViT | None = None) -> dict:
    """Test accuracy of the float model and of the integer golden model (IntViT)."""
    if model is None:
        model, _ = load_checkpoint()
    _, _, x_te, y_te = load_split()
    xq = quantize_pixels(x_te)
    fp = model.eval()(dequantize_pixels(xq)).argmax(-1)
    im = IntViT.from_model(model)
    ip = im.predict(xq)
    n = int(y_te.numel())
    return {"float_accuracy": int((fp == y_te).sum()) / n, "int_accuracy": int((ip == y_te).sum()) / n,
            "float_int_agreement": int((fp == ip).sum()) / n, "n_test": n}


# ---------------------------------------------------------------------------------------
# The integer model: a graph
# ---------------------------------------------------------------------------------------

def _scale(absmax: float) -> float:
    return _HEADROOM * max(float(absmax), 1e-6) / WIDE_MAX


class IntViT:
    """The integer golden model of a :class:`TernaryViT`: its :meth:`graph` (the dataflow of
    the module docstring) with every constant fixed offline; calibrated on the training
    split (int16 scales of the residual, the attention scores and the MLP hidden)."""

    def __init__(self, model: TernaryViT, calib_x: torch.Tensor | None = None):
        self.model = model.eval()
        self.cfg = model.cfg
        if calib_x is None:
            calib_x = quantize_pixels(load_split()[0])
        amax: dict[str, float] = {}

        def rec(name, t):
            amax[name] = max(amax.get(name, 0.0), float(t.detach().abs().max()))

        with torch.no_grad():
            model(dequantize_pixels(calib_x), record=rec)
        self.absmax = amax
        self._graph = None

    @classmethod
    def from_model(cls, model: TernaryViT, calib_x=None) -> "IntViT":
        return cls(model, calib_x)

    @classmethod
    def from_checkpoint(cls, path=None) -> "IntViT":
        return cls(load_checkpoint(path)[0])

    def graph(self, lowmem: bool = True):
        """The model graph of one image: input ``px``, the 64 int8 pixels in patch order
        (patch ``t`` is the view ``p{t}``, 4 pixels; :meth:`feeds`); output ``logits`` (RAW
        int32), ARGMAX the class. Node for node the module docstring's dataflow.

        ``lowmem`` picks the schedule (the integers are the same either way; tests/test_vit.py
        checks every logit): False, token-major: every LayerNorm once, all heads' K and V
        live together (the scratch map's top is 3,684 words for the committed model); True
        (default), head-major, sized for the iCEBreaker's 2,304-word scratchpad (9 EBR a
        copy): a block runs head by head, computing K_h and V_h for every token and then
        each query's attention on that head, so one head's K and V are live, not all; the
        LayerNorm of a token is recomputed where it is needed (twice a head) instead of
        kept for every token; the per-(head, token) work vectors (X, Q, scores,
        probabilities) live in the input's 64 words, which nothing reads after the patch
        embedding. It costs the recomputed LayerNorms' cycles."""
        if self._graph is not None and self._graph[0] == lowmem:
            return self._graph[1]
        from .graph import Graph, Vec
        from .isa import Flag, Op
        from .lm_int import norm_consts

        c, m = self.cfg, self.model
        d, dh, H, T = c.d, c.dh, c.heads, c.tokens
        OUT8, WIDE, RAW = int(Flag.OUT8), int(Flag.WIDE), int(Flag.RAW)
        res = _scale(self.absmax["res"])
        g = Graph(name="vit-digits")
        # The image's pixels in patch order, one input; patch t is a view of it.
        px = g.input("px", c.n_patches * c.patch_dim, bits=8, scale=INPUT_SCALE)
        pin = [g.view(f"p{t}", px, t * c.patch_dim, c.patch_dim) for t in range(c.n_patches)]
        work = [0]

        def scratch_view(what, off, n, bits, scale):
            """A work vector in the input's words (lowmem): a fresh view each write."""
            work[0] += 1
            return g.view(f"{what}~{work[0]}", px, off, n, bits=bits, scale=scale)

        def tern(name, w, rows=None):
            t, gamma = numerics.absmean_ternarize(w.detach())
            if rows is not None:
                t = t[rows].contiguous()
            if name not in g.weights:
                g.weight(name, t, gamma)
            return name, gamma

        def matvec(x, name, w, act, out_scale, out, flags, rows=None, bits=8):
            wn, gamma = tern(name, w, rows)
            n = (rows.stop - rows.start) if rows is not None else w.shape[0]
            mm, ss = numerics.dyadic(gamma * act / out_scale)
            o = out if isinstance(out, str) and out in g.vecs else Vec(out, n, bits, out_scale)
            return g.add(Op.MATVEC, o, x, weight=wn, m=mm, s=ss, flags=flags)

        def layernorm(x, ln, name, out_scale, out=None):
            nm = norm_consts(name, ln.weight, out_scale, 8)
            if name not in g.consts:
                g.const(name, nm.weight, 16)
            return g.add(Op.LAYERNORM, out or Vec(name + ".out" + x, d, 8, out_scale), x, name,
                         m=nm.m, s=nm.s, flags=OUT8)

        # --- embedding: patches, class token, positions ----------------------------------
        pos = torch.cat([(m.cls + m.pos[0])[None], m.pos[1:]]).detach()
        pos_scale = max(float(pos.abs().max()), 1e-6) / numerics.ACT_MAX
        g.table("pos", torch.clamp(torch.round(pos / pos_scale), -127, 127))
        pm, ps = numerics.dyadic(pos_scale / res)
        # lowmem: the residual stream is one buffer, token t at t d, updated in place (each
        # version a view), so every token's residual is at a constant stride.
        rbuf = g.buffer("R", T * d, 16, res) if lowmem else None

        def rvec(name, t):
            return g.view(name, rbuf, t * d, d) if lowmem else Vec(name, d, 16, res)
        R = []
        for t in range(T):
            idx = g.const(f"idx{t}", torch.tensor([t]), 16)
            P = g.add(Op.EMBED, Vec(f"P{t}", d, 8, pos_scale), idx, weight="pos")
            if t == 0:
                R.append(g.add(Op.ADD, rvec("R0.0", 0), P, P, m=pm, s=ps, m2=0, s2=0))
            else:
                E = matvec(pin[t - 1], "patch", m.patch.weight, INPUT_SCALE, res, f"E{t}", WIDE,
                           bits=16)
                R.append(g.add(Op.ADD, rvec(f"R{t}.0", t), E, P, m=1, s=0, m2=pm, s2=ps))
        # --- blocks -----------------------------------------------------------------------
        for li, blk in enumerate(m.blocks):
            p = f"blocks.{li}."
            last = li == c.depth - 1
            queries = [0] if last else list(range(T))
            act = float(blk.qkv.act_scale)
            sq, sk, sv = (float(f.scale) for f in blk.fq)
            sc = _scale(self.absmax[p + "scores"])
            so = float(blk.o.act_scale)
            s1m, s1s = numerics.dyadic(sq * sk / math.sqrt(dh) / sc)
            gm, gs = intops.exp_gain(sc)
            cm, cs = numerics.dyadic(2.0 ** -15 * sv / so)

            def kv(h, t, x):
                for j, (nm, s_) in enumerate((("K", sk), ("V", sv))):
                    rows = slice((j + 1) * d + h * dh, (j + 1) * d + (h + 1) * dh)
                    v = g.view(f"{p}{nm}{h}[{t}]", f"{p}{nm}{h}", t * dh, dh)
                    matvec(x, f"{p}{nm.lower()}{h}", blk.qkv.weight, act, s_, v, 0, rows=rows)

            def attend(h, t, x, ctx, qname=None, sname=None, aname=None):
                """Query t on head h: C_t[h] = the words ctx = (buffer, offset) + h dh."""
                q = matvec(x, f"{p}q{h}", blk.qkv.weight, act, sq, qname or f"{p}Q{h},{t}", 0,
                           rows=slice(h * dh, (h + 1) * dh))
                S = g.add(Op.DOT, sname or Vec(f"{p}S{h},{t}", T, 16, sc), q, f"{p}K{h}",
                          m=s1m, s=s1s, k=dh)
                A = g.add(Op.SHIFTMAX, aname or Vec(f"{p}A{h},{t}", T, 15, 2.0 ** -15), S,
                          m=gm, s=gs)
                g.add(Op.DOTT, g.view(f"{p}C{t}[{h}]", ctx[0], ctx[1] + h * dh, dh), A,
                      f"{p}V{h}", m=cm, s=cs, k=T, flags=OUT8)

            for h in range(H):
                for nm in ("K", "V"):
                    g.buffer(f"{p}{nm}{h}", T * dh, 8)
            if lowmem:
                # One buffer for every query's context, allocated whole at the first DOTT,
                # so no context lands in a hole a head's K or V leaves (the allocator is
                # first-fit) and the next head's K and V take their predecessors' words.
                cb = g.buffer(f"{p}C", len(queries) * d, 8, so)
                ctxs = {t: (cb, i * d) for i, t in enumerate(queries)}
            else:
                ctxs = {t: (g.buffer(f"{p}C{t}", d, 8, so), 0) for t in queries}
            if lowmem:
                # A block of one query (the last) keeps every token's LayerNorm (its context
                # is one token's, so the X buffer fits where the contexts would be); the
                # others recompute it where they need it, into the input's words.
                keep = len(queries) == 1
                if keep:
                    xb = g.buffer(f"{p}X", T * d, 8, act)
                    X = [layernorm(R[t], blk.ln1, p + "ln1", act,
                                   out=g.view(f"{p}X{t}", xb, t * d, d)) for t in range(T)]

                def ln1(t):
                    if keep:
                        return X[t]
                    return layernorm(R[t], blk.ln1, p + "ln1", act,
                                     out=scratch_view(f"{p}X{t}", 0, d, 8, act))
                for h in range(H):
                    for t in range(T):
                        kv(h, t, ln1(t))
                    for t in queries:
                        attend(h, t, ln1(t), ctxs[t],
                               qname=scratch_view(f"{p}Q{h},{t}", d, dh, 8, sq),
                               sname=scratch_view(f"{p}S{h},{t}", 0, T, 16, sc),
                               aname=scratch_view(f"{p}A{h},{t}", T, T, 15, 2.0 ** -15))
            else:
                X = [layernorm(R[t], blk.ln1, p + "ln1", act) for t in range(T)]
                for t in range(T):
                    for h in range(H):
                        kv(h, t, X[t])
                for t in queries:
                    for h in range(H):
                        attend(h, t, X[t], ctxs[t])
            newR = list(R)
            for t in queries:
                cb, off = ctxs[t]
                ctx = g.view(f"{p}C{t}", cb, off, d) if lowmem else cb
                O = matvec(ctx, f"{p}o", blk.o.weight, so, res, f"{p}O{t}", WIDE, bits=16)
                R1 = g.add(Op.ADD, Vec(f"R{t}.{li}a", d, 16, res), R[t], O, m=1, s=0, m2=1, s2=0)
                X2 = layernorm(R1, blk.ln2, p + "ln2", float(blk.fc1.act_scale))
                su = _scale(self.absmax[p + "u"])
                U = matvec(X2, f"{p}fc1", blk.fc1.weight, float(blk.fc1.act_scale), su,
                           f"{p}U{t}", WIDE, bits=16)
                s2_ = float(blk.fc2.act_scale)
                em, es = intops.exp_gain(su, GELU_ALPHA)
                am, as_ = intops.act_out_multiplier(su, s2_)
                G = g.add(Op.GELU, Vec(f"{p}G{t}", c.mlp, 8, s2_), U, m=em, s=es, m2=am, s2=as_,
                          flags=OUT8)
                D = matvec(G, f"{p}fc2", blk.fc2.weight, s2_, res, f"{p}D{t}", WIDE, bits=16)
                newR[t] = g.add(Op.ADD, rvec(f"R{t}.{li}b", t), R1, D, m=1, s=0, m2=1,
                                s2=0)
            R = newR
        xf = layernorm(R[0], m.lnf, "lnf", float(m.head.act_scale))
        wn, _ = tern("head", m.head.weight)
        logits = g.add(Op.MATVEC, Vec("logits", c.n_classes, 32), xf, weight=wn, flags=RAW)
        g.add(Op.ARGMAX, None, logits)
        g.outputs = [logits]
        self._graph = (lowmem, g)
        return g

    def feeds(self, x_int8: torch.Tensor) -> dict:
        """The graph's input for (B, 64) int8 pixels: ``px``, (B, 64), the 2x2 patches in
        order (patch ``t`` at ``4 t``)."""
        pt = patches(torch.as_tensor(x_int8).to(torch.int64), self.cfg)
        return {"px": pt.reshape(pt.shape[0], -1)}

    def forward(self, x_int8: torch.Tensor) -> torch.Tensor:
        """(B, 64) int8 pixels -> (B, n_classes) int64 logits (raw accumulators)."""
        return self.graph().evaluate(self.feeds(x_int8))["logits"]

    def predict(self, x_int8: torch.Tensor) -> torch.Tensor:
        from .vecops import argmax

        return argmax(self.forward(x_int8))


@torch.no_grad()
def unit_errors(im: IntViT, x_int8: torch.Tensor) -> dict:
    """The integer units inside the model, on its real activations (issue: measure the
    units in the model): for every attention row (SHIFTMAX), every MLP hidden vector
    (GELU) and every LayerNorm vector the graph evaluates on ``x_int8`` (B, 64):

    * Shiftmax: the row-sum probability mass (``sum p * 2^-15``; 1 is exact) and the max
      abs error of ``p * 2^-15`` against a float64 softmax of the same integer scores at
      their scale;
    * ShiftGELU: the max abs error of ``y * out_scale`` against ``v sigmoid(1.702 v)`` of
      the same integer input ``v = u * in_scale``, in output LSBs;
    * LayerNorm: the max abs error against ``intops.layernorm_float`` on the same integers
      (its float counterpart), in output LSBs.

    Returns ``{unit: {...}}`` with counts, means and maxima; all figures measured.
    """
    from .isa import Op

    g = im.graph(lowmem=False)   # every vector its own (the lowmem schedule reuses words)
    env = g.evaluate(im.feeds(x_int8))
    sm_mass, sm_err, ge_err, ln_err = [], [], [], []
    for nd in g.nodes:
        a = env[nd.a].to(torch.float64)
        y = env[nd.out].to(torch.float64) if nd.out is not None else None
        if nd.op == Op.SHIFTMAX:
            p = y * 2.0 ** -15
            ref = torch.softmax(a * g.vecs[nd.a].scale, -1)
            sm_mass.append(p.sum(-1).flatten())
            sm_err.append((p - ref).abs().amax(-1).flatten())
        elif nd.op == Op.GELU:
            v = a * g.vecs[nd.a].scale
            ref = v * torch.sigmoid(GELU_ALPHA * v)
            osc = g.vecs[nd.out].scale
            ge_err.append(((y * osc - torch.clamp(ref, -127 * osc, 127 * osc)) / osc)
                          .abs().amax(-1).flatten())
        elif nd.op == Op.LAYERNORM:
            w = g.consts[nd.b]
            hi = 127
            ref = intops.layernorm_float(a, w.to(torch.float64), torch.zeros_like(w, dtype=torch.float64),
                                         nd.m, nd.s).clamp(-hi, hi)
            ln_err.append((y - ref).abs().amax(-1).flatten())

    def stats(vals):
        v = torch.cat(vals)
        return {"count": int(v.numel()), "mean": float(v.mean()), "max": float(v.max()),
                "min": float(v.min())}

    return {"shiftmax_row_mass": stats(sm_mass), "shiftmax_max_abs_error": stats(sm_err),
            "gelu_max_abs_error_lsb": stats(ge_err), "layernorm_max_abs_error_lsb": stats(ln_err),
            "images": int(x_int8.shape[0]), "kind": "measured"}
