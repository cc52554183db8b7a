"""The lowering: a model graph (:mod:`ternac.golden.graph`) -> program + weight image +
scratch map for one accelerator configuration. One compiler for every model.

:func:`lower` is the whole compiler; :func:`compile_mlp` and :func:`compile_lm` are the two
model front ends (they build the graph with :func:`ternac.golden.mlp.mlp_graph` and
:meth:`ternac.golden.lm_int.IntLM.graph` and lower it). The interpreter running the lowered
program equals :meth:`Graph.evaluate <ternac.golden.graph.Graph.evaluate>` on every element
(tests/test_lower.py); that equality is the test of this module.

Weight memory (words of ``2 * lanes`` bits, from word 0)
--------------------------------------------------------
1. every ternary matrix, in order of first use, lane-tiled I2
   (:func:`ternac.golden.packing.tile_lanes`): the weight image's tensors;
2. every EMBED byte table, one row of ``ceil(d / (lanes / 4))`` words a token
   (:func:`ternac.golden.packing.embedding_words`); a table into which the lowering folded
   the embedding's one elementwise reader (:func:`_fold_embeddings`, the LM's ``R = ADD(E,
   E)``) as int16 rows of little-endian halfwords, twice the words, read by ``EMBED WIDE``;
3. the *staged* constant vectors: where a word holds an even number of bytes, each as one
   row of little-endian int16 halfwords loaded before use by one ``EMBED WIDE`` (row index
   0 from the zero word); else as two int8 byte rows ``lo``, ``hi`` with ``w = 256 hi +
   lo`` (``|w| <= NORM_W_MAX``), loaded by ``EMBED lo; EMBED hi; ADD(hi, lo; m=256, s=0,
   m2=1, s2=0)``;
4. with ``fuse``, on words of whole halfwords (:func:`mul_wb_ok`), every constant read only
   as the ``b`` of standalone MULs (:func:`_wb_consts`; the LM's attn_norm, mlp_norm and
   final norm weights) as one such row of int16 halfwords, which those MULs read in place
   (golden/isa.py ``wb``): it takes no scratch words, needs no EMBED, and leaves its room
   to the constants that stay resident.

Scratch map (16-bit words)
--------------------------
The input vectors (from 0, in definition order; the LM's ``token`` is word 0), a zero word
(if the graph has constants: the row index of staged EMBEDs), the state vectors, the
resident constants, then the work area: every ``temp`` vector gets an address by a
linear-scan allocation over the straight-line program (a vector lives from the instruction
that writes it to the last that reads it; the first free gap that fits is taken), so
buffers are reused and no instruction writes over one of its own operands. RAW MATVEC
outputs (int32 accumulators) go to the output buffer from word 0.

Constants are *resident* (written once by the host) if the scratchpad holds them all; else
as many words resident as fit beside the work area that staging everything needs, largest
vectors first, the rest staged. The ISA's 12-bit addresses cap the scratchpad at 4096 words.

Every check raises :class:`ternac.errors.CompileError`, one sentence with the numbers.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Iterator, Sequence

import torch

from ternac.config import LM_CONFIG, LM_SAMPLE_CONFIG, UP5K_SPRAM_WORDS, AccelConfig
from ternac.errors import CheckpointError, CompileError
from ternac.golden.fileio import atomic_write
from ternac.golden.graph import Graph, GraphError
from ternac.golden.image import Format, WeightImage, TensorEntry
from ternac.golden.isa import (CHAIN_FIRST, CHAIN_SECOND, PRO_MIN_K, FIELDS, Flag, Instr, Op,
                               chain_refusal, chain_three_overlap, chain_three_refusal, encode,
                               encode_program, prologue_pair)
from ternac.golden.lm_int import NORM_W_MAX
from ternac.golden.numerics import M_BITS, S_MAX
from ternac.golden.ops import REGISTRY as _REGISTRY, spec


def _registry():
    return _REGISTRY
from ternac.golden.packing import embedding_words, tile_lanes, tile_lanes_t3
from ternac.golden.sampler import seed_state, split_state
from ternac.golden.widths import SHIFTMAX_OUT_BITS, acc_width, shiftmax_min_out_bits

__all__ = ["CompileError", "Lowered", "Compiled", "CompiledLM", "lower", "compile_mlp",
           "compile_lm", "lm_config", "LM_CONFIG", "LM_SAMPLE_CONFIG", "UP5K_SPRAM_WORDS",
           "TOKEN_ADDR", "ZERO_ADDR", "STATE_ADDR", "split_bytes", "run_tokens",
           "load_model", "compile_checkpoint", "compile_image", "layers_from_image",
           "write_compiled", "useful_macs", "check_program", "port_a_reads"]

_FIELD_BITS = dict(FIELDS)
#: Scratch addresses the ISA can name (12-bit src/dst/aux fields).
ADDR_LIMIT = 1 << _FIELD_BITS["src"]
#: The LM's fixed scratch words: the token id, the zero word, then the state.
TOKEN_ADDR = 0
ZERO_ADDR = 1
STATE_ADDR = 2


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
# The lowered model
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Lowered:
    """A lowered model: what the host loads and runs.

    Host protocol: once, load ``weight_words`` into the weight memory from word 0,
    ``program_words`` into the program memory and write ``scratch_constants``
    (``{address: [int16 words]}``: the zero word, zero state, resident constants, a
    sampler's LFSR words). Per run: write each input at ``inputs[name][0]``, start, wait
    for done; read the outputs (``outputs``) and the ``result`` register. The scratchpad
    keeps the state between runs.

    Attributes
    ----------
    program : list[Instr], straight-line, ending in HALT
    weight_words : list[int], the weight memory from word 0 (``2 * lanes`` bits a word)
    image : WeightImage of the ternary matrices (the first words of ``weight_words``)
    scratch_constants : {scratch address: list of int16}
    inputs, states : {name: (scratch address, words)}
    outputs : {name: (space, address, words)}, space "scratch" or "out"
    scratch_map : {name: (address, words)} of the fixed regions and the work area
    weight_map : {name: (word offset, words)} of every matrix, table and staged row
    staged : names of the constants loaded from the weight memory every run
    scratch_words : scratch words the program uses (highest address + 1)
    trit_macs : useful ternary multiply-accumulates a run (sum of N * K)
    graph : the Graph it was lowered from
    cfg : AccelConfig
    seed, temperature : a sampling program's seed and temperature, else None
    """
    program: list
    weight_words: list
    image: WeightImage
    scratch_constants: dict
    inputs: dict
    states: dict
    outputs: dict
    scratch_map: dict
    weight_map: dict
    staged: list
    scratch_words: int
    trit_macs: int
    graph: Graph
    cfg: AccelConfig
    seed: int | None = None
    temperature: float | None = None

    # --- views the host runners use -------------------------------------------------------
    @property
    def program_words(self) -> list[int]:
        """The program as 128-bit instruction words (golden.isa.encode)."""
        return encode_program(self.program)

    @property
    def input_addr(self) -> int:
        """Scratch address of the (first) input vector."""
        return next(iter(self.inputs.values()))[0]

    @property
    def input_len(self) -> int:
        return next(iter(self.inputs.values()))[1]

    @property
    def token_addr(self) -> int:
        """Scratch address of the LM's token id (its ``token`` input)."""
        return self.inputs["token"][0]

    @property
    def logits_addr(self) -> int:
        return next(iter(self.outputs.values()))[1]

    @property
    def n_logits(self) -> int:
        return next(iter(self.outputs.values()))[2]

    @property
    def logits_in_scratch(self) -> bool:
        """True when the logits are int16 scratch words (a sampling program)."""
        return next(iter(self.outputs.values()))[0] == "scratch"

    @property
    def state_addrs(self) -> list[int]:
        """Scratch address of each MLGRU state vector (``layers.l.H``)."""
        return [a for name, (a, _) in self.states.items() if name.endswith(".H")]

    @property
    def sampler_addr(self) -> int | None:
        """Scratch address of the two LFSR words (sampling), else None."""
        return self.states["lfsr"][0] if "lfsr" in self.states else None

    @property
    def probs_addr(self) -> int | None:
        return self.scratch_map["probs"][0] if "probs" in self.scratch_map else None

    @property
    def sample(self) -> bool:
        """True for a sampling program (SHIFTMAX + SAMPLE)."""
        return self.sampler_addr is not None

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(N, K) of each matrix, in weight-memory order."""
        return [(e.n, e.k) for e in self.image.tensors]

    def lfsr_words(self, seed: int) -> dict[int, list[int]]:
        """``{sampler_addr: [lo, hi]}``: the scratch words that (re)seed the sampler.

        Raises
        ------
        ValueError for a greedy program (it has no sampler).
        """
        if self.sampler_addr is None:
            raise ValueError("a greedy program has no sampler to seed; compile with sample=True")
        return {self.sampler_addr: list(split_state(seed_state(seed)))}

    def with_seed(self, seed: int) -> "Lowered":
        """This program with other LFSR seed words in ``scratch_constants`` (the program and
        the weight image are unchanged, so an RTL build is reused)."""
        sc = dict(self.scratch_constants)
        sc.update(self.lfsr_words(seed))
        return dataclasses.replace(self, scratch_constants=sc, seed=int(seed))

    @property
    def unrolled(self) -> list:
        """The program as it executes: every REPEAT unrolled (golden.isa.expand_program)."""
        from ternac.golden.isa import expand_program
        return [i for _, i in expand_program(self.program)]

    def op_counts(self) -> dict[str, int]:
        """Instructions a run by opcode name (HALT included; a REPEAT's body counted once an
        iteration, the REPEAT once)."""
        c = collections.Counter(Op(i.op).name for i in self.unrolled)
        reps = sum(1 for i in self.program if i.op == Op.REPEAT)
        if reps:
            c["REPEAT"] = reps
        return dict(c)

    def vector_elements(self) -> dict[str, int]:
        """Elements streamed by the vector units a run, by opcode (``passes * in_len``, from
        the op registry; EMBED: bytes written; SAMPLE: its two passes)."""
        out: dict[str, int] = collections.Counter()
        for i in self.unrolled:
            s = spec(i.op)
            if i.op in (Op.MATVEC, Op.ARGMAX, Op.HALT):
                continue
            out[s.name] += s.stream_len(i.n, i.k) * s.passes
        return dict(out)

    def initial_scratch(self, token: int) -> dict[int, list[int]]:
        """``scratch_init`` of the first token: the constants and the token id."""
        d = {a: list(v) for a, v in self.scratch_constants.items()}
        d[self.token_addr] = [int(token)]
        return d

    def listing(self) -> str:
        """The program as text, one instruction a line, with the maps as comments."""
        lines = [f"# ternac program ({self.graph.name}): lanes={self.cfg.lanes} "
                 f"scratch words {self.scratch_words} weight words {len(self.weight_words)}"
                 + (f" seed {self.seed} temperature {self.temperature}" if self.sample else "")]
        lines += [f"# input  {n} scratch[{a}:{a + k}]" for n, (a, k) in self.inputs.items()]
        lines += [f"# output {n} {sp}[{a}:{a + k}]" for n, (sp, a, k) in self.outputs.items()]
        lines += [f"# scratch {a:5d} +{n:<4d} {name}" for name, (a, n) in
                  sorted(self.scratch_map.items(), key=lambda kv: kv[1])]
        lines += [f"# weight  {a:6d} +{n:<6d} {name}" for name, (a, n) in
                  sorted(self.weight_map.items(), key=lambda kv: kv[1])]
        lines += [str(i) for i in self.program]
        return "\n".join(lines) + "\n"


#: Back-compatible names of the two former compilers' results.
Compiled = CompiledLM = Lowered


# ---------------------------------------------------------------------------------------
# The lowering
# ---------------------------------------------------------------------------------------

class _Buf:
    """A scratch vector of the program: fixed (an address) or a work vector (allocated)."""
    __slots__ = ("name", "n", "addr", "fixed", "first", "last", "read_a")

    def __init__(self, name: str, n: int, addr: int | None = None):
        self.name, self.n, self.addr = name, n, addr
        self.fixed = addr is not None
        self.first = self.last = None
        self.read_a = False     # read through the scratchpad's port a (port_a_reads)


class _View:
    """A slice ``[off, off + n)`` of a work or fixed vector (a graph view)."""
    __slots__ = ("base", "off", "n", "name")

    def __init__(self, base: _Buf, off: int, n: int, name: str):
        self.base, self.off, self.n, self.name = base, off, n, name


class _Builder:
    def __init__(self):
        self.items: list[tuple[dict, dict]] = []   # (Instr fields, {"src"/"aux"/"dst": _Buf})
        self.temps: list[_Buf] = []

    def buf(self, name: str, n: int) -> _Buf:
        v = _Buf(name, n)
        self.temps.append(v)
        return v

    def emit(self, op: Op, *, src=None, aux=None, dst=None, aux_out=False, aux_a=False,
             **fields) -> None:
        """One instruction; ``aux_out``: its ``aux`` buffer is a result (an epilogue
        pair's second, golden/isa.py ``pair``), written here, not read; ``aux_a``: its
        ``aux`` is read through port a (the third op of a chain of three)."""
        ops = {}
        for key, v in (("src", src), ("aux", aux), ("dst", dst)):
            if isinstance(v, (_Buf, _View)):
                ops[key] = v
            elif v is not None:
                fields[key] = int(v)
        idx = len(self.items)
        # What port a reads (port_a_reads): src, and SAMPLE's aux (its first LFSR word).
        for key in ("src", "aux") if op == Op.SAMPLE or aux_a else ("src",):
            v = ops.get(key)
            if v is not None:
                (v.base if isinstance(v, _View) else v).read_a = True
        # Reads first: a buffer read and written by one instruction (never allowed for
        # temps) is caught by the write check. A view's liveness is its parent's: from
        # the first write of any of its views to the last read.
        for key in ("src", "aux", "dst"):
            v = ops.get(key)
            view = isinstance(v, _View)
            if view:
                v = v.base
            if v is None or v.fixed:
                continue
            if key == "dst" or (key == "aux" and aux_out):
                if v.first is not None and not view:
                    raise AssertionError(f"work vector {v.name} written twice")
                if v.first is None:
                    v.first = idx
            elif v.first is None:
                raise AssertionError(f"work vector {v.name} read before it is written")
            v.last = idx
        self.items.append((dict(op=op, **fields), ops))

    def allocate(self, base: int, keep=None, around=()) -> int:
        """Give every work vector (those ``keep(v)`` is true of, default all) an address
        >= base, clear of the vectors of ``around`` (placed before) live at the same time;
        returns the end of the work area."""
        live: list[_Buf] = []
        end = base
        by_first = collections.defaultdict(list)
        for v in self.temps:
            if v.first is None:
                continue   # never written: a vector of the graph the program does not need
            if keep is not None and not keep(v):
                continue
            by_first[v.first].append(v)
        for idx in range(len(self.items)):
            live = [v for v in live if v.last >= idx]
            for v in by_first.get(idx, ()):
                addr = base
                near = [u for u in around if u.first <= v.last and u.last >= v.first]
                for u in sorted(live + near, key=lambda u: u.addr):
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
                f[key] = v.base.addr + v.off if isinstance(v, _View) else v.addr
            out.append(Instr(**f))
        return out


def _field(value: int, name: str, what: str) -> None:
    bits = _FIELD_BITS[name]
    if not 0 <= value < (1 << bits):
        raise CompileError(f"{what}: ISA field {name} = {value} does not fit its {bits} bits "
                           f"(at most {(1 << bits) - 1})")


def _readers(g: Graph) -> tuple[collections.Counter, set]:
    """How often each vector is read (a view's reads counted on its parent; a node reading
    one vector as a and b counts twice), and the vectors that must stay written (graph
    outputs and states): what decides whether a node's result may stream on unwritten."""
    readers = collections.Counter()
    for nd in g.nodes:
        for name in {nd.a, nd.b} - {None}:
            vec = g.vecs.get(name)
            readers[vec.parent if vec is not None and vec.kind == "view" else name] += (
                (nd.a == name) + (nd.b == name))
    return readers, set(g.outputs) | {v.name for v in g.kinds("state")}


def _epilogues(g: Graph) -> dict[int, bool]:
    """The MATVECs the lowering fuses with the next node (golden/isa.py ``epi``):
    ``{node index: swap}``. A requantized MATVEC is fused when the node right after it is
    an epilogue op of the registry (``OpSpec.epilogue``) of the same length and is the one
    reader of the MATVEC's output (read once, not a graph output, a state or a view's
    parent); ``swap`` when it reads that output as ``b`` (ADD, MUL: symmetric with the
    pairs swapped), which NEG (on ``a``) rules out."""
    readers, keep = _readers(g)
    out = {}
    for idx, (nd, e) in enumerate(zip(g.nodes, g.nodes[1:])):
        if (nd.op != Op.MATVEC or nd.flags & Flag.RAW or nd.out in keep
                or g.vecs[nd.out].kind != "temp"):
            continue
        es = spec(e.op)
        if not es.epilogue or readers[nd.out] != 1 or g.vecs[e.out].n != g.vecs[nd.out].n:
            continue
        if e.a == nd.out:
            out[idx] = False
        elif e.b == nd.out and es.operands == 2 and not e.flags & Flag.NEG:
            out[idx] = True
    return out


def _pairs(g: Graph, cfg: AccelConfig) -> dict[int, tuple[int, int]]:
    """The MATVECs the lowering runs with an epilogue pair (golden/isa.py ``pair``):
    ``{node index: (index of the SIGMOID, index of its NEG twin)}``. A requantized MATVEC of
    fan-in ``k >= 2 * lanes + 4`` (or of one tile, ``n <= lanes``) whose two next nodes are a SIGMOID and the same SIGMOID with
    NEG (in either order; the same n, m, s, m2, s2, flags but NEG), its output's only
    readers (a temp, not a graph output), on an accelerator building SIGMOID."""
    if Op.SIGMOID not in cfg.op_set or "activation" not in cfg.vector:
        return {}
    readers = collections.Counter()
    for nd in g.nodes:
        for name in (nd.a, nd.b):
            if name is not None:
                vec = g.vecs.get(name)
                readers[vec.parent if vec is not None and vec.kind == "view" else name] += 1
    keep = set(g.outputs) | {v.name for v in g.kinds("state")}
    out = {}
    for idx, nd in enumerate(g.nodes[:-2]):
        if (nd.op != Op.MATVEC or nd.flags & Flag.RAW or nd.out in keep
                or g.vecs[nd.out].kind != "temp" or readers[nd.out] != 2
                or (g.weights[nd.weight].shape[1] < 2 * cfg.lanes + 4
                    and g.weights[nd.weight].shape[0] > cfg.lanes)):
            continue
        e1, e2 = g.nodes[idx + 1], g.nodes[idx + 2]
        if not (e1.op == e2.op == Op.SIGMOID and e1.a == e2.a == nd.out
                and e1.b in (None, nd.out) and e2.b in (None, nd.out)
                and (e1.flags ^ e2.flags) == int(Flag.NEG)
                and (e1.m, e1.s, e1.m2, e1.s2) == (e2.m, e2.s, e2.m2, e2.s2)
                and g.vecs[e1.out].n == g.vecs[e2.out].n == g.vecs[nd.out].n):
            continue
        out[idx] = (idx + 1, idx + 2) if e2.flags & Flag.NEG else (idx + 2, idx + 1)
    return out


def chain_ok(cfg: AccelConfig) -> bool:
    """Whether the accelerator runs a chain (golden/isa.py ``chain``: an Activation op's
    results streaming into an ADD or MUL on the Eltwise unit): built with
    ``AccelConfig.op_chain`` (which needs both units)."""
    return bool(cfg.op_chain)


def _chains(g: Graph, cfg: AccelConfig, pairs: dict, wb_rows) -> dict[int, tuple[int, bool]]:
    """The nodes the lowering runs as the first op of a chain (golden/isa.py ``chain``):
    ``{node index: (index of the second, swap)}``. A SIGMOID, SILU or GELU whose output is
    a temp read once, by the next node, an ADD or MUL of the same length without NEG whose
    other operand is a vector in scratch (not a wb row); ``swap`` when that node reads the
    stream as ``b`` (ADD and MUL are symmetric with their pairs swapped). Of an epilogue
    pair (:func:`_pairs`) only the SIGMOID without NEG, of a MATVEC of one tile (``n <=
    lanes``), and "the next node" is the one after both SIGMOIDs. Where the first op is
    the epilogue of a MATVEC of one tile, its second may be the middle of a chain of
    three (an entry of its own, keyed by the second's index). On an accelerator with
    :func:`chain_ok` only."""
    if not chain_ok(cfg):
        return {}
    readers, keep = _readers(g)
    in_pair = {i for pi_ni in pairs.values() for i in pi_ni}
    pair_next = {pi: max(pi, ni) + 1 for mv, (pi, ni) in pairs.items()
                 if g.vecs[g.nodes[mv].out].n <= cfg.lanes}
    out = {}
    for idx, nd in enumerate(g.nodes):
        nxt = pair_next.get(idx, idx + 1)
        if (idx in in_pair and idx not in pair_next) or nxt >= len(g.nodes):
            continue
        e = g.nodes[nxt]
        if (nd.op not in CHAIN_FIRST or nd.out in keep
                or g.vecs[nd.out].kind != "temp" or readers[nd.out] != 1
                or e.op not in CHAIN_SECOND or e.flags & Flag.NEG
                or g.vecs[e.out].n != g.vecs[nd.out].n or e.a is None or e.b is None):
            continue
        if e.a == nd.out and e.b not in wb_rows:
            out[idx] = (nxt, False)
        elif e.b == nd.out and e.a not in wb_rows:
            out[idx] = (nxt, True)
    # Chains of three (golden/isa.py): a first op that is the epilogue of a MATVEC of one
    # tile, whose second's result is in turn read once, by the next node, an ADD or MUL as
    # above (its other operand then read through port a).
    epis = _epilogues(g)
    one_tile = {i + 1 for i in epis if g.vecs[g.nodes[i].out].n <= cfg.lanes}
    one_tile |= set(pair_next)
    for first, (mid, _) in list(out.items()):
        nd = g.nodes[mid]
        if first not in one_tile or mid + 1 >= len(g.nodes):
            continue
        e = g.nodes[mid + 1]
        if (nd.out in keep or g.vecs[nd.out].kind != "temp" or readers[nd.out] != 1
                or e.op not in CHAIN_SECOND or e.flags & Flag.NEG
                or g.vecs[e.out].n != g.vecs[nd.out].n or e.a is None or e.b is None):
            continue
        if e.a == nd.out and e.b not in wb_rows and e.b != nd.out:
            out[mid] = (mid + 1, False)
        elif e.b == nd.out and e.a not in wb_rows and e.a != nd.out:
            out[mid] = (mid + 1, True)
    return out


def mul_wb_ok(cfg: AccelConfig) -> bool:
    """Whether the accelerator runs a MUL whose ``b`` is a row of the weight memory
    (golden/isa.py ``wb``): it builds MUL on an Eltwise unit and its weight words hold an
    even number of bytes (whole int16 halfwords, as EMBED WIDE reads)."""
    return Op.MUL in cfg.op_set and "eltwise" in cfg.vector and cfg.word_bits % 16 == 0


def _wb_consts(g: Graph, cfg: AccelConfig) -> set[str]:
    """The constants the lowering keeps in the weight memory only (golden/isa.py ``wb``):
    those every reader of which is a standalone MUL (not a MATVEC's epilogue) reading it as
    ``b`` alone (its ``a`` a vector), on an accelerator with :func:`mul_wb_ok`. Each is one
    row of int16 halfwords (the staged layout) and needs no scratch words and no EMBED."""
    if not mul_wb_ok(cfg) or not g.consts:
        return set()
    epi = {i + 1 for i in _epilogues(g)}
    ok = set(g.consts)
    for idx, nd in enumerate(g.nodes):
        for name in {nd.a, nd.b} - {None}:
            if name in ok and not (nd.op == Op.MUL and idx not in epi and nd.b == name
                                   and nd.a != name and nd.a not in g.consts):
                ok.discard(name)
    return ok


def _fold_embeddings(g: Graph, cfg: AccelConfig) -> Graph:
    """Constant folding of a token's first elementwise op into its embedding table.

    An EMBED whose output ``E`` has one reader, an elementwise single-pass op of the
    registry (``OpSpec.epilogue``: ADD, MUL, SIGMOID, SILU, GELU) whose other operand, if
    any, is ``E`` or a constant, computes a function of the token id alone: its output row
    for every token is computed here with the op's own golden function (so it is the same
    integer on every element) and stored as an int16 table, which one ``EMBED WIDE`` (16-bit
    halfwords, one a cycle) reads in place of the EMBED and the op. The LM's residual
    ``R = ADD(E, E; emb_res)``: EMBED (149 cycles at L=32) + ADD (138) become one EMBED WIDE
    (165); the table takes twice the words of the byte table it replaces (65 x 32 words at
    L=32 instead of 65 x 16). Only where a weight word holds an even number of bytes (EMBED
    WIDE's condition, ``cfg.word_bits % 16 == 0``).

    Returns a new Graph (``g`` is not changed); the EMBED nodes it writes carry
    ``Flag.WIDE`` and their tables (V, d) int16 values; a byte table no EMBED reads any
    more is dropped.
    """
    if cfg.word_bits % 16:
        return g
    reads = collections.Counter()
    for nd in g.nodes:
        for name in {nd.a, nd.b} - {None}:
            vec = g.vecs.get(name)
            reads[vec.parent if vec is not None and vec.kind == "view" else name] += 1
    keep = set(g.outputs) | {v.name for v in g.kinds("state")}
    views = {v.parent for v in g.kinds("view")}
    nodes, tables = list(g.nodes), dict(g.tables)
    drop: set[int] = set()
    for i, nd in enumerate(g.nodes):
        if nd.op != Op.EMBED or nd.flags & Flag.WIDE or nd.out in keep or nd.out in views:
            continue
        if g.vecs[nd.out].kind != "temp" or reads[nd.out] != 1:
            continue
        j = next(j for j in range(i + 1, len(g.nodes))
                 if nd.out in (g.nodes[j].a, g.nodes[j].b))
        e = g.nodes[j]
        es = spec(e.op)
        if not es.epilogue or e.out in views or g.vecs[e.out].kind != "temp":
            continue
        others = {e.a, e.b} - {None, nd.out}
        if any(g.vecs[o].kind != "const" for o in others):
            continue
        tab = g.tables[nd.weight].to(torch.int64)

        def val(name):
            return tab if name == nd.out else g.consts[name].to(torch.int64)[None].expand_as(tab)
        a = val(e.a)
        b = val(e.b) if e.b is not None else a
        rows = torch.as_tensor(es.fn()(a, b, e.params)).to(torch.int64)
        if rows.shape != tab.shape or bool(((rows < -32768) | (rows > 32767)).any()):
            continue
        name = f"{nd.weight}>{e.out}"
        tables[name] = rows
        nodes[j] = dataclasses.replace(nd, out=e.out, weight=name, flags=int(Flag.WIDE))
        drop.add(i)
    if not drop:
        return g
    nodes = [nd for i, nd in enumerate(nodes) if i not in drop]
    used = {nd.weight for nd in nodes if nd.op == Op.EMBED}
    return dataclasses.replace(g, nodes=nodes,
                               tables={k: v for k, v in tables.items() if k in used})


def _layout(g: Graph, cfg: AccelConfig, resident: set[str], fuse: bool = True):
    """Weight memory, scratch layout and program for one choice of resident constants.

    Returns (builder, words, wmap, tensors, fixed, staged, fixed_end, work_end, outs, zero).
    """
    lanes = cfg.lanes
    # The weight format picks the tiling (I2: tile_lanes, T3: tile_lanes_t3); raw byte rows
    # (EMBED tables, staged constants) fill every byte of a word of either format: a word of
    # word_bits is the I2 word of word_bits / 2 lanes as far as embedding_words is concerned.
    tile = tile_lanes_t3 if cfg.weight_format == "t3" else tile_lanes
    byte_lanes = cfg.word_bits // 2
    words: list[int] = []
    wmap: dict[str, tuple[int, int]] = {}
    tensors: list[TensorEntry] = []
    for nd in g.nodes:     # matrices in order of first use
        if nd.op == Op.MATVEC and nd.weight not in wmap:
            w = g.weights[nd.weight]
            t = tile(w.trits, lanes)
            wmap[nd.weight] = (len(words), len(t))
            n, k = w.shape
            tensors.append(TensorEntry(nd.weight, n, k, len(words), len(t), w.gamma, nd.m, nd.s,
                                       nd.flags & int(Flag.RELU | Flag.RAW)))
            words += t
    table_k: dict[str, int] = {}
    wide_tables = {nd.weight for nd in g.nodes if nd.op == Op.EMBED and nd.flags & Flag.WIDE}
    for name, tab in g.tables.items():
        if name in wide_tables:        # int16 rows as little-endian byte pairs (EMBED WIDE)
            v = tab.to(torch.int64)
            tab = torch.stack([v & 0xFF, (v >> 8) & 0xFF], -1).flatten(1)
            tab = torch.where(tab >= 128, tab - 256, tab)
        rows, k = embedding_words(tab, byte_lanes)
        table_k[name] = k
        wmap[name] = (len(words), len(rows))
        words += rows

    fixed: dict[str, _Buf] = {}
    addr = 0
    for v in g.kinds("input"):
        fixed[v.name] = _Buf(v.name, v.n, addr)
        addr += v.n
    zero = None
    if g.consts:
        zero = _Buf("zero", 1, addr)
        addr += 1
    for v in g.kinds("state"):
        fixed[v.name] = _Buf(v.name, v.n, addr)
        addr += v.n
    staged: dict[str, tuple[int, int]] = {}   # const name -> (wbase of lo row, k)
    # Words of an even number of bytes: a staged constant is one row of int16 halfwords,
    # loaded by one EMBED WIDE; else two byte rows, EMBED lo, EMBED hi, ADD.
    wide = cfg.word_bits % 16 == 0
    wbc = _wb_consts(g, cfg) if fuse else set()
    wb_rows: dict[str, int] = {}              # const name -> wbase of its int16 row (wb)
    for name, vals in g.consts.items():
        if name in wbc:
            v = vals.to(torch.int64)
            pair = torch.stack([v & 0xFF, (v >> 8) & 0xFF], -1).flatten()
            rows, _ = embedding_words(torch.where(pair >= 128, pair - 256, pair)[None],
                                      byte_lanes)
            wb_rows[name] = len(words)
            wmap["wb " + name] = (len(words), len(rows))
            words += rows
        elif name in resident:
            fixed[name] = _Buf(name, vals.numel(), addr)
            addr += vals.numel()
        else:
            if wide:
                v = vals.to(torch.int64)
                pair = torch.stack([v & 0xFF, (v >> 8) & 0xFF], -1).flatten()
                rows, k = embedding_words(torch.where(pair >= 128, pair - 256, pair)[None],
                                          byte_lanes)
            else:
                lo, hi = split_bytes(vals)
                rows, k = embedding_words(torch.stack([lo, hi]), byte_lanes)
            staged[name] = (len(words), k)
            wmap["staged " + name] = (len(words), len(rows))
            words += rows
    fixed_end = addr

    b = _Builder()
    bufs: dict[str, _Buf] = dict(fixed)
    out_addr = 0
    outs: dict[str, tuple[str, int, int]] = {}

    def get(name: str):
        vec = g.vecs.get(name)
        if vec is not None and vec.kind == "view":
            if vec.parent not in bufs:
                raise GraphError(f"view {name!r} is read before any node writes {vec.parent!r}")
            return _View(bufs[vec.parent], vec.offset, vec.n, name)
        if name in bufs:
            return bufs[name]
        if name in staged:        # load a staged constant before its first use
            wb, k = staged[name]
            n = g.consts[name].numel()
            if wide:
                w = b.buf(name, n)
                b.emit(Op.EMBED, flags=int(Flag.WIDE), src=zero, dst=w, n=n, k=k, wbase=wb)
                bufs[name] = w
                return w
            lo, hi, w = b.buf(name + " lo", n), b.buf(name + " hi", n), b.buf(name, n)
            b.emit(Op.EMBED, src=zero, dst=lo, n=n, k=k, wbase=wb)
            b.emit(Op.EMBED, src=zero, dst=hi, n=n, k=k, wbase=wb + k)
            b.emit(Op.ADD, src=hi, aux=lo, dst=w, n=n, m=256, s=0, wbase=1, k=0)
            bufs[name] = w
            return w
        raise GraphError(f"vector {name!r} is read before any node writes it")

    def out_buf(name: str):
        vec = g.vecs[name]
        if vec.kind == "view":
            return _View(out_buf(vec.parent), vec.offset, vec.n, name)
        if name in bufs:          # a state vector updated in place, or a views' parent
            return bufs[name]
        v = b.buf(name, vec.n)
        bufs[name] = v
        return v

    epis = _epilogues(g) if fuse else {}
    pairs = _pairs(g, cfg) if fuse else {}
    chains = _chains(g, cfg, pairs, wb_rows) if fuse else {}
    # second node's index -> (the first one's input, kept alive by src; the first's index)
    chain_src = {}
    skip = -1

    def chain_operand(first: int):
        """The scratch vectors the chain's ops after node ``first`` read as b, loaded now
        (a staged constant's EMBED must come before the chain, not inside it)."""
        while first in chains:
            e, prev = g.nodes[chains[first][0]], g.nodes[first]
            get(e.a if e.b == prev.out else e.b)
            first = chains[first][0]
    # (vector, n, flags) of the last RMSNORM: the statistics the Norm unit holds, which a
    # RMSNORM of the same vector (n, flags) reuses (Instr.reuse) unless it was written since.
    held = None

    def root(name):
        vec = g.vecs.get(name)
        return vec.parent if vec is not None and vec.kind == "view" else name

    for idx, nd in enumerate(g.nodes):
        s = spec(nd.op)
        if held is not None and nd.out is not None and root(nd.out) == root(held[0]):
            held = None
        if idx <= skip:
            continue
        if idx in pairs:
            # A MATVEC and its epilogue pair (golden/isa.py ``pair``): the SIGMOID writes
            # sigmoid(y) at dst and sigmoid(-y) (its NEG twin's) at aux; the rows are never
            # written. src names the MATVEC's input (kept alive, as an epilogue's).
            pi, ni = pairs[idx]
            e, en = g.nodes[pi], g.nodes[ni]
            n, k = g.weights[nd.weight].shape
            x = get(nd.a)
            if pi in chains:
                chain_operand(pi)
            b.emit(Op.MATVEC, flags=nd.flags, src=x, dst=0, n=n, k=k,
                   wbase=wmap[nd.weight][0], m=nd.m, s=nd.s, epi=1)
            if pi in chains:
                # ... whose first results stream on into the ADD/MUL after the two SIGMOIDs
                # (golden/isa.py ``chain``): never written (dst 0); the twins are.
                b.emit(Op.SIGMOID, flags=e.flags, src=x, aux=out_buf(en.out), dst=0,
                       n=n, m=e.m, s=e.s, wbase=e.m2, k=e.s2, pair=1, chain=1, aux_out=True)
                chain_src[chains[pi][0]] = (x, pi, False)
            else:
                b.emit(Op.SIGMOID, flags=e.flags, src=x, aux=out_buf(en.out),
                       dst=out_buf(e.out), n=n, m=e.m, s=e.s, wbase=e.m2, k=e.s2, pair=1,
                       aux_out=True)
            skip = idx + 2
            continue
        if idx in epis:
            # A MATVEC and its epilogue (golden/isa.py ``epi``): the MATVEC's rows stream
            # into the next op as its ``a``; they are never written. The epilogue's src
            # field names the MATVEC's input (not read, but it keeps the input alive, so
            # the result is not allocated over it).
            e = g.nodes[idx + 1]
            w = g.weights[nd.weight]
            n, k = w.shape
            swap = epis[idx]
            other = e.a if swap else e.b
            es = spec(e.op)
            x = get(nd.a)
            bb = get(other) if es.operands == 2 else 0     # a unary op reads no b
            if idx + 1 in chains:
                chain_operand(idx + 1)
            if swap and es.uses_m2:   # ADD of the rows as b: a, b swapped with their pairs
                em, ess, em2, es2 = e.m2, e.s2, e.m, e.s
            else:
                em, ess, em2, es2 = e.m, e.s, e.m2, e.s2
            extra = dict(wbase=em2, k=es2) if es.uses_m2 else dict(k=e.k)
            b.emit(Op.MATVEC, flags=nd.flags, src=x, dst=0, n=n, k=k,
                   wbase=wmap[nd.weight][0], m=nd.m, s=nd.s, epi=1)
            if idx + 1 in chains:
                # ... whose results stream on into the ADD/MUL after it (golden/isa.py
                # ``chain``): never written (dst 0); the second names the MATVEC's input.
                b.emit(e.op, flags=e.flags, src=x, aux=bb, dst=0, n=n, m=em, s=ess,
                       chain=1, **extra)
                chain_src[idx + 2] = (x, idx + 1, False)
            else:
                b.emit(e.op, flags=e.flags, src=x, aux=bb, dst=out_buf(e.out), n=n, m=em,
                       s=ess, **extra)
            skip = idx + 1
            continue
        if nd.op == Op.MATVEC:
            w = g.weights[nd.weight]
            n, k = w.shape
            if nd.flags & Flag.RAW:
                b.emit(Op.MATVEC, flags=nd.flags, src=get(nd.a), dst=out_addr, n=n, k=k,
                       wbase=wmap[nd.weight][0])
                bufs[nd.out] = _Buf(nd.out, n, out_addr)
                outs.setdefault(nd.out, ("out", out_addr, n))
                out_addr += n
            else:
                b.emit(Op.MATVEC, flags=nd.flags, src=get(nd.a), dst=out_buf(nd.out), n=n,
                       k=k, wbase=wmap[nd.weight][0], m=nd.m, s=nd.s)
        elif nd.op == Op.EMBED:
            b.emit(Op.EMBED, flags=nd.flags & int(Flag.WIDE), src=get(nd.a),
                   dst=out_buf(nd.out), n=g.vecs[nd.out].n, k=table_k[nd.weight],
                   wbase=wmap[nd.weight][0])
        elif nd.op == Op.ARGMAX:
            src = bufs[nd.a]
            if nd.a not in outs or outs[nd.a][0] != "out":
                raise CompileError(f"ARGMAX reads {nd.a!r}, which is not a RAW MATVEC output "
                                   f"in the output buffer")
            b.emit(Op.ARGMAX, src=src.addr, n=src.n)
        elif nd.op == Op.SAMPLE:
            b.emit(Op.SAMPLE, src=get(nd.a), aux=get(nd.b), n=g.vecs[nd.a].n)
        elif idx in chains and idx not in chain_src:
            # The first op of a chain (golden/isa.py ``chain``): its results are never
            # written (dst 0); the ADD/MUL after it takes them as a.
            a = get(nd.a)
            bb = get(nd.b) if nd.b is not None else a
            chain_operand(idx)
            b.emit(nd.op, flags=nd.flags, src=a, aux=bb, dst=0, n=g.vecs[nd.out].n,
                   m=nd.m, s=nd.s, chain=1,
                   **(dict(wbase=nd.m2, k=nd.s2) if s.uses_m2 else dict(k=nd.k)))
            chain_src[chains[idx][0]] = (a, idx, False)
        elif idx in chain_src:
            # The second op of a chain: a is the stream, b the other operand (swapped with
            # the pairs when the graph reads the stream as b); its src field names the
            # first op's input (not read), which keeps it alive, so the result is not
            # allocated over part of it.
            prev = g.nodes[chain_src[idx][1]]
            swap = nd.b == prev.out
            other = nd.a if swap else nd.b
            em, ess, em2, es2 = (nd.m2, nd.s2, nd.m, nd.s) if swap and s.uses_m2 else \
                (nd.m, nd.s, nd.m2, nd.s2)
            extra = dict(wbase=em2, k=es2) if s.uses_m2 else dict(k=nd.k)
            third = chain_src[idx][2]       # the third of a chain of three: b via port a
            if idx in chains:
                # The middle of a chain of three: its result streams on too (dst 0).
                b.emit(nd.op, flags=nd.flags, src=chain_src[idx][0], aux=get(other),
                       dst=0, n=g.vecs[nd.out].n, m=em, s=ess, chain=1, **extra)
                chain_src[chains[idx][0]] = (chain_src[idx][0], idx, True)
            else:
                b.emit(nd.op, flags=nd.flags, src=chain_src[idx][0], aux=get(other),
                       dst=out_buf(nd.out), n=g.vecs[nd.out].n, m=em, s=ess, aux_a=third,
                       **extra)
        elif s.vector:
            a = get(nd.a)
            bb = (None if nd.op == Op.MUL and nd.b in wb_rows else
                  get(nd.b) if nd.b is not None else a)
            extra = dict(wbase=nd.m2, k=nd.s2) if s.uses_m2 else dict(k=nd.k)
            n = g.vecs[nd.out].n
            key = (nd.a, n, nd.flags)
            reuse = int(fuse and s.reuse and held == key)
            if nd.op == Op.MUL and nd.b in wb_rows:     # b from the weight memory (wb)
                b.emit(nd.op, flags=nd.flags, src=a, aux=0, dst=out_buf(nd.out), n=n,
                       m=nd.m, s=nd.s, wbase=wb_rows[nd.b], k=nd.k, wb=1)
            else:
                b.emit(nd.op, flags=nd.flags, src=a, aux=bb, dst=out_buf(nd.out),
                       n=n, m=nd.m, s=nd.s, reuse=reuse, **extra)
            if s.unit == "norm":
                held = key if s.reuse else None
        else:
            raise CompileError(f"the lowering has no rule for op {s.name}")
    for name in g.outputs:
        if name not in outs:
            buf = bufs[name]
            outs[name] = ("scratch", buf.addr, buf.n) if buf.fixed else ("scratch", None, buf.n)
            if not buf.fixed:     # keep a scratch output alive to the end of the program
                buf.last = len(b.items)
    b.emit(Op.HALT)
    if cfg.scratch_a_window < cfg.scratch_depth:
        # Port a sees only [0, scratch_a_window) (AccelConfig.scratch_a_depth): what it reads
        # low. Inputs, zero and state stay first (their addresses are the program's
        # interface); then the resident constants port a reads, the work vectors it reads
        # (allocated among themselves), the work vectors only port b reads (in the room
        # those leave, or above), and last the constants only port b reads (norm weights,
        # the multipliers of MUL's b).
        consts = [fixed[name] for name in g.consts if name in fixed]
        addr = fixed_end - sum(c.n for c in consts)
        for c in consts:
            if c.read_a:
                c.addr = addr
                addr += c.n
        fixed_end = addr
        a_end = b.allocate(fixed_end, keep=lambda v: v.read_a)
        placed = [v for v in b.temps if v.read_a and v.first is not None]
        addr = max(a_end, b.allocate(fixed_end, keep=lambda v: not v.read_a, around=placed))
        for c in consts:
            if not c.read_a:
                c.addr = addr
                addr += c.n
        work_end = addr
    else:
        work_end = b.allocate(fixed_end)
    outs = {k: (sp, bufs[k].addr if a is None else a, n) for k, (sp, a, n) in outs.items()}
    return b, words, wmap, tensors, fixed, staged, fixed_end, work_end, outs, zero


def _tee_norms(prog: Sequence[Instr]) -> list[Instr]:
    """Norm statistics gathered in the producer's epilogue (golden/isa.py ``tee``): a full
    RMSNORM (no ``reuse``, flags none or OUT8) whose input ``scratch[src : src + n]`` was last
    written, as a whole, by an ADD or MUL (standalone or a MATVEC's epilogue) becomes a
    ``reuse`` RMSNORM of that producer's tee (``tee8`` = the RMSNORM's OUT8), when no
    Norm-unit instruction and no write to those words comes between the two. The RTL then
    runs the RMSNORM's pass 0 on the producer's results as they are written, and its
    between-pass work while the program goes on; the results are unchanged."""
    prog = list(prog)

    def writes(ins):
        """Scratch words [lo, hi) the instruction writes, None for none, "?" if unknown."""
        if ins.op == Op.MATVEC:
            return None if (ins.epi or ins.flags & Flag.RAW) else (ins.dst, ins.dst + ins.n)
        if ins.op in (Op.ARGMAX, Op.HALT):
            return None
        if ins.op == Op.SAMPLE:
            return (ins.aux, ins.aux + 2)
        if ins.op == Op.EMBED:
            return (ins.dst, ins.dst + ins.n)
        try:
            sp = spec(ins.op)
        except KeyError:
            return "?"
        if ins.pair:          # two results (dst and aux): not followed
            return "?"
        if ins.chain:         # the results stream into the next instruction (isa chain)
            return None
        return (ins.dst, ins.dst + sp.out_rows(ins.n, ins.k)) if sp.vector else "?"

    for i, ins in enumerate(prog):
        if (ins.op != Op.RMSNORM or ins.reuse or ins.n < 1
                or ins.flags not in (0, int(Flag.OUT8))):
            continue
        lo, hi = ins.src, ins.src + ins.n
        for j in range(i - 1, -1, -1):
            p = prog[j]
            w = writes(p)
            if w == "?" or p.tee or (p.op in (Op.RMSNORM, Op.LAYERNORM)):
                break
            if w is None or w[1] <= lo or hi <= w[0]:
                continue
            third = j > 0 and prog[j - 1].chain and prog[j - 1].op in CHAIN_SECOND
            if p.op in (Op.ADD, Op.MUL) and p.dst == lo and p.n == ins.n and not third:
                # (no op of a chain of three tees, golden/isa.py)
                prog[j] = dataclasses.replace(p, tee=1, tee8=int(bool(ins.flags & Flag.OUT8)))
                prog[i] = dataclasses.replace(ins, reuse=1)
            break
    return prog


def prologue_ok(cfg: AccelConfig) -> bool:
    """Whether the accelerator runs a prologue RMSNORM (golden/isa.py ``pro``) fused with
    its MATVEC: it has the Norm unit and builds RMSNORM and MATVEC (hw/sequencer.py
    PRO_DEC / PRO). Elsewhere a ``pro`` program would still compute the same, but the
    lowering does not emit one and check_program refuses it (its cycles would differ)."""
    ops = cfg.op_set
    return "norm" in cfg.vector and Op.RMSNORM in ops and Op.MATVEC in ops


def _pro_norms(prog: Sequence[Instr]) -> list[Instr]:
    """Prologues (golden/isa.py ``pro``): a ``reuse`` RMSNORM with OUT8 whose next
    instruction is a MATVEC reading its result (``src`` = its ``dst``, ``k`` = its ``n``
    >= PRO_MIN_K, ``n >= 1``) runs with that MATVEC as one operation: the Norm unit's
    results stream into the lanes as tile 0's activations (and are written to ``dst`` as
    before, for tiles 1..). The results are unchanged."""
    prog = list(prog)
    for i, ins in enumerate(prog[:-1]):
        if prologue_pair(ins, prog[i + 1]):
            prog[i] = dataclasses.replace(ins, pro=1)
    return prog


def _touched(ins: Instr):
    """Scratch words ``[lo, hi)`` an instruction may read or write (a superset: each address
    field with the instruction's longest length), or None where that is not known (an op
    outside this table, REPEAT, HALT, a by-column b): :func:`_hoist_embeds` stops there."""
    op = ins.op
    if op in (Op.HALT, Op.REPEAT):
        return None
    if op == Op.ARGMAX:
        return []                             # the output buffer only
    if op == Op.MATVEC:
        rng = [(ins.src, ins.src + ins.k)]
        if not (ins.epi or ins.flags & Flag.RAW):
            rng.append((ins.dst, ins.dst + ins.n))
        return rng
    if op == Op.EMBED:
        return [(ins.src, ins.src + 1), (ins.dst, ins.dst + ins.n)]
    if op == Op.SAMPLE:
        return [(ins.src, ins.src + ins.n), (ins.aux, ins.aux + 2)]
    try:
        s = spec(op)
    except KeyError:
        return None
    if not s.vector or s.b_order == "col":
        return None
    n = max(ins.n, s.in_len(ins.n, ins.k), s.out_rows(ins.n, ins.k))
    return [(a, a + n) for a in (ins.src, ins.aux, ins.dst)]


def _hoist_embeds(prog: Sequence[Instr]) -> list[Instr]:
    """Staged loads into the Norm unit's idle time: an EMBED moves up to right after the
    nearest earlier tee (golden/isa.py ``tee``) whose next instruction is the tee's
    ``reuse`` RMSNORM, when no instruction it passes may touch (read or write) its ``dst``
    words or its ``src`` word (:func:`_touched`), and it is not in such a gap already.
    That RMSNORM's first beat waits for the Norm unit's between-pass work after the tee
    (golden/cycles.py ``norm_work_cycles``, about 60 cycles at n = 128), which an EMBED in
    between (133 cycles for 128 bytes at L = 32) hides; the EMBED costs the same wherever
    it runs. Only the order changes, and nothing between the two places reads or writes
    the words the EMBED reads or writes, so every result is the same. The LM: at its
    shipped scratch depths every staged weight's EMBED lies in a wait already; at 3,712
    words (L = 32 I2, L = 40 T3) one more is staged and moves (62 cycles a token,
    modelled)."""
    prog = list(prog)

    def gap(p):
        return bool(prog[p].tee) and p + 1 < len(prog) and prog[p + 1].op == Op.RMSNORM \
            and bool(prog[p + 1].reuse)

    for e in range(1, len(prog)):
        ins = prog[e]
        if ins.op != Op.EMBED or not ins.n or gap(e - 1):
            continue
        lo, hi = ins.dst, ins.dst + ins.n
        for p in range(e - 1, -1, -1):
            if gap(p):
                if p + 1 < e:
                    prog[p + 1:e + 1] = [ins] + prog[p + 1:e]
                break
            t = _touched(prog[p])       # passed if the EMBED goes above it
            if t is None or any(a < hi and lo < b or a <= ins.src < b for a, b in t):
                break
    return prog


def check_program(prog: Sequence[Instr], cfg: AccelConfig) -> None:
    """Check a program against a configuration: its length, the operations and vector units
    it needs, the vector lengths its units are sized for, and every ISA field.

    Raises
    ------
    CompileError, one sentence with the numbers.
    """
    if len(prog) > cfg.prog_depth:
        raise CompileError(f"the program has {len(prog)} instructions, more than the "
                           f"{cfg.prog_depth} the program memory holds (prog_depth)")
    from ternac.golden.isa import expand_program
    try:        # the REPEAT rules (golden/isa.py): counts, bodies, nesting, rsel
        stream = expand_program(prog)
    except ValueError as exc:
        raise CompileError(str(exc)) from None
    if not stream or stream[-1][1].op != Op.HALT:
        # The interpreter refuses it; the sequencer would run on past the last word.
        raise CompileError(f"the program of {len(prog)} instructions never reaches a HALT")
    built = cfg.op_set
    for idx, ins in enumerate(prog):
        s = spec(ins.op)
        if ins.op not in built:
            raise CompileError(f"instruction {idx} ({s.name}) is an operation the accelerator "
                               f"is built without (AccelConfig.ops: "
                               f"{', '.join(cfg.ops)}), so it would halt with an error")
        if s.vector and s.unit not in cfg.vector:
            raise CompileError(f"instruction {idx} ({s.name}) needs the {s.unit!r} vector "
                               f"unit, but the configuration builds only "
                               f"{', '.join(map(repr, cfg.vector)) or 'none'} (AccelConfig.vector)")
        if s.sums and s.in_len(ins.n, ins.k) > cfg.max_vector:
            raise CompileError(f"instruction {idx} ({s.name}) runs over "
                               f"{s.in_len(ins.n, ins.k)} elements, "
                               f"more than the {cfg.max_vector} the vector units are sized for "
                               f"(max_vector)")
        if (ins.tee or ins.tee8) and (ins.op not in (Op.ADD, Op.MUL) or not ins.tee
                                      or "norm" not in cfg.vector):
            raise CompileError(f"instruction {idx} ({s.name}) sets tee/tee8, which only an ADD "
                               f"or MUL (tee) on an accelerator with the 'norm' unit may "
                               f"(golden/isa.py)")
        if ins.pro:
            nxt = prog[idx + 1] if idx + 1 < len(prog) else None
            if not prologue_ok(cfg):
                raise CompileError(f"instruction {idx} ({s.name}) sets pro, but the "
                                   f"accelerator has no prologue (it needs the 'norm' unit "
                                   f"and the RMSNORM and MATVEC operations)")
            if not prologue_pair(ins, nxt):
                raise CompileError(f"instruction {idx} ({s.name}) sets pro, which only a "
                                   f"reuse RMSNORM with OUT8 followed by a MATVEC of src = "
                                   f"its dst and k = its n >= {PRO_MIN_K} may (golden/isa.py)")
        if ins.wb:
            prev = prog[idx - 1] if idx else None
            if ins.op != Op.MUL or not mul_wb_ok(cfg) or ins.aux != 0 or (
                    prev is not None and prev.op == Op.MATVEC and prev.epi):
                raise CompileError(f"instruction {idx} ({s.name}) sets wb, which only a MUL "
                                   f"with aux = 0 that is not a MATVEC's epilogue may, on an "
                                   f"accelerator building MUL whose weight words hold whole "
                                   f"halfwords (golden/isa.py)")
        if ins.pair:
            prev = prog[idx - 1] if idx else None
            if (ins.op != Op.SIGMOID or ins.flags & Flag.NEG or prev is None
                    or prev.op != Op.MATVEC or not prev.epi
                    or (prev.k < 2 * cfg.lanes + 4 and prev.n > cfg.lanes)):
                raise CompileError(f"instruction {idx} ({s.name}) sets pair, which only a "
                                   f"SIGMOID without NEG may, as the epilogue of a MATVEC with "
                                   f"k >= 2 * lanes + 4 = {2 * cfg.lanes + 4} or n <= lanes "
                                   f"(golden/isa.py)")
            if ins.chain and prev.n > cfg.lanes:
                raise CompileError(f"instruction {idx} ({s.name}) is a pair with chain, which "
                                   f"only the epilogue of a MATVEC of one tile (n <= lanes = "
                                   f"{cfg.lanes}) may be (golden/isa.py)")
        if ins.reuse and not s.reuse:
            raise CompileError(f"instruction {idx} ({s.name}) sets reuse, which only "
                               f"{', '.join(o.name for o, sp in _registry().items() if sp.reuse)} "
                               f"may (golden/isa.py)")
        if ins.epi:
            nxt = prog[idx + 1] if idx + 1 < len(prog) else None
            if (ins.op != Op.MATVEC or ins.flags & Flag.RAW or nxt is None
                    or not spec(nxt.op).epilogue or nxt.n != ins.n):
                raise CompileError(f"instruction {idx} ({s.name}) has an epilogue, but only a "
                                   f"requantized MATVEC followed by an elementwise op of the "
                                   f"same n may (golden/isa.py)")
        if ins.chain:
            nxt = prog[idx + 1] if idx + 1 < len(prog) else None
            if not chain_ok(cfg):
                raise CompileError(f"instruction {idx} ({s.name}) sets chain, but the "
                                   f"accelerator is built without op_chain (AccelConfig."
                                   f"op_chain, with the 'activation' and 'eltwise' units)")
            why = chain_refusal(ins, nxt)
            if not why and ins.op in CHAIN_SECOND:      # the middle of a chain of three
                why = chain_three_refusal(prog[idx - 1] if idx else None,
                                          prog[idx - 2] if idx > 1 else None, cfg.lanes)
            if why:
                raise CompileError(f"instruction {idx} ({s.name}) {why} (golden/isa.py)")
        for name in ("src", "dst", "aux", "n", "k", "wbase", "m", "s"):
            _field(int(getattr(ins, name)), name, f"instruction {idx} ({s.name})")
        encode(ins)
        if (ins.op == Op.MATVEC and ins.flags & Flag.RAW and ins.k >= 1
                and acc_width(ins.k) > cfg.out_bits):
            raise CompileError(f"instruction {idx} (MATVEC RAW) writes accumulators of fan-in "
                               f"{ins.k} ({acc_width(ins.k)} bits), wider than the "
                               f"{cfg.out_bits}-bit words of the output buffer (out_bits)")
    why = cfg.prog_refusal([encode(ins) for ins in prog])   # the bits the build stores
    if why:
        raise CompileError(why)
    window = cfg.scratch_a_window
    prev = prev2 = prev3 = None
    seq = _SequenceRules()
    for j, (pc, ins) in enumerate(stream):  # in execution order (REPEAT unrolled: strides)
        if prev is not None and prev.chain and prev.op in CHAIN_SECOND:
            _check_chain_three_addresses(pc, ins, prev, prev2, prev3)
        if prev is not None and prev.chain:
            if prev.op not in CHAIN_SECOND:
                _check_chain_addresses(pc, ins, prev, prev2)
            # (the rest as an epilogue's: a stream as a, b disjoint from the result or
            # the same words)
            _check_extents(pc, ins, dataclasses.replace(prev, op=Op.MATVEC, epi=1,
                                                        src=0, k=0), cfg)
        else:
            _check_extents(pc, ins, prev, cfg)
        _check_addresses(pc, ins, prev, cfg)
        seq.check(pc, ins, stream[j + 1][1] if j + 1 < len(stream) else None)
        for lo, hi in port_a_reads(ins, prev):
            if hi > window:
                raise CompileError(f"instruction {pc} ({spec(ins.op).name}) reads scratch "
                                   f"[{lo}, {hi}) through port a, outside its window [0, "
                                   f"{window}) (scratch_a_depth)")
        prev3, prev2, prev = prev2, prev, ins
    if cfg.mv_chain:
        _check_chain(prog, cfg)


def _check_chain(prog: Sequence[Instr], cfg: AccelConfig) -> None:
    """The rules of a MATVEC chained after a MATVEC (AccelConfig.mv_chain; hw/sequencer.py
    MV_SWAP, golden/cycles.py chained_matvec_cycles): the RTL starts the second one's reads
    while the first one's last rows are still being written, so the second must read none
    of them; its count is modelled (and checked on the RTL) for I2 weights, a first MATVEC
    of ``k >= lanes`` and a second without an epilogue pair, and the chain follows the
    program memory's order, so no REPEAT."""
    if any(i.op == Op.REPEAT for i in prog):
        raise CompileError("a program with REPEAT cannot run on an accelerator with mv_chain "
                           "(AccelConfig.mv_chain)")
    if cfg.weight_format != "i2":
        raise CompileError(f"mv_chain (AccelConfig.mv_chain) is modelled for I2 weights only, "
                           f"not {cfg.weight_format}")
    prev = None      # (index, MATVEC, its epilogue or None)
    i = 0
    while i < len(prog):
        ins = prog[i]
        epi = prog[i + 1] if ins.op == Op.MATVEC and ins.epi and i + 1 < len(prog) else None
        if ins.op == Op.MATVEC and prev is not None and ins.n >= 1 and ins.k >= 1:
            pi, p, pe = prev
            what = f"instruction {i} (MATVEC) is chained after the MATVEC {pi} (mv_chain)"
            if p.k < cfg.lanes:
                raise CompileError(f"{what}, whose k = {p.k} is below lanes = {cfg.lanes}")
            if epi is not None and epi.pair:
                raise CompileError(f"{what} and has an epilogue pair")
            if pe is not None:
                wr = [(pe.dst, pe.dst + pe.n)] + ([(pe.aux, pe.aux + pe.n)] if pe.pair else [])
            else:
                wr = [] if p.flags & Flag.RAW else [(p.dst, p.dst + p.n)]
            for lo, hi in wr:
                if ins.src < hi and lo < ins.src + ins.k:
                    raise CompileError(f"{what} and reads scratch [{ins.src}, "
                                       f"{ins.src + ins.k}), which that one writes [{lo}, {hi})")
        prev = (i, ins, epi) if ins.op == Op.MATVEC else None
        i += 2 if epi is not None else 1


class _SequenceRules:
    """The interpreter's rules on the order of instructions (golden/interpreter.py
    run_program), over the unrolled stream: a tee's RMSNORM before any other Norm-unit op,
    the next tee or the HALT; a reuse RMSNORM only after statistics exist (an RMSNORM or a
    tee; a LAYERNORM leaves none); a prologue RMSNORM followed by its MATVEC in every
    iteration, strides applied (golden.isa.prologue_pair). That the reused statistics are
    of the same values is data the interpreter compares and no static check can."""

    def __init__(self):
        self.tee_pc = None      # a tee whose RMSNORM has not run yet
        self.stats = False      # an RMSNORM's or a tee's statistics exist

    def check(self, pc: int, ins: Instr, nxt: Instr | None) -> None:
        name = f"instruction {pc} ({spec(ins.op).name})"
        if ins.op == Op.HALT and self.tee_pc is not None:
            raise CompileError(f"the program halts at {pc} with the tee of instruction "
                               f"{self.tee_pc} not followed by its RMSNORM")
        s = spec(ins.op) if ins.op not in (Op.HALT, Op.REPEAT) else None
        if s is not None and s.vector and s.unit == "norm":
            if self.tee_pc is not None and not (ins.op == Op.RMSNORM and ins.reuse):
                raise CompileError(f"{name} uses the Norm unit after the tee of instruction "
                                   f"{self.tee_pc}, but is not an RMSNORM reusing it")
            if ins.reuse and not self.stats:
                raise CompileError(f"{name} reuses statistics no RMSNORM or tee before it "
                                   f"gathered (golden/isa.py reuse)")
            self.tee_pc = None
            self.stats = ins.op == Op.RMSNORM
        if ins.tee:
            if self.tee_pc is not None:
                raise CompileError(f"{name} tees while the tee of instruction {self.tee_pc} "
                                   f"still waits for its RMSNORM")
            self.tee_pc, self.stats = pc, True
        if ins.pro and not prologue_pair(ins, nxt):
            raise CompileError(f"{name} sets pro, but as executed (REPEAT strides applied) "
                               f"it is not a reuse RMSNORM with OUT8 followed by a MATVEC of "
                               f"src = its dst and k = its n >= {PRO_MIN_K} (golden/isa.py)")


def _check_extents(pc: int, ins: Instr, prev: Instr | None, cfg: AccelConfig) -> None:
    """The lengths and memory ranges of an instruction as executed, the rules the
    interpreter (golden/interpreter.py ``_matvec``, ``_vector``, ``_embed``, ``_sample``,
    ARGMAX) applies when it runs it: at least one element, and every word it reads or
    writes inside its memory (scratch ``scratch_depth``, out ``out_depth``, weights
    ``weight_depth``); the RTL has no such check, so an address past the end would wrap.
    The rows an EMBED reads depend on the token (run time) and are not checked here.
    ``prev`` is the instruction executed before (a MATVEC's epilogue reads no ``src``).
    Raises CompileError, one sentence."""
    op = ins.op
    if op in (Op.HALT, Op.REPEAT):
        return
    s = spec(op)
    name = f"instruction {pc} ({s.name})"
    sd, od = cfg.scratch_depth, cfg.out_depth

    def span(what: str, base: int, length: int, depth: int, mem: str, field: str) -> None:
        if base + length > depth:
            raise CompileError(f"{name} {what} {mem} words [{base}, {base + length}) ({field}), "
                               f"past the end of the {depth}-word {mem} memory")

    defined = {Op.MATVEC: Flag.RELU | Flag.RAW | Flag.WIDE, Op.EMBED: Flag.WIDE}.get(op)
    if defined is not None and ins.flags & ~int(defined):
        raise CompileError(f"{name} sets undefined flag bits {ins.flags & ~int(defined):#x} "
                           f"(golden/isa.py Flag)")
    if op == Op.MATVEC:
        if ins.n < 1 or ins.k < 1:
            raise CompileError(f"{name} is a MATVEC of {ins.n} x {ins.k}; both must be >= 1")
        if ins.flags & Flag.RAW and ins.flags & Flag.RELU:
            raise CompileError(f"{name} sets both RAW and RELU, which the ISA does not define")
        tiles = -(-ins.n // cfg.lanes)
        span("reads", ins.wbase, tiles * ins.k, cfg.weight_depth, "weight", "wbase")
        span("reads", ins.src, ins.k, sd, "scratch", "src")
        if ins.flags & Flag.RAW:
            span("writes", ins.dst, ins.n, od, "out", "dst")
        elif not ins.epi:
            span("writes", ins.dst, ins.n, sd, "scratch", "dst")
        if not ins.flags & Flag.RAW and not ins.epi and (ins.dst < ins.src + ins.k
                                                         and ins.src < ins.dst + ins.n):
            # The engine writes a tile's results while later tiles still read the input.
            raise CompileError(f"{name} writes scratch words [{ins.dst}, {ins.dst + ins.n}) "
                               f"over its own input [{ins.src}, {ins.src + ins.k}), which "
                               f"the ISA does not define")
    elif op == Op.ARGMAX:
        if ins.n < 1:
            raise CompileError(f"{name} is an ARGMAX over 0 elements")
        span("reads", ins.src, ins.n, od, "out", "src")
    elif op == Op.EMBED:
        if ins.n < 1:
            raise CompileError(f"{name} embeds 0 elements")
        size = 2 if ins.flags & Flag.WIDE else 1
        if size == 2 and (cfg.word_bits // 8) % 2:
            raise CompileError(f"{name} embeds 16-bit halfwords (WIDE) from weight words of "
                               f"{cfg.word_bits // 8} bytes, which is odd")
        if ins.k * (cfg.word_bits // 8) < ins.n * size:
            raise CompileError(f"{name} embeds {ins.n} {'halfwords' if size == 2 else 'bytes'} "
                               f"from rows of {ins.k} words ({ins.k * (cfg.word_bits // 8)} "
                               f"bytes)")
        span("reads", ins.src, 1, sd, "scratch", "src")
        span("writes", ins.dst, ins.n, sd, "scratch", "dst")
        span("reads", ins.wbase, ins.k, cfg.weight_depth, "weight", "wbase, token 0's row")
    elif op == Op.SAMPLE:
        if ins.n < 1:
            raise CompileError(f"{name} samples from 0 elements")
        span("reads", ins.src, ins.n, sd, "scratch", "src")
        span("reads and writes", ins.aux, 2, sd, "scratch", "aux")
    elif s.vector:
        la, lb, rows = s.in_len(ins.n, ins.k), s.b_len(ins.n, ins.k), s.out_rows(ins.n, ins.k)
        if ins.n < 1 or la < 1:
            raise CompileError(f"{name} is a vector op over 0 elements")
        if not (prev is not None and prev.op == Op.MATVEC and prev.epi):
            span("reads", ins.src, la, sd, "scratch", "src")
        if not ins.wb:
            span("reads", ins.aux, lb, sd, "scratch", "aux")
        if ins.chain:       # (its results stream on: dst is not written)
            return
        span("writes", ins.dst, rows, sd, "scratch", "dst")
        epilogue = prev is not None and prev.op == Op.MATVEC and prev.epi
        if epilogue and ins.dst < prev.src + prev.k and prev.src < ins.dst + rows:
            # The epilogue writes a tile's results while later tiles still read the input.
            raise CompileError(f"{name} is an epilogue writing scratch words [{ins.dst}, "
                               f"{ins.dst + rows}) over its MATVEC's input [{prev.src}, "
                               f"{prev.src + prev.k}), which the ISA does not define")
        spans = [("b", ins.aux, lb)] + ([] if epilogue else [("a", ins.src, la)])
        for what, base, ln in spans:
            # The unit reads its operands while earlier results are written back (an
            # op whose lengths differ), or, in an epilogue, b as each row arrives.
            if (not la == lb == rows or (epilogue and what == "b" and s.operands == 2
                                         and ins.dst != ins.aux)) and (
                    ins.dst < base + ln and base < ins.dst + rows):
                raise CompileError(f"{name} writes scratch words [{ins.dst}, "
                                   f"{ins.dst + rows}) over its operand {what} [{base}, "
                                   f"{base + ln}), which the ISA does not define")


def _check_chain_addresses(pc: int, ins: Instr, first: Instr, before: Instr | None) -> None:
    """The address rule of a chain's second op ``ins`` (golden/isa.py ``chain``; ``first``
    the op streaming into it, ``before`` the instruction executed before that one): its
    result must not overlap the first op's input (a standalone one's ``a``, which the
    fetcher still reads while results are written) unless it is the same words, nor an
    epilogue's MATVEC's input; after a chained pair, neither its result nor its ``b`` may
    overlap the pair's second results. Raises CompileError, one sentence."""
    lo, hi = ins.dst, ins.dst + ins.n
    if first.pair:
        # A chained pair writes its second results (first.aux) while this op runs (a
        # middle's result is not written).
        for what, base in ([] if ins.chain else [("writing", ins.dst)]) + [
                ("reading b at", ins.aux)]:
            if base < first.aux + first.n and first.aux < base + ins.n:
                raise CompileError(f"instruction {pc} ({spec(ins.op).name}) ends a chain "
                                   f"{what} scratch words [{base}, {base + ins.n}) over the "
                                   f"pair's second results [{first.aux}, "
                                   f"{first.aux + first.n}), written meanwhile, which the ISA "
                                   f"does not define")
    if ins.chain:
        return          # the middle of a chain of three: its result is not written
    if before is not None and before.op == Op.MATVEC and before.epi:
        if lo < before.src + before.k and before.src < hi:
            raise CompileError(f"instruction {pc} ({spec(ins.op).name}) ends a chain writing "
                               f"scratch words [{lo}, {hi}) over its MATVEC's input "
                               f"[{before.src}, {before.src + before.k}), which the ISA does "
                               f"not define")
    elif lo != first.src and lo < first.src + first.n and first.src < hi:
        raise CompileError(f"instruction {pc} ({spec(ins.op).name}) ends a chain writing "
                           f"scratch words [{lo}, {hi}) over part of the input [{first.src}, "
                           f"{first.src + first.n}) of the op chained into it, which the ISA "
                           f"does not define")


def _check_chain_three_addresses(pc: int, third: Instr, middle: Instr, first: Instr,
                                 mv: Instr) -> None:
    """The address rule of the third op of a chain of three (golden/isa.py
    ``chain_three_overlap``; ``middle``, ``first`` and the MATVEC ``mv`` before it, as
    executed). Raises CompileError, one sentence."""
    why = chain_three_overlap(mv, first, middle, third)
    if why:
        raise CompileError(f"instruction {pc} ({spec(third.op).name}) {why}")


def _check_addresses(pc: int, ins: Instr, prev: Instr | None, cfg: AccelConfig) -> None:
    """The rules on an instruction's addresses, for it as executed (``ins`` with a REPEAT's
    strides applied; ``prev`` the instruction executed before it): a wb MUL's aux and weight
    words, a pair's second result, a norm's weight against its result. check_program runs
    them over the unrolled stream, so an iteration a stride moves is checked as the
    interpreter runs it. Raises CompileError, one sentence."""
    s = spec(ins.op)
    if ins.wb:
        if ins.aux != 0:
            raise CompileError(f"instruction {pc} (MUL wb) runs with aux = {ins.aux} (a REPEAT "
                               f"stride moves it); a wb MUL's aux must be 0 (golden/isa.py)")
        words = -(-ins.n // (cfg.word_bits // 16))
        if ins.wbase + words > cfg.weight_depth:
            raise CompileError(f"instruction {pc} (MUL wb) reads weight words "
                               f"[{ins.wbase}, {ins.wbase + words}), past the "
                               f"{cfg.weight_depth} the weight memory holds (weight_depth)")
    if ins.pair and prev is not None:
        # (a chained pair's first results stream on, unwritten)
        for lo, hi in ([] if ins.chain else [(ins.dst, ins.dst + ins.n)]) + [
                (prev.src, prev.src + prev.k)]:
            if ins.aux < hi and lo < ins.aux + ins.n:
                raise CompileError(f"instruction {pc} (SIGMOID pair) writes its second "
                                   f"result [{ins.aux}, {ins.aux + ins.n}) over [{lo}, "
                                   f"{hi}), its first result or its MATVEC's input "
                                   f"(golden/isa.py)")
    if (s.vector and s.unit == "norm" and ins.n >= 1 and ins.dst != ins.aux
            and ins.dst < ins.aux + s.b_len(ins.n, ins.k) and ins.aux < ins.dst + ins.n):
        # The sequencer reads a norm's weight when the unit's w * y uses it, some cycles
        # after the element (24e8e2e): a result written meanwhile would be read as a
        # weight, so the weight must be apart from the result or the same words.
        raise CompileError(f"instruction {pc} ({s.name}) writes [{ins.dst}, "
                           f"{ins.dst + ins.n}) over part of its weight at aux = "
                           f"{ins.aux}: the weight must be disjoint from the result or "
                           f"the same words (golden/isa.py)")


def port_a_reads(ins: Instr, prev: Instr | None = None) -> list[tuple[int, int]]:
    """The scratch words ``[lo, hi)`` an instruction reads through the scratchpad's port a
    (the operand fetcher's ``a``, hw/sequencer.py; AccelConfig.scratch_a_depth): a vector
    op's ``src`` operand (``in_len`` words; not an epilogue's, whose ``a`` is the MATVEC's
    rows: ``prev`` is the instruction executed before), MATVEC's activations (``k`` words
    at ``src``), EMBED's index (``src``), SAMPLE's probabilities (``n`` at ``src``) and its
    first LFSR word (``aux``), and the ``b`` (``aux``) of the third op of a chain of three.
    Port b reads the rest (``aux`` operands, the epilogue's ``b``, RMSNORM's weight,
    SAMPLE's ``aux + 1``)."""
    op = ins.op
    if op == Op.MATVEC:
        return [(ins.src, ins.src + ins.k)] if ins.k and ins.n else []
    if op == Op.EMBED:
        return [(ins.src, ins.src + 1)]
    if op == Op.SAMPLE:
        return [(ins.aux, ins.aux + 1)] + ([(ins.src, ins.src + ins.n)] if ins.n else [])
    try:
        s = spec(op)
    except KeyError:
        return []
    if prev is not None and prev.chain and prev.op in CHAIN_SECOND and s.vector:
        # The third of a chain of three (golden/isa.py): a is a stream, b comes through
        # port a.
        return [(ins.aux, ins.aux + ins.n)] if ins.n > 0 else []
    if not s.vector or (prev is not None and ((prev.op == Op.MATVEC and prev.epi)
                                              or prev.chain)):
        return []       # (an epilogue's or a chain's second op's a is a stream)
    n = s.in_len(ins.n, ins.k)
    return [(ins.src, ins.src + n)] if n > 0 and ins.n > 0 else []


def lower(g: Graph, cfg: AccelConfig, *, state_init: dict | None = None,
          seed: int | None = None, temperature: float | None = None,
          fuse: bool = True, repeat: bool = True) -> Lowered:
    """Lower a model graph for one accelerator configuration.

    Parameters
    ----------
    g : Graph
    cfg : AccelConfig
    state_init : {state name: list of int16} written with the constants (default zeros;
        e.g. a sampler's LFSR words)
    seed, temperature : recorded in the result (a sampling program)
    fuse : run each requantized MATVEC whose one reader is the next node, an epilogue op
        of the registry, as that MATVEC's epilogue (golden/isa.py ``epi``), and fold an
        EMBED's one elementwise reader into an int16 table read by EMBED WIDE
        (:func:`_fold_embeddings`); also run a MATVEC whose two readers are a SIGMOID
        and its NEG twin with an epilogue pair (:func:`_pairs`, golden/isa.py ``pair``),
        and keep the constants only MULs read in the weight memory (:func:`_wb_consts`,
        ``wb``); default True
    repeat : compress the program with REPEAT loops (:func:`compress_program`; the
        program then unrolls to the straight-line one); default True

    Returns
    -------
    Lowered

    Raises
    ------
    CompileError, one sentence with the numbers, if: a fan-in exceeds ``cfg.max_fan_in``; a
    requantization (m, s) is out of range; a RAW output exceeds ``cfg.out_depth``; a
    SHIFTMAX output declares fewer bits than its row length needs
    (``golden.widths.shiftmax_min_out_bits``: a constant row would round to zeros); the
    program needs a vector unit ``cfg.vector`` lacks, or a summing op over more than
    ``cfg.max_vector``; the weights exceed ``cfg.weight_depth`` words; the scratch map
    exceeds ``cfg.scratch_depth`` (or the 4096 words 12-bit addresses name) even with every
    constant staged; the program exceeds ``cfg.prog_depth``; a value does not fit its field.
    """
    for nd in g.nodes:
        if nd.op == Op.MATVEC:
            n, k = g.weights[nd.weight].shape
            if k > cfg.max_fan_in:
                raise CompileError(f"{nd.weight} has fan-in {k}, more than the {cfg.max_fan_in} "
                                   f"the accelerator's accumulators are sized for (max_fan_in)")
            if not nd.flags & Flag.RAW and not (0 <= nd.m < (1 << M_BITS) and 0 <= nd.s <= S_MAX):
                raise CompileError(f"{nd.weight} has requantization m={nd.m}, s={nd.s}, outside "
                                   f"m < 2**{M_BITS}, s <= {S_MAX}")
            if nd.flags & Flag.RAW and n > cfg.out_depth:
                raise CompileError(f"{nd.weight} writes {n} raw outputs, more than the "
                                   f"{cfg.out_depth}-word output buffer holds (out_depth)")
        elif nd.op == Op.SHIFTMAX:
            vec = g.vecs[nd.out]
            need = shiftmax_min_out_bits(vec.n)
            if vec.bits < need:
                raise CompileError(
                    f"SHIFTMAX output {nd.out!r} declares {vec.bits}-bit probabilities over "
                    f"rows of {vec.n}, where a constant row rounds to all zeros (1/{vec.n} is "
                    f"below half an LSB); rows of {vec.n} need at least {need} bits (the ISA's "
                    f"SHIFTMAX writes {SHIFTMAX_OUT_BITS})")
    graph = g
    if fuse:      # a token's first elementwise op folded into its embedding table
        g = _fold_embeddings(g, cfg)
    depth = min(cfg.scratch_depth, ADDR_LIMIT)
    wbc = _wb_consts(g, cfg) if fuse else set()    # in the weight memory only (wb)
    sizes = {name: v.numel() for name, v in g.consts.items() if name not in wbc}
    built = _layout(g, cfg, set(sizes), fuse)
    if built[7] > depth:
        staged_all = _layout(g, cfg, set(), fuse)
        fixed0 = staged_all[6]
        if staged_all[7] > depth:
            n_state = sum(v.n for v in g.kinds("state"))
            n_in = sum(v.n for v in g.kinds("input"))
            raise CompileError(
                f"the scratch map needs {staged_all[7]} words ({n_in} of inputs, {n_state} of "
                f"state, {staged_all[7] - fixed0} of work vectors"
                + (" with every constant staged from the weight memory" if sizes else "")
                + f"), but the scratchpad holds {depth}"
                + (" (scratch_depth)" if depth == cfg.scratch_depth else
                   f" (the ISA's 12-bit addresses; scratch_depth is {cfg.scratch_depth})"))
        budget = depth - staged_all[7]
        resident: set[str] = set()
        for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
            if sizes[name] <= budget:
                resident.add(name)
                budget -= sizes[name]
        built = _layout(g, cfg, resident, fuse)
        while built[7] > depth:  # fragmentation: give one more vector back (rare)
            resident.discard(min(resident, key=lambda n: (sizes[n], n)))
            built = _layout(g, cfg, resident, fuse)
        # The budget assumed every constant staged (each load needs two byte rows of work
        # space); with fewer staged the work area shrinks, so fill what is left, largest
        # first, as long as the layout still fits.
        for name in sorted(set(sizes) - resident, key=lambda n: (-sizes[n], n)):
            trial = _layout(g, cfg, resident | {name}, fuse)
            if trial[7] <= depth:
                resident.add(name)
                built = trial
    b, words, wmap, tensors, fixed, staged, fixed_end, work_end, outs, zero = built

    if len(words) > cfg.weight_depth:
        n_trit = sum(e.count for e in tensors)
        n_tab = sum(wmap[t][1] for t in g.tables)
        raise CompileError(
            f"the model needs {len(words)} weight words of {cfg.word_bits} bits at "
            f"{cfg.lanes} lanes ({n_trit} of trits, {n_tab} of tables, "
            f"{len(words) - n_trit - n_tab} of staged constants), but the weight memory holds "
            f"{cfg.weight_depth} (weight_depth)")
    prog = b.program()
    if fuse:      # RMSNORM statistics teed from their producer (golden/isa.py tee)
        prog = _tee_norms(prog)
        if prologue_ok(cfg):    # RMSNORM results straight into the lanes (golden/isa.py pro)
            prog = _pro_norms(prog)
        prog = _hoist_embeds(prog)   # staged loads into a tee's wait
    if repeat and Op.REPEAT in cfg.op_set:   # strided runs as REPEAT loops (golden/isa.py)
        prog = compress_program(prog)
    check_program(prog, cfg)

    sconst: dict[int, list[int]] = {}
    smap: dict[str, tuple[int, int]] = {}
    inputs = {v.name: (fixed[v.name].addr, v.n) for v in g.kinds("input")}
    states = {v.name: (fixed[v.name].addr, v.n) for v in g.kinds("state")}
    for name, (a, n) in inputs.items():
        smap[name] = (a, n)
    if zero is not None:
        smap["zero"] = (zero.addr, 1)
        sconst[zero.addr] = [0]
    init = state_init or {}
    for name, (a, n) in states.items():
        smap[name] = (a, n)
        vals = [int(v) for v in init.get(name, [0] * n)]
        if len(vals) != n:
            raise CompileError(f"the initial value of state {name!r} has {len(vals)} words, not {n}")
        sconst[a] = vals
    for name in g.consts:
        if name in fixed:
            smap["const " + name] = (fixed[name].addr, fixed[name].n)
            sconst[fixed[name].addr] = [int(v) for v in g.consts[name]]
    for name, (sp, a, n) in outs.items():
        if sp == "scratch":
            smap[name] = (a, n)
    for v in b.temps:
        if v.name == "probs" and v.addr is not None:
            smap["probs"] = (v.addr, v.n)
    smap["work"] = (fixed_end, work_end - fixed_end)
    n_mat = sum(e.count for e in tensors)
    image = WeightImage(lanes=cfg.lanes, tensors=tensors, words=words[:n_mat],
                        format=Format.T3 if cfg.weight_format == "t3" else Format.I2_TILED)
    return Lowered(program=prog, weight_words=words, image=image, scratch_constants=sconst,
                   inputs=inputs, states=states, outputs=outs, scratch_map=smap,
                   weight_map=wmap, staged=sorted(staged), scratch_words=work_end,
                   trit_macs=g.trit_macs(), graph=graph, cfg=cfg, seed=seed,
                   temperature=temperature)


# ---------------------------------------------------------------------------------------
# Front end: the digits MLP
# ---------------------------------------------------------------------------------------

def useful_macs(shapes: Sequence[tuple[int, int]]) -> int:
    """Useful trit-MACs of one inference: ``sum N * K`` over the layers."""
    return sum(n * k for n, k in shapes)


def compile_mlp(layers: Sequence, cfg: AccelConfig, input_len: int | None = None, *,
                names: Sequence[str] | None = None, gammas: Sequence[float] | None = None
                ) -> Lowered:
    """Compile an MLP of ternary BitLinear layers: :func:`ternac.golden.mlp.mlp_graph`, lowered.

    Parameters
    ----------
    layers : sequence of ``golden.mlp.IntBitLinear`` (trits (N, K) int8, m, s, relu, raw);
        every layer but the last requantizes, the last is ``raw``
    cfg : AccelConfig
    input_len : length of the input vector; must equal the first layer's fan-in
    names, gammas : optional per-layer tensor names and absmean scales for the image table

    Raises
    ------
    CompileError, one sentence with the numbers (shapes that do not chain, a raw layer not
    last or a last layer that is not raw, and everything :func:`lower` checks).
    """
    from ternac.golden.mlp import mlp_graph

    layers = list(layers)
    if not layers:
        raise CompileError("the model has no layers, so there is nothing to compile")
    shapes = []
    for i, layer in enumerate(layers):
        t = layer.trits
        if getattr(t, "dim", lambda: 0)() != 2:
            raise CompileError(f"layer {i} weights must be a 2-D (N, K) tensor, not shape "
                               f"{tuple(getattr(t, 'shape', ()))}")
        shapes.append((int(t.shape[0]), int(t.shape[1])))
    k0 = shapes[0][1]
    if input_len is None:
        input_len = k0
    if input_len != k0:
        raise CompileError(f"the input vector has {input_len} elements but layer 0 has fan-in {k0}")
    for i in range(1, len(shapes)):
        if shapes[i][1] != shapes[i - 1][0]:
            raise CompileError(f"layer {i} has fan-in {shapes[i][1]} but layer {i - 1} has "
                               f"{shapes[i - 1][0]} outputs")
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        if i < last and layer.raw:
            raise CompileError(f"layer {i} of {len(layers)} is raw (no requantization), but "
                               f"only the last layer may be")
        if i == last and not layer.raw:
            raise CompileError(f"the last layer ({i}) must output raw accumulators (logits), "
                               f"but it requantizes")
        if shapes[i][1] > cfg.max_fan_in:
            raise CompileError(f"layer {i} has fan-in {shapes[i][1]}, more than the "
                               f"{cfg.max_fan_in} the accelerator's accumulators are sized for "
                               f"(max_fan_in)")
        if not layer.raw and not (0 <= int(layer.m) < (1 << M_BITS) and 0 <= int(layer.s) <= S_MAX):
            raise CompileError(f"layer {i} has requantization m={layer.m}, s={layer.s}, "
                               f"outside m < 2**{M_BITS}, s <= {S_MAX}")
        n, k = shapes[i]
        for fname, val in (("n", n), ("k", k)):
            _field(val, fname, f"layer {i} ({n}x{k})")
    if shapes[last][0] > cfg.out_depth:
        raise CompileError(f"the last layer ({last}) is {shapes[last][0]} outputs wide, more "
                           f"than the {cfg.out_depth}-word output buffer (out_depth)")
    words_needed = sum(-(-n // cfg.lanes) * k for n, k in shapes)
    if words_needed > cfg.weight_depth:
        raise CompileError(f"the weights need {words_needed} words of {cfg.word_bits} bits at "
                           f"{cfg.lanes} lanes, but the weight memory holds {cfg.weight_depth} "
                           f"(weight_depth)")
    try:
        g = mlp_graph(layers, names=names, gammas=gammas)
    except (ValueError, GraphError) as exc:
        raise CompileError(f"cannot build the model graph: {exc}") from None
    return lower(g, cfg)


def load_model(path: str | os.PathLike):
    """Load a safetensors checkpoint and build its integer golden model (golden.mlp).

    Returns
    -------
    (checkpoint, layers) : (golden.mlp.Checkpoint, list of golden.mlp.IntBitLinear)

    Raises
    ------
    CheckpointError (a ValueError), one sentence naming the file.
    """
    from ternac.golden import mlp

    try:
        ckpt = mlp.load_checkpoint(path)
        layers = mlp.int_layers_from_trits([l.trits for l in ckpt.layers],
                                           [l.gamma for l in ckpt.layers],
                                           [l.act_scale for l in ckpt.layers])
    except ValueError as exc:
        msg = str(exc)
        if os.fspath(path) not in msg:
            msg = f"checkpoint {os.fspath(path)!r}: {msg}"
        raise CheckpointError(msg) from None
    return ckpt, layers


def compile_checkpoint(path: str | os.PathLike, cfg: AccelConfig) -> Lowered:
    """Load a digits safetensors checkpoint (golden.mlp) and compile it for ``cfg``."""
    ckpt, layers = load_model(path)
    return compile_mlp(layers, cfg, names=[f"layers.{i}" for i in range(len(layers))],
                       gammas=[l.gamma for l in ckpt.layers])


def layers_from_image(image: WeightImage) -> list:
    """The ``golden.mlp.IntBitLinear`` layers an MLP's weight image describes."""
    from ternac.golden.image import untile_lanes
    from ternac.golden.mlp import IntBitLinear

    out = []
    for e in image.tensors:
        t = untile_lanes(image.words[e.offset:e.offset + e.count], e.n, e.k, image.lanes,
                         image.format)
        out.append(IntBitLinear(trits=t, m=e.m, s=e.s, relu=bool(e.flags & Flag.RELU),
                                raw=bool(e.flags & Flag.RAW)))
    return out


def compile_image(image: WeightImage, cfg: AccelConfig) -> Lowered:
    """Rebuild an MLP's program from its weight image (the tensor table is the layer list).

    Raises
    ------
    CompileError if the image was packed for another lane count or does not fit ``cfg``.
    """
    if image.lanes != cfg.lanes:
        raise CompileError(f"the weight image is packed for {image.lanes} lanes, but the "
                           f"accelerator has {cfg.lanes}")
    fmt = "t3" if image.format == Format.T3 else "i2"
    if fmt != cfg.weight_format:
        raise CompileError(f"the weight image holds {fmt.upper()} weights, but the "
                           f"accelerator reads {cfg.weight_format.upper()}")
    c = compile_mlp(layers_from_image(image), cfg, names=[e.name for e in image.tensors],
                    gammas=[e.gamma for e in image.tensors])
    if c.image.words != image.words or [dataclasses.replace(e, gamma=0.0) for e in c.image.tensors] \
            != [dataclasses.replace(e, gamma=0.0) for e in image.tensors]:
        raise CompileError("the weight image's tensors are not laid out back to back from word "
                           "0 in table order, as this compiler lays them out")
    return dataclasses.replace(c, image=image)


def write_compiled(c: Lowered, out_dir: str | os.PathLike) -> list[str]:
    """Write ``weights.tnac`` (the matrices' weight image, golden.image), ``program.txt``
    (the listing with the maps), ``program.hex`` (one 32-hex-digit word a line, for
    ``$readmemh``) and, when the weight memory holds more than the matrices (tables, staged
    constants) or the scratchpad has constants, ``memory.hex`` (every weight word) and
    ``scratch.hex`` (``@addr`` lines and 4-hex-digit words). Each file is written to a
    temporary file and renamed.

    Returns
    -------
    list of the paths written.
    """
    from ternac.golden.image import write_image

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    wpath = os.path.join(out_dir, "weights.tnac")
    write_image(c.image, wpath)
    paths.append(wpath)
    files = [("program.txt", c.listing()),
             ("program.hex", "".join(f"{w:032x}\n" for w in c.program_words))]
    if len(c.weight_words) > len(c.image.words) or c.scratch_constants:
        digits = -(-c.cfg.word_bits // 4)
        files.append(("memory.hex", "".join(f"{w:0{digits}x}\n" for w in c.weight_words)))
        lines = []
        for a, vals in sorted(c.scratch_constants.items()):
            lines.append(f"@{a:x}")
            lines += [f"{v & 0xFFFF:04x}" for v in vals]
        files.append(("scratch.hex", "\n".join(lines) + "\n"))
    for name, data in files:
        p = os.path.join(out_dir, name)
        atomic_write(p, data.encode())
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------
# Front end: the MatMul-free LM
# ---------------------------------------------------------------------------------------

def compile_lm(intlm, cfg: AccelConfig = LM_CONFIG, sample: bool = False, *,
               seed: int = 0, temperature: float = 1.0) -> Lowered:
    """Compile an integer MatMul-free LM (:class:`ternac.golden.lm_int.IntLM`):
    :meth:`IntLM.graph`, lowered. The token id is scratch word 0 (``TOKEN_ADDR``), the zero
    word 1, the state from 2.

    Parameters
    ----------
    cfg : AccelConfig (default :data:`LM_CONFIG`; sampling needs :data:`LM_SAMPLE_CONFIG`)
    sample : False: the greedy program (RAW logits in ``out``, ARGMAX); True: the sampling
        program (int16 logits in scratch, SHIFTMAX, SAMPLE), equal to
        ``IntLM.generate(greedy=False, seed=seed, temperature=temperature)``
    seed : the sampler's seed, in the LFSR words of ``scratch_constants``
    temperature : folded into SHIFTMAX's exp gain

    Raises
    ------
    CompileError as :func:`lower`, or for a bad temperature / a model without int16 logits.
    """
    try:
        g = intlm.graph(sample=sample, temperature=temperature)
    except ValueError as exc:
        raise CompileError(f"cannot compile the sampling program: {exc}") from None
    init = {"lfsr": list(split_state(seed_state(seed)))} if sample else None
    return lower(g, cfg, state_init=init, seed=int(seed) if sample else None,
                 temperature=float(temperature) if sample else None)


def lm_config(intlm, *, lanes: int = 32, scratch_depth: int = 4096,
              sample: bool = False, scratch_a_depth: int | None = None) -> AccelConfig:
    """The smallest AccelConfig of ``lanes`` lanes and ``scratch_depth`` words (port a's
    window ``scratch_a_depth``, default the whole scratchpad) that holds ``intlm``:
    weight_depth, prog_depth, out_depth, max_fan_in, the vector units the program uses and
    max_vector = its longest summing vector.

    Raises
    ------
    CompileError as :func:`compile_lm`.
    """
    from ternac.golden.ops import VECTOR_UNITS

    big = AccelConfig(lanes=lanes, weight_depth=1 << 20, scratch_depth=scratch_depth,
                      scratch_a_depth=scratch_a_depth,
                      out_depth=max(1, intlm.config.vocab_size), prog_depth=1 << 20,
                      max_fan_in=1 << 20, vector=VECTOR_UNITS, max_vector=1 << 20)
    cm = compile_lm(intlm, big, sample)
    used = {spec(i.op).unit for i in cm.program if spec(i.op).vector}
    return AccelConfig(lanes=lanes, weight_depth=len(cm.weight_words), scratch_depth=scratch_depth,
                       scratch_a_depth=scratch_a_depth,
                       out_depth=intlm.config.vocab_size, prog_depth=len(cm.program),
                       max_fan_in=max(w.shape[1] for w in cm.graph.weights.values()),
                       vector=tuple(u for u in VECTOR_UNITS if u in used),
                       max_vector=max([spec(i.op).in_len(i.n, i.k) for i in cm.program
                                        if spec(i.op).sums] or [1]))


def run_tokens(cm: Lowered, tokens: Sequence[int], scratch: torch.Tensor | None = None
               ) -> Iterator[tuple[torch.Tensor, int, torch.Tensor]]:
    """Run a compiled LM program in the interpreter, one token after another, carrying the
    scratchpad (and so the state) across tokens.

    Yields
    ------
    (logits, next_token, scratch) per token: (n_logits,) int64 logits, the result register
    and the (scratch_depth,) scratchpad after the token.
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
                         weight_depth=cfg.weight_depth, scratch_init=init,
                         weight_format=cfg.weight_format)
        scratch = st.scratch[0]
        mem = st.scratch if cm.logits_in_scratch else st.out
        yield (mem[0, cm.logits_addr:cm.logits_addr + cm.n_logits].clone(),
               int(st.result[0]), scratch)


# ---------------------------------------------------------------------------------------
# Post-pass: REPEAT loops (golden/isa.py ``REPEAT``)
# ---------------------------------------------------------------------------------------

#: The address fields a REPEAT advances and their widths (golden.isa.RSEL_FIELDS).
_ADDR_FIELDS = tuple((f, _FIELD_BITS[f]) for f in ("src", "dst", "aux", "wbase"))
#: The fields that must be equal in every iteration of a body instruction.
_FIXED_FIELDS = tuple(f for f, _ in FIELDS if f not in ("src", "dst", "aux", "wbase"))


def _signed_delta(a: int, b: int, bits: int) -> int | None:
    """``b - a`` modulo ``2^bits`` as a REPEAT stride in [-2048, 2047], else None."""
    d = (b - a) % (1 << bits)
    if d >= 1 << (bits - 1):
        d -= 1 << bits
    return d if -2048 <= d < 2048 else None


def compress_program(prog: Sequence[Instr], *, max_body: int = 64,
                     max_count: int | None = None) -> list[Instr]:
    """Compress a straight-line program with REPEAT loops (golden/isa.py): every run of
    ``c >= 2`` consecutive copies of a body of ``p`` instructions that differ only in their
    address fields (src, dst, aux, wbase), each by a constant stride a copy, with at most
    three distinct non-zero strides in the run, becomes ``REPEAT c, p`` and the first copy
    (the fields' stride selectors set). The runs are chosen to give the fewest
    instructions (dynamic programming over the program: cost ``1 + p`` for a run, 1 for an
    instruction left alone). No model knowledge: the pass sees instructions only.

    Kept whole: a MATVEC and its epilogue (a body never ends with an ``epi`` MATVEC nor
    starts at an epilogue); never in a body: HALT, REPEAT, an instruction with ``rsel``
    set. The result unrolls (golden.isa.expand_program) to exactly ``prog`` up to its
    HALT, so it computes the same on every backend; checked here.

    Parameters
    ----------
    prog : list of Instr, straight-line (no REPEAT), ending in HALT
    max_body : int, the longest body tried (instructions)
    max_count : int or None, the most copies one REPEAT runs (None: 4,095, all its ``n``
        field holds); a longer run is split

    Returns
    -------
    list of Instr, at most ``len(prog)`` long

    Raises
    ------
    ValueError if ``prog`` already holds a REPEAT or stride selectors (not straight-line);
    AssertionError if the compressed program does not unroll to ``prog`` (a bug here).
    A run longer than REPEAT's count field holds (4,095) is split.
    """
    from ternac.golden.isa import REPEAT_STRIDES, expand_program, repeat_word, rsel_of

    prog = list(prog)
    n = len(prog)
    for k, ins in enumerate(prog):
        if ins.op == Op.REPEAT or ins.rsel:
            raise ValueError(f"compress_program takes a straight-line program, but instruction "
                             f"{k} ({ins.op.name}) is a REPEAT or has stride selectors")
    field_max = (1 << _FIELD_BITS["n"]) - 1       # REPEAT's count is its n field
    count_max = field_max if max_count is None else min(max_count, field_max)
    fixed = [tuple(getattr(i, f) for f in _FIXED_FIELDS) for i in prog]
    addr = [tuple(getattr(i, f) for f, _ in _ADDR_FIELDS) for i in prog]
    ok = [i.op not in (Op.HALT, Op.REPEAT) and not i.rsel for i in prog]
    # i, i + 1 a pair: a MATVEC and its epilogue, a prologue RMSNORM and its MATVEC, a
    # chain's two ops
    pair_head = [(i.op == Op.MATVEC and bool(i.epi)) or (i.op == Op.RMSNORM and bool(i.pro))
                 or bool(i.chain) for i in prog]

    def pair(i: int, p: int):
        """(strides per body word and field, stride table) taking the copy prog[i:i+p] to
        the next one, or None where they differ in more than the address fields, a stride
        does not fit REPEAT's table or a body may not start at ``i``."""
        if i + 2 * p > n or (i and pair_head[i - 1]) or pair_head[i + p - 1]:
            return None
        if not all(ok[i:i + p]):
            return None
        deltas, table = [], []
        for j in range(p):
            a, b = i + j, i + p + j
            if fixed[a] != fixed[b]:
                return None
            row = []
            for (f, bits), x, y in zip(_ADDR_FIELDS, addr[a], addr[b]):
                d = _signed_delta(x, y, bits)
                if d is None:
                    return None
                if d and d not in table:
                    table.append(d)
                    if len(table) > REPEAT_STRIDES:
                        return None
                row.append(d)
            deltas.append(row)
        return deltas, table

    # best[i]: fewest words for prog[i:]; choice[i]: (p, c, deltas, table) or None.
    # runs[p][i]: the longest run of copies of prog[i:i+p] from i, as (count, deltas, table,
    # the fewest words after a run of 2..count copies, that count), or None. A run from i
    # is the copy at i followed by the run from i + p with the same strides (a copy
    # differs from the next by fixed strides; the fixed fields equal, so ok and pair_head
    # of both copies equal), so each is one step from runs[p][i + p]: linear, not
    # quadratic, in a run's length (fields are compared modulo their width, where a stride
    # is unique: _signed_delta).
    best = [0] * (n + 1)
    choice: list = [None] * (n + 1)
    runs = [None] + [[None] * (n + 1) for _ in range(max_body)]
    for i in range(n - 1, -1, -1):
        best[i], choice[i] = best[i + 1] + 1, None
        for p in range(1, min(max_body, (n - i) // 2) + 1):
            r = pair(i, p)
            if r is None:
                continue
            deltas, table = r
            nxt = runs[p][i + p] if i + p <= n else None
            if nxt is not None and nxt[1] == deltas:
                c = min(count_max, 1 + nxt[0])
                if c == 1 + nxt[0]:
                    m, mc = nxt[3], nxt[4] + 1
                else:           # capped: the run from i + p reaches one copy further
                    m, mc = min((best[i + q * p], q) for q in range(2, c + 1))
                if best[i + 2 * p] <= m:
                    m, mc = best[i + 2 * p], 2
            else:
                c, m, mc = 2, best[i + 2 * p], 2
            runs[p][i] = (c, deltas, table, m, mc)
            if (1 + p) + m < best[i]:
                best[i], choice[i] = 1 + p + m, (p, mc, deltas, table)
    out: list[Instr] = []
    i = 0
    while i < n:
        ch = choice[i]
        if ch is None:
            out.append(prog[i])
            i += 1
            continue
        p, c, deltas, table = ch
        out.append(repeat_word(c, p, table))
        for j in range(p):
            sel = {f: table.index(d) + 1 for (f, _), d in zip(_ADDR_FIELDS, deltas[j]) if d}
            out.append(dataclasses.replace(prog[i + j], rsel=rsel_of(sel)))
        i += c * p
    stop = next((k for k, ins in enumerate(prog) if ins.op == Op.HALT), n - 1)
    assert [ins for _, ins in expand_program(out)] == prog[:stop + 1], \
        "compress_program: the compressed program does not unroll to the original"
    return out
