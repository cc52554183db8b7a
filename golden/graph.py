"""The model graph: a model is a typed list of accelerator ops over named vectors.

Every model the accelerator runs (the digits MLP of :mod:`ternac.golden.mlp`, the MatMul-free
LM of :mod:`ternac.golden.lm_int`, ...) is built as a :class:`Graph`; evaluating it eagerly
in torch (:meth:`Graph.evaluate`) *is* the integer golden model, and one lowering
(:mod:`ternac.lower`) turns it into a program, a weight image and a scratch map whose
interpreter run must equal this evaluation on every element.

Vectors (:class:`Vec`) have a name, a length ``n``, a bit width (8: int8 [-127, 127]; 16:
int16 [-32767, 32767]; 15: unsigned Q15; 32: raw int32 accumulators) and the real value of
one LSB (``scale``, informational: the integers are the contract). Their ``kind`` says who
writes them: ``input`` (the host, before a run), ``state`` (kept across runs and updated in
place by the graph, e.g. the MLGRU state), ``const`` (fixed integers, e.g. norm weights),
``temp`` (written by exactly one node).

Nodes (:class:`Node`) are ops of the registry :mod:`ternac.golden.ops`, with the same
constants the ISA carries (``m, s, m2, s2, flags, k``), so a node's golden function is the
instruction's. MATVEC nodes name a ternary weight matrix of :attr:`Graph.weights`, EMBED
nodes a byte table of :attr:`Graph.tables`; ARGMAX and SAMPLE write the machine's result
register (``Graph.evaluate(...)["result"]``).

Nodes run in list order; a ``state`` vector may be read before and after the node that
writes its new value (the program updates it in place, as the RTL does).

Source: ../shared/DESIGN.md "One model graph"; hls4ml's ModelGraph is the model.
"""
from __future__ import annotations

import dataclasses

import torch

from .isa import Op
from .ops import VecParams, spec

__all__ = ["Vec", "Node", "Weight", "Graph", "GraphError", "KINDS"]

KINDS = ("input", "state", "const", "temp", "view")


class GraphError(ValueError):
    """A graph that is not well formed (unknown vector, length mismatch, double write)."""


@dataclasses.dataclass(frozen=True)
class Vec:
    """A named vector: ``n`` elements of ``bits`` bits at real ``scale`` an LSB. A ``view``
    is the slice ``[offset, offset + n)`` of the vector ``parent`` (e.g. one row of a
    per-head K matrix that a MATVEC writes and a DOT reads whole)."""
    name: str
    n: int
    bits: int = 16
    scale: float | None = None
    kind: str = "temp"
    parent: str | None = None
    offset: int = 0


@dataclasses.dataclass(frozen=True)
class Weight:
    """A ternary matrix: ``trits`` (N, K) int8 in {-1, 0, 1}, real weight ``gamma * t``;
    ``act_scale`` the real LSB of its int8 input (informational)."""
    name: str
    trits: torch.Tensor
    gamma: float = 0.0
    act_scale: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.trits.shape[0]), int(self.trits.shape[1])


@dataclasses.dataclass(frozen=True)
class Node:
    """One op: ``out = op(a, b; m, s, m2, s2, flags, k)``.

    out : name of the vector written (None for ARGMAX; SAMPLE writes its LFSR state ``b``)
    a, b : operand vector names (b: the second operand; None where the op has one)
    weight : MATVEC: the weight matrix name; EMBED: the byte table name
    """
    op: Op
    out: str | None
    a: str | None = None
    b: str | None = None
    weight: str | None = None
    m: int = 0
    s: int = 0
    m2: int = 0
    s2: int = 0
    flags: int = 0
    k: int = 0

    @property
    def params(self) -> VecParams:
        return VecParams(m=self.m, s=self.s, m2=self.m2, s2=self.s2, flags=self.flags, k=self.k)


