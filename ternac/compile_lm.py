"""The LM compiler: an integer MatMul-free LM (:class:`golden.lm_int.IntLM`) -> the weight
memory image, the per-token program and the scratch map of one accelerator configuration.

The program computes one token, exactly the dataflow of :mod:`golden.lm_int` (the module
docstring there lists every instruction and its constants); the interpreter running it
equals :meth:`golden.lm_int.IntLM.step` bit for bit, logit for logit (tests/test_lm_int.py).

Host protocol
-------------
Once, before the first token: load ``weight_words`` into the weight memory from word 0,
``program_words`` into the program memory, and write ``scratch_constants``
(``{address: [int16 words]}``: the zero word, the zero MLGRU state of every layer, the
RMSNorm weight vectors that are resident in scratch and, for a sampling program, the two
LFSR words). Per token: write the token id to ``scratch[token_addr]``, start, wait for
done; the next token is the ``result`` register. The scratchpad keeps its contents between
tokens: the state ``H`` of layer l lives at ``state_addrs[l]`` and is updated in place by
the program. To start a new sequence, write the zero state (and the seed) again.

Two program endings:

* greedy (``compile_lm(..., sample=False)``, the default): ``MATVEC RAW lm_head`` into
  ``out[logits_addr : logits_addr + n_logits]`` (raw int32 logits, real value ``logit *
  IntLM.logit_scale``), ``ARGMAX``: ``result`` is the greedy next token.
* sampling (``sample=True``): ``MATVEC WIDE lm_head`` into the scratch vector
  ``scratch[logits_addr : logits_addr + n_logits]`` (int16 logits at
  ``IntLM.logit16_scale``; ``logits_in_scratch`` is True), ``SHIFTMAX`` into a probability
  vector (Q15) with the exp gain ``IntLM.sample_gain(temperature)`` (the temperature folded
  in at compile time), ``SAMPLE`` over it with the LFSR state words at ``sampler_addr``,
  ``sampler_addr + 1`` (low, high 16 bits; initialised from the seed by
  ``scratch_constants``, stepped in place once a token, golden/sampler.py): ``result`` is
  the drawn token. No RAW logits and no ARGMAX in this program. Needs the ``shiftmax``
  vector unit (:data:`LM_SAMPLE_CONFIG`).

Weight memory (words of ``2 * lanes`` bits)
-------------------------------------------
1. every ternary matrix, in program order (``i, f, g, o`` projections, ``gate_proj`` as
   two matrices ``gate`` and ``y``, ``down_proj`` per layer, then ``lm_head``), lane-tiled
   I2 (:func:`golden.packing.tile_lanes`), back to back from word 0;
2. the int8 embedding table, one row of ``ceil(d / (lanes / 4))`` words a token
   (:func:`golden.packing.embedding_words`), read by EMBED;
3. the *staged* constant vectors (below): each as two int8 byte rows ``lo``, ``hi`` with
   ``w = 256 hi + lo`` (``|w| <= golden.lm_int.NORM_W_MAX = 127 * 256``).

Scratch map (16-bit words)
--------------------------
``[0]`` token id (written by the host), ``[1]`` zero (the row index of constant EMBEDs),
``[2, 2 + L D)`` the state, one D-vector a layer; for a sampling program the two LFSR words
``[2 + L D, 2 + L D + 2)``; then the resident constants, each its own vector; then the work
area: every intermediate vector of the dataflow gets an address by a
linear-scan allocation over the straight-line program (a vector lives from the instruction
that writes it to the last that reads it; the first free gap that fits is taken), so no
instruction writes over one of its own operands and the work area is as small as the
largest set of simultaneously live vectors allows.

Constants. A RMSNorm weight vector (and the Q14 lower-bound vectors of an imported model) is
*resident* (written once by the host into scratch) if it fits, else *staged*: loaded before
its use by ``EMBED lo; EMBED hi; ADD(hi, lo; m=256, s=0, m2=1, s2=0)`` from the weight
memory (row index 0 from the zero word). The ISA's 12-bit addresses limit the scratchpad
to 4096 words; the flagship model (d=128, 3 layers) has 3,904 words of norm weights, so
with ``scratch_depth = 4096`` most are resident and the rest staged (the compiler makes
as many words resident as fit, largest vectors first). Both placements give identical
integers.

Every check raises :class:`ternac.errors.CompileError`, one sentence with the numbers.
"""
from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator, Sequence

import torch

from ternac.golden.isa import FIELDS, Flag, Instr, Op, encode, encode_program
from ternac.golden.lm_int import LB_FRAC_BITS, NORM_W_MAX, IntLinear, IntLM, IntNorm
from ternac.golden.sampler import seed_state, split_state
from ternac.golden.numerics import M_BITS, S_MAX
from ternac.golden.packing import embedding_words, tile_lanes
from ternac.config import AccelConfig
from ternac.errors import CompileError

