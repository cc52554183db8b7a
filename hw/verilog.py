"""Verilog generation for the accelerator top and each unit (``ternac verilog``)."""
from __future__ import annotations

import pathlib

from amaranth.back import verilog

from ternac.config import AccelConfig
from .engine import TernaryEngine
from .memory import WeightMemory
from .requant import Requantizer
from .sequencer import Sequencer
from .streamer import PackedWeightStreamer
from .top import Accelerator
from .vector_units import UNIT_TABLE

__all__ = ["units", "write_all"]


def units(cfg: AccelConfig, weight_words=(), program_words=()) -> dict:
    """The components of one build, by Verilog module name."""
    return {
        "ternac_top": Accelerator(cfg, weight_words=weight_words, program_words=program_words),
        "ternac_sequencer": Sequencer(lanes=cfg.lanes, acc_bits=cfg.acc_bits,
                                      prog_depth=cfg.prog_depth, scratch_depth=cfg.scratch_depth,
                                      out_depth=cfg.out_depth, weight_depth=cfg.weight_depth,
                                      mv_chain=cfg.mv_chain),
        "ternac_streamer": PackedWeightStreamer(lanes=cfg.lanes, depth=cfg.weight_depth),
        # T3 on the same weight word (2 * lanes bits = lanes / 4 bytes, 5 trits a byte):
        # 32 lanes of I2 -> 40 lanes of T3 from the same 64-bit word. Not in the top yet.
        "ternac_streamer_t3": PackedWeightStreamer(lanes=5 * cfg.word_bits // 8,
                                                   depth=cfg.weight_depth, fmt="t3"),
        "ternac_streamer_t3_lut": PackedWeightStreamer(lanes=5 * cfg.word_bits // 8,
                                                       depth=cfg.weight_depth, fmt="t3",
                                                       decode="lut"),
        "ternac_engine": TernaryEngine(lanes=cfg.lanes, acc_bits=cfg.acc_bits),
        "ternac_requant": Requantizer(acc_bits=cfg.acc_bits, tag_bits=12),
        "ternac_weight_memory": WeightMemory(word_bits=cfg.word_bits, depth=cfg.weight_depth,
                                             init=weight_words),
        # The vector units (integer nonlinear units of golden/intops.py), built whether or not
        # this configuration carries them, so each can be inspected and costed on its own:
        # one per row of hw.vector_units.UNIT_TABLE (the registry's unit names).
        **{f"ternac_{name}": factory(cfg) for name, (factory, _) in UNIT_TABLE.items()},
    }


def write_all(cfg: AccelConfig, out_dir, weight_words=(), program_words=(), *,
              progress: bool = True) -> list[str]:
    """Write ``<name>.v`` for the top and each unit into ``out_dir``; returns the paths.

    The top carries its program and weight image as memory initialisers.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, comp in units(cfg, weight_words, program_words).items():
        if progress:
            print(f"[verilog] {name}", flush=True)
        p = out / f"{name}.v"
        p.write_text(verilog.convert(comp, name=name, emit_src=False))
        paths.append(str(p))
    return paths