@dataclasses.dataclass
class Graph:
    """A model as a graph of accelerator ops (see the module docstring).

    Attributes
    ----------
    name : str
    vecs : {name: Vec}
    nodes : list of Node, in execution order
    weights : {name: Weight}, ternary matrices (MATVEC)
    tables : {name: (V, d) int8-valued tensor}, byte tables (EMBED)
    consts : {name: (n,) int64 tensor}, the values of the ``const`` vectors
    outputs : names of the vectors the host reads after a run (e.g. the logits)
    """
    name: str = "model"
    vecs: dict = dataclasses.field(default_factory=dict)
    nodes: list = dataclasses.field(default_factory=list)
    weights: dict = dataclasses.field(default_factory=dict)
    tables: dict = dataclasses.field(default_factory=dict)
    consts: dict = dataclasses.field(default_factory=dict)
    outputs: list = dataclasses.field(default_factory=list)

    # --- building ---------------------------------------------------------------------
    def _new(self, v: Vec) -> str:
        if v.name in self.vecs:
            raise GraphError(f"vector {v.name!r} is defined twice")
        if v.kind not in KINDS:
            raise GraphError(f"vector {v.name!r} has kind {v.kind!r}; choose from {KINDS}")
        if v.n < 1:
            raise GraphError(f"vector {v.name!r} has length {v.n}; it must be at least 1")
        self.vecs[v.name] = v
        return v.name

    def input(self, name: str, n: int, bits: int = 8, scale: float | None = None) -> str:
        """A vector the host writes before each run."""
        return self._new(Vec(name, n, bits, scale, "input"))

    def state(self, name: str, n: int, bits: int = 16, scale: float | None = None) -> str:
        """A vector kept across runs (zero at the start of a sequence)."""
        return self._new(Vec(name, n, bits, scale, "state"))

    def const(self, name: str, values: torch.Tensor, bits: int = 16,
              scale: float | None = None) -> str:
        """A constant integer vector (e.g. a norm weight)."""
        v = torch.as_tensor(values).to(torch.int64).flatten()
        self._new(Vec(name, v.numel(), bits, scale, "const"))
        self.consts[name] = v
        return name

    def buffer(self, name: str, n: int, bits: int = 16, scale: float | None = None) -> str:
        """A ``temp`` vector that nodes write through its views (:meth:`view`), e.g. the
        token-major K matrix of a head, one row a token."""
        return self._new(Vec(name, n, bits, scale, "temp"))

    def view(self, name: str, parent: str, offset: int, n: int, bits: int | None = None,
             scale: float | None = None) -> str:
        """The slice ``parent[offset:offset + n]`` as a vector of its own (the parent's bits
        and scale unless given). Nodes may write the views of a ``temp`` parent one by one
        (each view once) and read the parent whole. Views of an ``input`` parent may be
        read, and written as work space once the input is no longer read (the host writes
        the input again before the next run; the lowering keeps the input's fixed
        address, so such a view costs no scratch of its own). A view's value in
        :meth:`evaluate`'s result is the parent's slice at the end of the run.

        Raises
        ------
        GraphError for an unknown parent, one neither temp nor input, or a slice outside it.
        """
        p = self._vec(parent)
        if p.kind not in ("temp", "input"):
            raise GraphError(f"view {name!r}: its parent {parent!r} is a {p.kind} vector, not a "
                             f"temp or an input")
        if not (0 <= offset and n >= 1 and offset + n <= p.n):
            raise GraphError(f"view {name!r}: [{offset}, {offset + n}) is outside {parent!r} "
                             f"of {p.n} elements")
        return self._new(Vec(name, n, p.bits if bits is None else bits,
                             p.scale if scale is None else scale, "view", parent, offset))

    def weight(self, name: str, trits: torch.Tensor, gamma: float = 0.0,
               act_scale: float = 0.0) -> str:
        """A ternary weight matrix (N, K)."""
        if name in self.weights:
            raise GraphError(f"weight {name!r} is defined twice")
        t = torch.as_tensor(trits)
        if t.dim() != 2:
            raise GraphError(f"weight {name!r} must be a 2-D (N, K) tensor, not shape {tuple(t.shape)}")
        self.weights[name] = Weight(name, t.to(torch.int8), float(gamma), float(act_scale))
        return name

    def table(self, name: str, rows: torch.Tensor) -> str:
        """An int8 byte table (V, d) read by EMBED."""
        if name in self.tables:
            raise GraphError(f"table {name!r} is defined twice")
        self.tables[name] = torch.as_tensor(rows).to(torch.int64)
        return name

    def _vec(self, name: str) -> Vec:
        try:
            return self.vecs[name]
        except KeyError:
            raise GraphError(f"vector {name!r} is used before it is defined") from None

    def add(self, op: Op, out: str | Vec | None, a: str | None = None, b: str | None = None,
            **attrs) -> str | None:
        """Append a node; ``out`` a new ``temp`` Vec (or the name of a state vector it
        updates). Returns the output name.

        Raises
        ------
        GraphError for an unknown operand, an operand length that does not match the op,
        or an output written twice.
        """
        spec(op)   # a registered op
        fresh = isinstance(out, Vec)
        if fresh:
            self._new(out)
            out = out.name
        node = Node(op, out, a, b, **attrs)
        try:
            self._check(node)
        except GraphError:
            if fresh:
                del self.vecs[out]
            raise
        self.nodes.append(node)
        return out

    def _check(self, nd: Node) -> None:
        what = f"{nd.op.name} -> {nd.out}"
        for nm in (nd.a, nd.b):
            if nm is not None:
                self._vec(nm)
        if nd.out is not None:
            o = self._vec(nd.out)
            if o.kind in ("input", "const"):
                raise GraphError(f"{what}: a node may not write the {o.kind} vector {o.name!r}")
            if o.kind in ("temp", "view") and any(x.out == o.name for x in self.nodes):
                raise GraphError(f"{what}: vector {o.name!r} is written twice")
            if o.kind == "temp" and any(self.vecs[x.out].parent == o.name for x in self.nodes
                                        if x.out is not None):
                raise GraphError(f"{what}: vector {o.name!r} is written through its views")
        if nd.op == Op.MATVEC:
            if nd.weight not in self.weights:
                raise GraphError(f"{what}: unknown weight {nd.weight!r}")
            n, k = self.weights[nd.weight].shape
            if self._vec(nd.a).n != k or self._vec(nd.out).n != n:
                raise GraphError(f"{what}: weight {nd.weight} is {n}x{k} but the input has "
                                 f"{self._vec(nd.a).n} and the output {self._vec(nd.out).n} elements")
        elif nd.op == Op.EMBED:
            if nd.weight not in self.tables:
                raise GraphError(f"{what}: unknown table {nd.weight!r}")
            if self.tables[nd.weight].shape[1] != self._vec(nd.out).n:
                raise GraphError(f"{what}: table rows of {self.tables[nd.weight].shape[1]} bytes "
                                 f"into a vector of {self._vec(nd.out).n}")
        elif spec(nd.op).vector:
            s = spec(nd.op)
            n_out = self._vec(nd.out).n
            n_a = self._vec(nd.a).n
            if s.in_len(n_out, nd.k) != n_a:
                raise GraphError(f"{what}: operand {nd.a} has {n_a} elements for an output of {n_out}")
            if s.operands == 2:
                n_b = self._vec(nd.b if nd.b is not None else nd.a).n
                if s.b_len(n_out, nd.k) != n_b:
                    raise GraphError(f"{what}: operand {nd.b or nd.a} has {n_b} elements; "
                                     f"{s.name} with an output of {n_out} and k={nd.k} needs "
                                     f"{s.b_len(n_out, nd.k)}")

    # --- reading --------------------------------------------------------------------------
    def node_of(self, name: str) -> Node:
        """The node that writes vector ``name`` (the last one, for a state vector)."""
        for nd in reversed(self.nodes):
            if nd.out == name:
                return nd
        raise GraphError(f"no node writes {name!r}")

    def kinds(self, kind: str) -> list[Vec]:
        """The vectors of one kind, in definition order."""
        return [v for v in self.vecs.values() if v.kind == kind]

    def trit_macs(self) -> int:
        """Useful ternary multiply-accumulates of one run: sum of N * K over MATVEC nodes."""
        return sum(self.weights[nd.weight].trits.numel() for nd in self.nodes if nd.op == Op.MATVEC)

    def op_counts(self) -> dict[str, int]:
        """Nodes by op name."""
        out: dict[str, int] = {}
        for nd in self.nodes:
            out[nd.op.name] = out.get(nd.op.name, 0) + 1
        return out

    # --- evaluation: the integer golden model ---------------------------------------------
    def init_state(self, batch: int | None = None) -> dict[str, torch.Tensor]:
        """Every state vector at zero: ``{name: (n,) or (batch, n) int64}``."""
        return {v.name: torch.zeros((v.n,) if batch is None else (batch, v.n), dtype=torch.int64)
                for v in self.kinds("state")}

    def evaluate(self, feeds: dict, state: dict | None = None) -> dict[str, torch.Tensor]:
        """Run the graph eagerly in torch: the integer golden model.

        Parameters
        ----------
        feeds : {input name: int tensor (..., n)}, every ``input`` vector
        state : {state name: int tensor (..., n)}; missing ones start at zero

        Returns
        -------
        dict: every vector by name (int64 (..., n); state vectors at their new values) and
        ``"result"`` (int64 (...)) if an ARGMAX or SAMPLE ran.

        Raises
        ------
        GraphError for a missing or mis-shaped feed; ValueError from a golden function.
        """
        env: dict[str, torch.Tensor] = {}
        lead = None
        for v in self.kinds("input"):
            if v.name not in feeds:
                raise GraphError(f"input {v.name!r} is not fed")
            x = torch.as_tensor(feeds[v.name]).to(torch.int64)
            if x.shape[-1] != v.n:
                raise GraphError(f"input {v.name!r} has {x.shape[-1]} elements, not {v.n}")
            env[v.name] = x
            lead = x.shape[:-1]
        lead = lead if lead is not None else ()
        for v in self.kinds("state"):
            x = None if state is None else state.get(v.name)
            env[v.name] = (torch.zeros(*lead, v.n, dtype=torch.int64) if x is None
                           else torch.as_tensor(x).to(torch.int64).reshape(*lead, v.n))
        for name, c in self.consts.items():
            env[name] = c
        def get(name):
            v = self.vecs[name]
            if v.kind == "view":
                return env[v.parent][..., v.offset:v.offset + v.n]
            return env[name]

        def put(name, value):
            v = self.vecs[name]
            if v.kind != "view":
                env[name] = value
                return
            par = self.vecs[v.parent]
            if v.parent not in env:
                env[v.parent] = torch.zeros(*value.shape[:-1], par.n, dtype=torch.int64)
            whole = env[v.parent]
            if whole.dim() < value.dim():     # rows from constants carry no batch axis
                whole = whole.expand(*value.shape[:-1], par.n)
            whole = whole.clone()
            whole[..., v.offset:v.offset + v.n] = value
            env[v.parent] = whole

        for nd in self.nodes:
            s = spec(nd.op)
            a = get(nd.a) if nd.a is not None else None
            if nd.op == Op.MATVEC:
                put(nd.out, s.fn()(self.weights[nd.weight].trits, a, nd.m, nd.s, nd.flags))
            elif nd.op == Op.EMBED:
                put(nd.out, s.fn()(self.tables[nd.weight], a[..., 0]))
            elif nd.op == Op.ARGMAX:
                env["result"] = s.fn()(a)
            elif nd.op == Op.SAMPLE:
                env["result"], env[nd.b] = self._sample(s.fn(), a, get(nd.b))
            else:
                b = get(nd.b) if nd.b is not None else a
                put(nd.out, s.fn()(a, b, nd.params))
        for v in self.kinds("view"):
            if v.parent in env:
                env[v.name] = env[v.parent][..., v.offset:v.offset + v.n]
        return env

    @staticmethod
    def _sample(draw, p: torch.Tensor, st: torch.Tensor):
        from .sampler import join_state, split_state

        flat_p, flat_s = p.reshape(-1, p.shape[-1]), st.reshape(-1, 2)
        idx, new = [], []
        for pi, si in zip(flat_p, flat_s):
            k, s2 = draw(pi.tolist(), join_state(int(si[0]), int(si[1])))
            idx.append(k)
            new.append(list(split_state(s2)))
        return (torch.tensor(idx, dtype=torch.int64).reshape(p.shape[:-1]),
                torch.tensor(new, dtype=torch.int64).reshape(st.shape))