__all__ = ["CompileError", "CompiledLM", "compile_lm", "lm_config", "LM_CONFIG", "LM_SAMPLE_CONFIG",
           "UP5K_SPRAM_WORDS", "TOKEN_ADDR", "ZERO_ADDR", "STATE_ADDR", "VECTOR_UNIT_OF",
           "run_tokens", "split_bytes"]

_FIELD_BITS = dict(FIELDS)
#: Scratch addresses the ISA can name (12-bit src/dst/aux fields).
_ADDR_LIMIT = 1 << _FIELD_BITS["src"]
#: Fixed scratch addresses: the token id the host writes, a zero word, the state.
TOKEN_ADDR = 0
ZERO_ADDR = 1
STATE_ADDR = 2
#: 64-bit words in the four SB_SPRAM256KA of the iCE40 UP5K (4 x 256 Kbit).
UP5K_SPRAM_WORDS = 4 * 256 * 1024 // 64

#: The accelerator the flagship shakespeare model (d=128, 3 layers, GLU 192, 65 symbols)
#: is compiled for: 32 lanes fed by the UP5K's four 16-bit SPRAM ports (64-bit words),
#: the whole SPRAM as weight memory, the ISA's largest scratchpad, fan-in up to 256
#: (17-bit accumulators).
LM_CONFIG = AccelConfig(lanes=32, weight_depth=UP5K_SPRAM_WORDS, scratch_depth=4096,
                        out_depth=128, prog_depth=256, max_fan_in=256,
                        vector=("activation", "norm", "eltwise"), max_vector=256)
#: :data:`LM_CONFIG` with the Shiftmax unit: the accelerator of the sampling program
#: (``compile_lm(..., sample=True)``).
LM_SAMPLE_CONFIG = dataclasses.replace(LM_CONFIG, vector=LM_CONFIG.vector + ("shiftmax",))

#: The vector unit (``AccelConfig.vector``) that executes each vector opcode.
VECTOR_UNIT_OF = {Op.SIGMOID: "activation", Op.SILU: "activation", Op.GELU: "activation",
                  Op.RMSNORM: "norm", Op.LAYERNORM: "norm", Op.SHIFTMAX: "shiftmax",
                  Op.ADD: "eltwise", Op.MUL: "eltwise"}
#: Vector ops whose unit holds a sum over the vector (sized by ``AccelConfig.max_vector``).
_SUMMING_OPS = (Op.RMSNORM, Op.LAYERNORM, Op.SHIFTMAX)


def split_bytes(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``w = 256 * hi + lo`` with int8 ``lo`` in [-128, 127] and ``hi`` in [-127, 127]
    (``|w| <= NORM_W_MAX``): the two byte rows a staged constant is loaded from.

    Raises
    ------
    CompileError if a value is beyond NORM_W_MAX.
    """
    w = w.to(torch.int64)
    if w.numel() and int(w.abs().max()) > NORM_W_MAX:
        raise CompileError(f"a constant vector holds {int(w.abs().max())}, beyond the "
                           f"{NORM_W_MAX} that two int8 bytes can stage")
    lo = ((w + 128) & 255) - 128
    hi = (w - lo) >> 8
    return lo, hi


# ---------------------------------------------------------------------------------------
# The program builder: symbolic scratch vectors, then a linear-scan allocation
# ---------------------------------------------------------------------------------------

class _Vec:
    """A scratch vector of the program: fixed (an address) or a work vector (allocated)."""
    __slots__ = ("name", "n", "addr", "fixed", "first", "last")

    def __init__(self, name: str, n: int, addr: int | None = None):
        self.name, self.n, self.addr = name, n, addr
        self.fixed = addr is not None
        self.first = self.last = None


@dataclasses.dataclass
class _Const:
    name: str
    values: torch.Tensor       # int64 (n,)
    resident: bool = True
    vec: _Vec | None = None    # resident: the fixed vector
    wbase: int = 0             # staged: word of the lo row; hi row at wbase + k
    k: int = 0


class _Builder:
    def __init__(self):
        self.items: list[tuple[dict, dict]] = []   # (Instr fields, {"src"/"aux"/"dst": _Vec})
        self.temps: list[_Vec] = []

    def vec(self, name: str, n: int) -> _Vec:
        v = _Vec(name, n)
        self.temps.append(v)
        return v

    def emit(self, op: Op, *, src=None, aux=None, dst=None, **fields) -> None:
        ops = {}
        for key, v in (("src", src), ("aux", aux), ("dst", dst)):
            if isinstance(v, _Vec):
                ops[key] = v
            elif v is not None:
                fields[key] = int(v)
        idx = len(self.items)
        for key, v in ops.items():
            if v.fixed:
                continue
            if key == "dst":
                if v.first is not None:
                    raise AssertionError(f"work vector {v.name} written twice")
                v.first = idx
            elif v.first is None:
                raise AssertionError(f"work vector {v.name} read before it is written")
            v.last = idx
        self.items.append((dict(op=op, **fields), ops))

    def allocate(self, base: int) -> int:
        """Give every work vector an address >= base; returns the end of the work area."""
        live: list[_Vec] = []
        end = base
        by_first = collections.defaultdict(list)
        for v in self.temps:
            if v.first is None:
                raise AssertionError(f"work vector {v.name} is never written")
            by_first[v.first].append(v)
        for idx in range(len(self.items)):
            live = [v for v in live if v.last >= idx]
            for v in by_first.get(idx, ()):
                addr = base
                for u in sorted(live, key=lambda u: u.addr):
                    if addr + v.n <= u.addr:
                        break
                    addr = max(addr, u.addr + u.n)
                v.addr = addr
                end = max(end, addr + v.n)
                live.append(v)
        return end

    def program(self) -> list[Instr]:
        out = []
        for fields, ops in self.items:
            f = dict(fields)
            for key, v in ops.items():
                f[key] = v.addr
            out.append(Instr(**f))
        return out


# ---------------------------------------------------------------------------------------
# The compiled model
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CompiledLM:
    """A compiled LM (see the module docstring for the host protocol and the maps).

    Attributes
    ----------
    program : list[Instr], straight-line, one token, ending ARGMAX, HALT (greedy) or
        SHIFTMAX, SAMPLE, HALT (sampling)
    weight_words : list[int], the weight memory from word 0 (``2 * lanes`` bits a word)
    scratch_constants : {scratch address: list of int16}, written once before the first token
    token_addr : scratch word the host writes the token id to
    logits_addr, n_logits : the logits: raw int32 in the output buffer (greedy), or int16
        in the scratchpad (sampling, ``logits_in_scratch``)
    state_addrs : scratch address of each layer's MLGRU state (attn_size words)
    cfg : AccelConfig
    scratch_map : {name: (address, words)} of the fixed scratch regions and the work area
    weight_map : {name: (word offset, words)} of every matrix, the embedding, staged rows
    staged : names of the constant vectors loaded from the weight memory every token
    scratch_words : scratch words the program uses (highest address + 1)
    trit_macs : useful ternary multiply-accumulates a token (sum of N * K)
    logits_in_scratch : True for a sampling program (the int16 logits are in scratch)
    sampler_addr : scratch address of the two LFSR words (sampling), else None
    probs_addr : scratch address of the Q15 probabilities SAMPLE draws from, else None
    seed, temperature : the sampling program's seed (its LFSR words in
        ``scratch_constants``) and temperature (in SHIFTMAX's exp gain), else None
    """
    program: list
    weight_words: list
    scratch_constants: dict
    token_addr: int
    logits_addr: int
    n_logits: int
    state_addrs: list
    cfg: AccelConfig
    scratch_map: dict
    weight_map: dict
    staged: list
    scratch_words: int
    trit_macs: int
    logits_in_scratch: bool = False
    sampler_addr: int | None = None
    probs_addr: int | None = None
    seed: int | None = None
    temperature: float | None = None

    @property
    def sample(self) -> bool:
        """True for a sampling program (SHIFTMAX + SAMPLE)."""
        return self.sampler_addr is not None

    def lfsr_words(self, seed: int) -> dict[int, list[int]]:
        """``{sampler_addr: [lo, hi]}``: the scratch words that (re)seed the sampler
        (golden.sampler.seed_state; write them to start a new sequence with a new seed).

        Raises
        ------
        ValueError for a greedy program (it has no sampler).
        """
        if self.sampler_addr is None:
            raise ValueError("a greedy program has no sampler to seed; compile with sample=True")
        return {self.sampler_addr: list(split_state(seed_state(seed)))}

    def with_seed(self, seed: int) -> "CompiledLM":
        """This program with other LFSR seed words in ``scratch_constants`` (the program and
        the weight image are unchanged, so an RTL build is reused)."""
        sc = dict(self.scratch_constants)
        sc.update(self.lfsr_words(seed))
        return dataclasses.replace(self, scratch_constants=sc, seed=int(seed))

    @property
    def program_words(self) -> list[int]:
        """The program as 128-bit instruction words (golden.isa.encode)."""
        return encode_program(self.program)

    def op_counts(self) -> dict[str, int]:
        """Instructions of one token by opcode name (HALT included)."""
        return dict(collections.Counter(Op(i.op).name for i in self.program))

    def vector_elements(self) -> dict[str, int]:
        """Elements streamed by the vector units a token, by opcode (``passes * n``:
        RMSNORM 2 passes, SHIFTMAX 3, SAMPLE 2, the others 1; EMBED: bytes written)."""
        passes = {Op.RMSNORM: 2, Op.LAYERNORM: 2, Op.SHIFTMAX: 3, Op.SAMPLE: 2}
        out: dict[str, int] = collections.Counter()
        for i in self.program:
            if i.op in (Op.MATVEC, Op.ARGMAX, Op.HALT):
                continue
            out[Op(i.op).name] += i.n * passes.get(Op(i.op), 1)
        return dict(out)

    def initial_scratch(self, token: int) -> dict[int, list[int]]:
        """``scratch_init`` of the first token: the constants and the token id."""
        d = {a: list(v) for a, v in self.scratch_constants.items()}
        d[self.token_addr] = [int(token)]
        return d

    def listing(self) -> str:
        """The program as text, one instruction a line, with the scratch map as comments."""
        where = "scratch" if self.logits_in_scratch else "out"
        lines = [f"# ternac LM program: lanes={self.cfg.lanes} token scratch[{self.token_addr}] "
                 f"logits {where}[{self.logits_addr}:{self.logits_addr + self.n_logits}] "
                 f"scratch words {self.scratch_words}"
                 + (f" sampler: LFSR scratch[{self.sampler_addr}:{self.sampler_addr + 2}] "
                    f"seed {self.seed} temperature {self.temperature}" if self.sample else "")]
        lines += [f"# scratch {a:5d} +{n:<4d} {name}" for name, (a, n) in
                  sorted(self.scratch_map.items(), key=lambda kv: kv[1])]
        lines += [str(i) for i in self.program]
        return "\n".join(lines) + "\n"


def _field(value: int, name: str, what: str) -> None:
    bits = _FIELD_BITS[name]
    if not 0 <= value < (1 << bits):
        raise CompileError(f"{what}: ISA field {name} = {value} does not fit its {bits} bits "
                           f"(at most {(1 << bits) - 1})")


def _constants(intlm: IntLM) -> list[tuple[str, torch.Tensor]]:
    """Every constant vector the program reads, in order of first use."""
    out = []
    for L in intlm.layers:
        out.append((L.attn_norm.name, L.attn_norm.weight))
        out.append((L.f_in.name, L.f_in.weight))
        if L.lb is not None:
            p = L.attn_norm.name.rsplit(".", 1)[0]
            out.append((p + ".attn.one_minus_lb", L.one_minus_lb))
            out.append((p + ".attn.lb", L.lb))
        for nm in (L.i_in, L.g_in, L.g_norm, L.o_in, L.mlp_norm, L.gate_in, L.down_in):
            out.append((nm.name, nm.weight))
    out.append((intlm.final_norm.name, intlm.final_norm.weight))
    out.append((intlm.head_norm.name, intlm.head_norm.weight))
    return out


def _linears(intlm: IntLM) -> list[IntLinear]:
    out = []
    for L in intlm.layers:
        out += [L.f_proj, L.i_proj, L.g_proj, L.o_proj, L.gate_proj, L.y_proj, L.down_proj]
    return out + [intlm.lm_head]


def _build(intlm: IntLM, cfg: AccelConfig, resident: set[str], sample: bool = False,
           gain: tuple[int, int] = (0, 0)):
    """Weight layout, program and scratch allocation for one choice of resident constants
    (``sample``: the sampling ending, SHIFTMAX exp gain ``gain``).

    Returns (builder, weight_words, weight_map, consts, fixed_end, work_end, ends), ``ends``
    the sampling program's vectors {"lfsr", "logits16", "probs"} (empty when greedy).
    """
    lanes = cfg.lanes
    c = intlm.config
    d, D, V = c.hidden_size, c.attn_size, c.vocab_size
    n_layers = len(intlm.layers)

    # --- weight memory: matrices, embedding, staged constants ---------------------------
    words: list[int] = []
    wmap: dict[str, tuple[int, int]] = {}
    for lin in _linears(intlm):
        t = tile_lanes(lin.trits, lanes)
        wmap[lin.name] = (len(words), len(t))
        words += t
    emb_words, emb_k = embedding_words(intlm.emb_table, lanes)
    emb_base = len(words)
    wmap["embeddings"] = (emb_base, len(emb_words))
    words += emb_words
    consts: dict[str, _Const] = {}
    addr = STATE_ADDR + n_layers * D
    ends: dict[str, _Vec] = {}
    if sample:
        ends["lfsr"] = _Vec("sampler lfsr", 2, addr)
        addr += 2
    for name, vals in _constants(intlm):
        k = _Const(name, vals.to(torch.int64), name in resident)
        if k.resident:
            k.vec = _Vec("const " + name, vals.numel(), addr)
            addr += vals.numel()
        else:
            lo, hi = split_bytes(k.values)
            rows, k.k = embedding_words(torch.stack([lo, hi]), lanes)
            k.wbase = len(words)
            wmap["staged " + name] = (k.wbase, len(rows))
            words += rows
        consts[name] = k
    fixed_end = addr

    # --- program ------------------------------------------------------------------------
    b = _Builder()
    token = _Vec("token", 1, TOKEN_ADDR)
    zero = _Vec("zero", 1, ZERO_ADDR)
    states = [_Vec(f"state {i}", D, STATE_ADDR + i * D) for i in range(n_layers)]
    WIDE, OUT8, NEG, RAW = int(Flag.WIDE), int(Flag.OUT8), int(Flag.NEG), int(Flag.RAW)

    def const(name: str) -> _Vec:
        k = consts[name]
        if k.resident:
            return k.vec
        n = k.values.numel()
        lo, hi, w = b.vec(name + " lo", n), b.vec(name + " hi", n), b.vec(name, n)
        b.emit(Op.EMBED, src=zero, dst=lo, n=n, k=k.k, wbase=k.wbase)
        b.emit(Op.EMBED, src=zero, dst=hi, n=n, k=k.k, wbase=k.wbase + k.k)
        b.emit(Op.ADD, src=hi, aux=lo, dst=w, n=n, m=256, s=0, wbase=1, k=0)
        return w

    def norm(x: _Vec, nm: IntNorm, out: str) -> _Vec:
        w = const(nm.name)
        y = b.vec(out, x.n)
        b.emit(Op.RMSNORM, flags=OUT8 if nm.out_bits == 8 else 0, src=x, aux=w, dst=y, n=x.n,
               m=nm.m, s=nm.s)
        return y

    def matvec(x: _Vec, lin: IntLinear, out: str) -> _Vec:
        n, kk = lin.trits.shape
        y = b.vec(out, n)
        b.emit(Op.MATVEC, flags=WIDE, src=x, dst=y, n=n, k=kk, wbase=wmap[lin.name][0],
               m=lin.m, s=lin.s)
        return y

    def act(op: Op, x: _Vec, a, out: str, flags: int = 0) -> _Vec:
        y = b.vec(out, x.n)
        b.emit(op, flags=flags, src=x, aux=x, dst=y, n=x.n, m=a.m, s=a.s, wbase=a.m2, k=a.s2)
        return y

    def mul(x: _Vec, y: _Vec, ms, out: str | _Vec) -> _Vec:
        z = out if isinstance(out, _Vec) else b.vec(out, x.n)
        b.emit(Op.MUL, src=x, aux=y, dst=z, n=x.n, m=ms[0], s=ms[1])
        return z

    def add(x: _Vec, y: _Vec, ms, ms2, out: str | _Vec) -> _Vec:
        z = out if isinstance(out, _Vec) else b.vec(out, x.n)
        b.emit(Op.ADD, src=x, aux=y, dst=z, n=x.n, m=ms[0], s=ms[1], wbase=ms2[0], k=ms2[1])
        return z

    E = b.vec("E", d)
    b.emit(Op.EMBED, src=token, dst=E, n=d, k=emb_k, wbase=emb_base)
    R = add(E, E, intlm.emb_res, (0, 0), "R")
    for li, L in enumerate(intlm.layers):
        p = f"layers.{li}."
        H = states[li]
        X16 = norm(R, L.attn_norm, p + "X16")
        F_ = matvec(norm(X16, L.f_in, p + "XF"), L.f_proj, p + "F_")
        Fq = act(Op.SIGMOID, F_, L.f_sig, p + "F")
        NF = act(Op.SIGMOID, F_, L.f_sig, p + "NF", NEG)
        if L.lb is not None:
            omlb, lbv = const(p + "attn.one_minus_lb"), const(p + "attn.lb")
            Fq = add(mul(Fq, omlb, (1, LB_FRAC_BITS), p + "F*(1-lb)"), lbv, (1, 0),
                     (1 << (15 - LB_FRAC_BITS), 0), p + "F'")
            NF = mul(NF, omlb, (1, LB_FRAC_BITS), p + "NF'")
        I_ = matvec(norm(X16, L.i_in, p + "XI"), L.i_proj, p + "I_")
        SI = act(Op.SILU, I_, L.i_silu, p + "SI")
        C = mul(SI, NF, L.c_mul, p + "C")
        FH = mul(Fq, H, L.fh_mul, p + "FH")
        add(FH, C, (1, 0), (1, 0), H)
        G_ = matvec(norm(X16, L.g_in, p + "XG"), L.g_proj, p + "G_")
        GN = norm(G_, L.g_norm, p + "GN")
        SH = act(Op.SILU, H, L.h_silu, p + "SH")
        O = mul(GN, SH, L.o_mul, p + "O")
        OP = matvec(norm(O, L.o_in, p + "XO"), L.o_proj, p + "OP")
        R = add(R, OP, (1, 0), (1, 0), p + "R1")
        XM = norm(norm(R, L.mlp_norm, p + "XM16"), L.gate_in, p + "XM")
        GT = matvec(XM, L.gate_proj, p + "GT")
        Y = matvec(XM, L.y_proj, p + "Y")
        SG = act(Op.SILU, GT, L.gate_silu, p + "SG")
        Z = mul(SG, Y, L.z_mul, p + "Z")
        DP = matvec(norm(Z, L.down_in, p + "XD"), L.down_proj, p + "DP")
        R = add(R, DP, (1, 0), (1, 0), p + "R2")
    XL = norm(norm(R, intlm.final_norm, "XN"), intlm.head_norm, "XL")
    if sample:
        lw = intlm._wide()
        L16, P = b.vec("logits16", V), b.vec("probs", V)
        b.emit(Op.MATVEC, flags=WIDE, src=XL, dst=L16, n=V, k=d, wbase=wmap[intlm.lm_head.name][0],
               m=lw.m, s=lw.s)
        b.emit(Op.SHIFTMAX, src=L16, aux=L16, dst=P, n=V, m=gain[0], s=gain[1])
        b.emit(Op.SAMPLE, src=P, aux=ends["lfsr"], n=V)
        ends.update(logits16=L16, probs=P)
    else:
        b.emit(Op.MATVEC, flags=RAW, src=XL, dst=0, n=V, k=d, wbase=wmap["lm_head"][0])
        b.emit(Op.ARGMAX, src=0, n=V)
    b.emit(Op.HALT)
    work_end = b.allocate(fixed_end)
    return b, words, wmap, consts, fixed_end, work_end, ends


def compile_lm(intlm: IntLM, cfg: AccelConfig = LM_CONFIG, sample: bool = False, *,
               seed: int = 0, temperature: float = 1.0) -> "CompiledLM":
    """Compile an integer MatMul-free LM for one accelerator configuration.

    Parameters
    ----------
    intlm : golden.lm_int.IntLM
    cfg : AccelConfig (default :data:`LM_CONFIG`, the UP5K build; a sampling program
        needs the ``shiftmax`` unit: :data:`LM_SAMPLE_CONFIG`)
    sample : False for the greedy program (RAW logits, ARGMAX); True for the sampling
        program (WIDE int16 logits, SHIFTMAX, SAMPLE; see the module docstring), which
        equals ``IntLM.generate(greedy=False, seed=seed, temperature=temperature)``
    seed : the sampler's seed (golden.sampler.seed_state), written into the LFSR words of
        ``scratch_constants`` (sampling only; :meth:`CompiledLM.with_seed` changes it)
    temperature : folded into SHIFTMAX's exp gain (``IntLM.sample_gain``; sampling only)

    Returns
    -------
    CompiledLM

    Raises
    ------
    CompileError, one sentence with the numbers, if: a fan-in exceeds ``cfg.max_fan_in``;
    the vocabulary exceeds ``cfg.out_depth``; the program needs a vector unit that
    ``cfg.vector`` lacks, or a norm/Shiftmax over more than ``cfg.max_vector`` elements;
    the temperature is not positive and finite or the model has no int16 logits
    (sampling); the weights (trits, embedding and staged
    constants) exceed ``cfg.weight_depth`` words; the scratch map exceeds
    ``cfg.scratch_depth`` (or the 4096 words the ISA's 12-bit addresses can name) even
    with every constant staged; the program exceeds ``cfg.prog_depth``; a value does not
    fit its ISA field.
    """
    c = intlm.config
    lanes = cfg.lanes
    for lin in _linears(intlm):
        n, k = lin.trits.shape
        if k > cfg.max_fan_in:
            raise CompileError(f"{lin.name} has fan-in {k}, more than the {cfg.max_fan_in} the "
                               f"accelerator's accumulators are sized for (max_fan_in)")
        if not lin.raw and not (0 <= lin.m < (1 << M_BITS) and 0 <= lin.s <= S_MAX):
            raise CompileError(f"{lin.name} has requantization m={lin.m}, s={lin.s}, outside "
                               f"m < 2**{M_BITS}, s <= {S_MAX}")
    V = c.vocab_size
    if V > cfg.out_depth:
        raise CompileError(f"the vocabulary has {V} symbols, more than the {cfg.out_depth}-word "
                           f"output buffer holds (out_depth)")
    gain = (0, 0)
    if sample:
        try:
            gain = intlm.sample_gain(temperature)
            lw = intlm._wide()
        except ValueError as exc:
            raise CompileError(f"cannot compile the sampling program: {exc}") from None
        if not (0 <= lw.m < (1 << M_BITS) and 0 <= lw.s <= S_MAX):
            raise CompileError(f"the int16 lm_head has requantization m={lw.m}, s={lw.s}, "
                               f"outside m < 2**{M_BITS}, s <= {S_MAX}")
    depth = min(cfg.scratch_depth, _ADDR_LIMIT)
    consts = _constants(intlm)
    sizes = {name: v.numel() for name, v in consts}

    def build(resident):
        return _build(intlm, cfg, resident, sample, gain)

    # Every constant resident if that fits; else as many words resident as fit next to
    # the work area that staging everything needs, largest vectors first.
    built = build(set(sizes))
    if built[5] > depth:
        staged_all = build(set())
        fixed0 = staged_all[4]
        if staged_all[5] > depth:
            d, D, L = c.hidden_size, c.attn_size, len(intlm.layers)
            raise CompileError(
                f"the scratch map needs {staged_all[5]} words ({STATE_ADDR} fixed, {L * D} "
                f"of MLGRU state, {staged_all[5] - fixed0} of work vectors with every norm "
                f"weight staged from the weight memory), but the scratchpad holds {depth}"
                + (" (scratch_depth)" if depth == cfg.scratch_depth else
                   f" (the ISA's 12-bit addresses; scratch_depth is {cfg.scratch_depth})"))
        budget = depth - staged_all[5]
        resident: set[str] = set()
        for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
            if sizes[name] <= budget:
                resident.add(name)
                budget -= sizes[name]
        built = build(resident)
        while built[5] > depth:  # fragmentation: give one more vector back (rare)
            resident.discard(min(resident, key=lambda n: (sizes[n], n)))
            built = build(resident)
    b, words, wmap, cmap, fixed_end, work_end, ends = built

    if len(words) > cfg.weight_depth:
        n_trit = sum(wmap[lin.name][1] for lin in _linears(intlm))
        n_emb = wmap["embeddings"][1]
        raise CompileError(
            f"the model needs {len(words)} weight words of {cfg.word_bits} bits at {lanes} "
            f"lanes ({n_trit} of trits, {n_emb} of embedding, {len(words) - n_trit - n_emb} "
            f"of staged norm weights), but the weight memory holds {cfg.weight_depth} "
            f"(weight_depth)")
    prog = b.program()
    if len(prog) > cfg.prog_depth:
        raise CompileError(f"the program has {len(prog)} instructions, more than the "
                           f"{cfg.prog_depth} the program memory holds (prog_depth)")
    for idx, ins in enumerate(prog):
        unit = VECTOR_UNIT_OF.get(Op(ins.op))
        if unit is not None and unit not in cfg.vector:
            raise CompileError(f"instruction {idx} ({Op(ins.op).name}) needs the {unit!r} vector "
                               f"unit, but the configuration builds only "
                               f"{', '.join(map(repr, cfg.vector)) or 'none'} (AccelConfig.vector)")
        if ins.op in _SUMMING_OPS and ins.n > cfg.max_vector:
            raise CompileError(f"instruction {idx} ({Op(ins.op).name}) runs over {ins.n} elements, "
                               f"more than the {cfg.max_vector} the vector units are sized for "
                               f"(max_vector)")
        for name in ("src", "dst", "aux", "n", "k", "wbase", "m", "s"):
            _field(int(getattr(ins, name)), name, f"instruction {idx} ({Op(ins.op).name})")
        try:
            encode(ins)
        except ValueError as exc:  # pragma: no cover - every field is checked above
            raise CompileError(f"instruction {idx}: {exc}") from None

    D = c.attn_size
    state_addrs = [STATE_ADDR + i * D for i in range(len(intlm.layers))]
    smap = {"token": (TOKEN_ADDR, 1), "zero": (ZERO_ADDR, 1)}
    sconst: dict[int, list[int]] = {ZERO_ADDR: [0]}
    for i, a in enumerate(state_addrs):
        smap[f"layers.{i}.state"] = (a, D)
        sconst[a] = [0] * D
    extra: dict = {}
    if sample:
        lf = ends["lfsr"]
        smap["sampler lfsr"] = (lf.addr, 2)
        sconst[lf.addr] = list(split_state(seed_state(seed)))
        smap["logits16"] = (ends["logits16"].addr, V)
        smap["probs"] = (ends["probs"].addr, V)
        extra = dict(logits_in_scratch=True, sampler_addr=lf.addr,
                     probs_addr=ends["probs"].addr, seed=int(seed),
                     temperature=float(temperature))
    for name, k in cmap.items():
        if k.resident:
            smap["const " + name] = (k.vec.addr, k.vec.n)
            sconst[k.vec.addr] = [int(v) for v in k.values]
    smap["work"] = (fixed_end, work_end - fixed_end)
    return CompiledLM(program=prog, weight_words=words, scratch_constants=sconst,
                      token_addr=TOKEN_ADDR,
                      logits_addr=ends["logits16"].addr if sample else 0, n_logits=V,
                      state_addrs=state_addrs, cfg=cfg, scratch_map=smap, weight_map=wmap,
                      staged=[n for n, k in cmap.items() if not k.resident],
                      scratch_words=work_end,
                      trit_macs=sum(int(l.trits.numel()) for l in _linears(intlm)), **extra)


def lm_config(intlm: IntLM, *, lanes: int = 32, scratch_depth: int = 4096,
              sample: bool = False) -> AccelConfig:
    """The smallest AccelConfig of ``lanes`` lanes and ``scratch_depth`` words that holds
    ``intlm``: weight_depth = the words it needs, prog_depth = its instructions, out_depth
    = its vocabulary, max_fan_in = its widest fan-in, the vector units the program uses
    (with ``shiftmax`` for the sampling program, ``sample=True``) and max_vector = its
    longest norm (or Shiftmax) vector.

    Raises
    ------
    CompileError as :func:`compile_lm` (e.g. a scratchpad too small for the work vectors).
    """
    units = ("activation", "norm", "eltwise") + (("shiftmax",) if sample else ())
    big = AccelConfig(lanes=lanes, weight_depth=1 << 20, scratch_depth=scratch_depth,
                      out_depth=max(1, intlm.config.vocab_size), prog_depth=1 << 20,
                      max_fan_in=1 << 20, vector=units, max_vector=1 << 20)
    cm = compile_lm(intlm, big, sample)
    used = {VECTOR_UNIT_OF[Op(i.op)] for i in cm.program if Op(i.op) in VECTOR_UNIT_OF}
    return AccelConfig(lanes=lanes, weight_depth=len(cm.weight_words), scratch_depth=scratch_depth,
                       out_depth=intlm.config.vocab_size, prog_depth=len(cm.program),
                       max_fan_in=max(int(l.trits.shape[1]) for l in _linears(intlm)),
                       vector=tuple(u for u in units if u in used),
                       max_vector=max([i.n for i in cm.program if i.op in _SUMMING_OPS] or [1]))


def run_tokens(cm: CompiledLM, tokens: Sequence[int], scratch: torch.Tensor | None = None
               ) -> Iterator[tuple[torch.Tensor, int, torch.Tensor]]:
    """Run the compiled program in the interpreter (golden.interpreter.run_program), one
    token after another, carrying the scratchpad (and so the state) across tokens.

    Parameters
    ----------
    cm : CompiledLM
    tokens : token ids
    scratch : the scratchpad after an earlier token ((scratch_depth,) int tensor) to
        continue from, or None to start from ``scratch_constants`` (zero state)

    Yields
    ------
    (logits, next_token, scratch) per token: (n_logits,) int64 logits (raw int32 from the
    output buffer; for a sampling program the int16 logits from the scratchpad), the
    result register (ARGMAX, or SAMPLE's draw), and the (scratch_depth,) scratchpad after
    the token (it carries the state and the LFSR to the next token).
    """
    from ternac.golden.interpreter import run_program

    cfg = cm.cfg
    for t in tokens:
        if scratch is None:
            init = cm.initial_scratch(int(t))
        else:
            init = scratch.clone().reshape(1, -1)
            init[0, cm.token_addr] = int(t)
        st = run_program(cm.program, cm.weight_words, lanes=cfg.lanes,
                         scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                         weight_depth=cfg.weight_depth, scratch_init=init)
        scratch = st.scratch[0]
        mem = st.scratch if cm.logits_in_scratch else st.out
        yield (mem[0, cm.logits_addr:cm.logits_addr + cm.n_logits].clone(),
               int(st.result[0]), scratch)
