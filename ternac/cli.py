"""The ``ternac`` command line.

Subcommands::

    ternac train digits [--seed S] [--epochs E] [--out PATH]
    ternac run {digits,vit-digits} --backend {golden,interp,verilator,cosim,board} [--lanes L]
                      [--checkpoint PATH] [--image PATH] [--json FILE] [--limit N]
                      [--build-dir DIR] [--weight-depth W] [--scratch-depth D]
                      [--port P] [--baud B] [--board B]
    ternac compile digits [--lanes L] --out DIR [--checkpoint PATH]
    ternac verilog --out DIR [--lanes L] [--checkpoint PATH]
    ternac bench numerics [--json FILE]
    ternac bench lm [--config NAME] [--out DIR] [--tokens N] [--no-build]   (ternac/bench.py)
    ternac image info PATH
    ternac sim UNIT [--waves FILE.vcd|FILE.fst] [--seed N] [--stall P]   (ternac/simcli.py)

Exit codes: 0 success; 1 the run completed but a backend disagreed with the integer golden
model (logit or argmax mismatches) or the RTL bench failed; 2 bad input (a missing,
truncated or corrupt weight image or checkpoint, a model that does not fit the configured
memories, a bad argument), reported as one sentence ``ternac: error: ...`` on stderr with
no traceback and no output file written.

``ternac run`` JSON (one object; every figure's kind in ``kinds``, ../shared/DESIGN.md
"Reports")::

    model, backend, lanes, samples, checkpoint, image
    accuracy              fraction of the samples classified right by the backend (its
                          ARGMAX result for interp/verilator)
    golden_accuracy       the same for the integer golden model
    float_accuracy        the same for the float model of the checkpoint
    mismatches            samples with any logit different from the integer golden model
                          (every logit compared)
    argmax_mismatches     samples whose predicted class differs from the golden model's
    cycles_per_inference  mean RTL cycles from start to done (verilator; else null)
    cycles_min, cycles_max
    useful_macs_per_inference   sum N*K over the layers
    mac_utilization       useful_macs / (lanes * cycles_per_inference) (verilator; else null)
    kinds                 {figure: "measured" | "derived"} for every non-null figure
"""
from __future__ import annotations

import argparse
import os
import sys

from ternac.cliargs import lanes as _lanes
from ternac.cliargs import whole
from ternac.errors import (USER_ERRORS, BackendError, CheckpointError, InputError,
                           check_distinct, check_output_dir, check_output_file, one_line,
                           write_json)
from ternac.runner import BACKENDS, RTLFailed, run_digits
from ternac.runner import accel_config as _config
from ternac.runner import default_checkpoint as _default_checkpoint
from ternac.runner import model_inputs as _model_inputs

__all__ = ["main", "build_parser", "run_digits"]

MODELS = ("digits", "vit-digits")
#: Models `ternac compile` lowers (every model graph).
COMPILE_MODELS = ("digits", "shakespeare", "vit-digits")


# ----------------------------------------------------------------------------- helpers

def _write_json(path: str, obj: dict) -> None:
    write_json(path, obj)


def _check_out_dir(path: str) -> None:
    check_output_dir(path)


def _write_staged(out: str, write, owned=()) -> list[str]:
    """Run ``write(folder) -> paths`` in a new folder beside ``out``, then move each file
    into ``out`` (``os.replace``: each one atomic), so that ``out`` gets the new set only
    once all of it is complete; a failure leaves ``out`` as it was. Files named in
    ``owned`` that the new set lacks are removed (a stale ``memory.hex`` of another model
    must not stay beside the new program). Returns the final paths."""
    import shutil

    from ternac.errors import staged_folder
    stage = staged_folder(out)
    final: list[str] = []
    try:
        staged = write(stage)
        os.makedirs(out, exist_ok=True)
        names = [os.path.basename(p) for p in staged]
        for p, name in zip(staged, names):
            os.replace(p, os.path.join(out, name))
            final.append(os.path.join(out, name))
        for name in owned:
            if name not in names and os.path.isfile(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        return final
    except OSError as exc:
        # Named by the user's folder, not the staging folder beside it.
        state = ("it is as it was" if not final else
                 f"{len(final)} of its files were replaced before the failure")
        raise InputError(f"cannot write the output folder {out}: "
                         f"{(exc.strerror or str(exc)).lower()}; {state}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# ----------------------------------------------------------------------------- run
# run_digits, the backend dispatch and the report: ternac.runner.

def _print_report(r: dict) -> None:
    n = r["samples"]
    print(f"{r['model']} on backend {r['backend']}, L={r['lanes']}, {n} test images"
          + (f", weight image {r['image']}" if r["image"] else ""))
    print(f"  accuracy              {r['accuracy']:.4f}   (integer golden "
          f"{r['golden_accuracy']:.4f}, float {r['float_accuracy']:.4f})")
    if r["backend"] == "golden" and not r["image"]:
        print(f"  logit mismatches      {r['mismatches']} of {n} samples (the golden backend is "
              f"the integer golden model itself: nothing else ran to compare with)")
    elif r["backend"] == "golden":
        print(f"  logit mismatches      {r['mismatches']} of {n} samples (every logit of the "
              f"weight image's integer golden model compared with the checkpoint's); argmax "
              f"mismatches {r['argmax_mismatches']}")
    else:
        print(f"  logit mismatches      {r['mismatches']} of {n} samples (every logit compared "
              f"with the integer golden model); argmax mismatches {r['argmax_mismatches']}")
    if r["cycles_per_inference"] is not None:
        c = r["cycles_per_inference"]
        c_txt = f"{c}" if isinstance(c, int) else f"{c:.1f} (min {r['cycles_min']}, max {r['cycles_max']})"
        print(f"  cycles per inference  {c_txt}   (measured, RTL cycle counter)")
        print(f"  MAC utilization       {r['mac_utilization']:.4f}   (derived: "
              f"{r['useful_macs_per_inference']} trit-MACs / ({r['lanes']} lanes x cycles))")
    else:
        print("  cycles per inference  n/a (only the verilator backend counts cycles)")


def _cmd_run(args) -> int:
    check_output_file(args.json, "JSON output", make_folder=True)
    check_distinct([("JSON output", args.json)],
                   _model_inputs(args.model, args.checkpoint, image=args.image))
    from ternac.runner import check_image_file
    check_image_file(args.image)
    if args.model == "vit-digits":
        from ternac.runner import run_vit_digits
        if args.image is not None:
            raise InputError("--image applies to the digits MLP only; the ViT runs its checkpoint")
        report = run_vit_digits(args.backend, checkpoint=args.checkpoint, limit=args.limit,
                                build_dir=args.build_dir, progress=not args.quiet,
                                port=args.port, board=args.board, lanes=args.lanes,
                                weight_depth=args.weight_depth,
                                scratch_depth=args.scratch_depth, baud=args.baud)
    else:
        report = run_digits(args.backend, lanes=args.lanes, checkpoint=args.checkpoint,
                            image=args.image, limit=args.limit, build_dir=args.build_dir,
                            weight_depth=args.weight_depth, scratch_depth=args.scratch_depth,
                            progress=not args.quiet, port=args.port, board=args.board,
                            baud=args.baud)
    _print_report(report)
    if "attention_cycle_share" in report:
        print(f"  attention share       {report['attention_cycle_share']:.3f} of the modelled "
              f"{report['predicted_cycles']} cycles (DOT, DOTT, SHIFTMAX; modelled)")
    if args.json:
        _write_json(args.json, report)
        print(f"  wrote {args.json}")
    if report["mismatches"] or report["argmax_mismatches"]:
        print(f"ternac: {disagreement(report)}", file=sys.stderr)
        return 1
    return 0


def disagreement(r: dict) -> str:
    """The sentence for a ``ternac run`` report whose backend differed from the reference,
    naming the two models compared: the integer golden model of the checkpoint is always
    the reference; the other side is the backend running the checkpoint's compiled
    weights or the weight image, or (golden backend with --image) the integer golden model
    of the image's own trits and scales."""
    n = max(r["mismatches"], r["argmax_mismatches"])
    ref = f"the integer golden model of the checkpoint {_rel(r['checkpoint'])}"
    if r["backend"] == "golden" and r["image"]:
        return (f"the integer golden model of the weight image {r['image']} disagrees with "
                f"{ref} on {n} of {r['samples']} samples (the image holds other trits or "
                f"scales than the checkpoint)")
    runs = (f"running the weight image {r['image']}" if r["image"]
            else "running the checkpoint's compiled weights")
    return (f"the {r['backend']} backend {runs} disagrees with {ref} on {n} of "
            f"{r['samples']} samples")


# ----------------------------------------------------------------------------- others

#: Where `ternac train M` writes without --out: build/, never over the committed checkpoints.
TRAIN_OUT = {"digits": os.path.join("build", "digits.safetensors"),
             "vit-digits": os.path.join("build", "vit-digits.safetensors"),
             "shakespeare": os.path.join("build", "shakespeare.safetensors")}


def _train_out(args) -> str:
    """The checkpoint path a training run writes: --out, else build/<model>.safetensors.
    A file of the committed checkpoints/ folder is written only with --force. Checked
    before training; raises InputError (one sentence)."""
    out = args.out or TRAIN_OUT[args.model]
    check_output_file(out, "checkpoint output", make_folder=True)
    check_distinct([("checkpoint output", out)],
                   [("training text", getattr(args, "text", None))])
    # realpath: a link to checkpoints/ (or to a file in it) is the committed folder.
    committed = os.path.join(os.path.realpath(os.path.dirname(_default_checkpoint())), "")
    if (os.path.realpath(out).startswith(committed) and os.path.exists(out)
            and not getattr(args, "force", False)):
        raise InputError(f"{out} is a committed checkpoint; pass --force to write over it, or "
                         f"--out another path")
    return out


#: The training options that apply to one model only (the others train on the CPU from
#: the digits data, by epochs): given for another model they are refused, not ignored.
TRAIN_ONLY = {"--text": ("text", "shakespeare"), "--steps": ("steps", "shakespeare"),
              "--device": ("device", "shakespeare")}


def _check_train_options(args) -> None:
    """Refuse a training option that the model does not take. Raises InputError."""
    for opt, (attr, model) in TRAIN_ONLY.items():
        if getattr(args, attr, None) is not None and args.model != model:
            raise InputError(f"{opt} applies to training the {model} model only; the "
                             f"{args.model} recipe would ignore it, so leave it out")
    if args.model == "shakespeare" and getattr(args, "epochs_given", False):
        raise InputError("--epochs does not apply to training the shakespeare model; give "
                         "--steps")


def _cmd_train(args) -> int:
    _check_train_options(args)
    out = _train_out(args)
    if args.model == "shakespeare":
        return _train_shakespeare(args, out)
    if args.model == "vit-digits":
        return _train_vit(args, out)
    from ternac.golden.mlp import train_digits
    r = train_digits(seed=args.seed, epochs=args.epochs, out=out, progress=not args.quiet)
    print(f"trained digits (seed {r['seed']}, {r['epochs']} epochs, {r['seconds']:.1f} s, "
          f"torch {r['torch']} {r['cpu_capability']}): float test accuracy "
          f"{r['float_accuracy']:.4f}, integer golden {r['int_accuracy']:.4f}; wrote {out}")
    from ternac.golden.mlp import COMMITTED_RECIPE
    made = (COMMITTED_RECIPE["torch"], COMMITTED_RECIPE["cpu_capability"])
    if (r["seed"], r["epochs"]) == (0, 60) and (r["torch"], r["cpu_capability"]) != made:
        print(f"  note: checkpoints/digits.safetensors ({COMMITTED_RECIPE['int_accuracy']}) "
              f"was trained with torch {made[0]} on {made[1]} kernels; other kernels add "
              f"floats in another order and train another model (golden/mlp.py "
              f"COMMITTED_RECIPE)")
    return 0


def _train_vit(args, out: str) -> int:
    from ternac.golden.vit import DEFAULT_EPOCHS, train_vit_digits
    epochs = args.epochs if args.epochs_given else DEFAULT_EPOCHS
    r = train_vit_digits(seed=args.seed, epochs=epochs, out=out, progress=not args.quiet)
    print(f"trained vit-digits (seed {r['seed']}, {r['epochs']} epochs, {r['seconds']:.1f} s): "
          f"float test accuracy {r['float_accuracy']:.4f}, integer golden "
          f"{r['int_accuracy']:.4f}; wrote {out} (the committed checkpoint is "
          f"checkpoints/vit_digits.safetensors)")
    return 0


def train_device(name: str) -> str:
    """Check a torch device name for training: ``cpu``, ``cuda`` or ``cuda:N`` of a device
    this machine has. Returns the name; raises InputError (one sentence) otherwise."""
    import torch
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"unknown torch device {name!r}; use cpu or cuda") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name} was asked, but this machine has no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {name} was asked, but this machine has "
                             f"{torch.cuda.device_count()} CUDA devices (cuda:0 ...)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if not (mps is not None and mps.is_available()):
            raise InputError(f"--device {name} was asked, but this PyTorch has no usable MPS "
                             f"(Apple GPU) device; use cpu or cuda")
        raise InputError("--device mps is not supported by the training recipe; use cpu or cuda")
    elif dev.type != "cpu":
        raise InputError(f"--device {name} cannot train the model (a {dev.type} device holds "
                         f"no data or is not supported); use cpu or cuda")
    return name


def _train_shakespeare(args, out: str) -> int:
    from ternac.golden import lm
    if args.text is not None and not os.path.isfile(args.text):
        raise InputError(f"the training text {args.text} does not exist or is not a file")
    device = args.device or "cpu"
    train_device(device)
    try:
        r = lm.train_shakespeare(args.text, out, seed=args.seed,
                                 steps=args.steps or lm.DEFAULT_STEPS, device=device,
                                 progress=not args.quiet)
    except ValueError as exc:
        raise InputError(one_line(exc)) from None
    print(f"trained shakespeare (seed {args.seed}): "
          + ", ".join(f"{k} {v:.4f}" for k, v in r.items()
                      if isinstance(v, float) and "bpc" in k) + f"; wrote {out} (the "
          f"committed checkpoint is {lm.DEFAULT_CHECKPOINT.relative_to(lm.DEFAULT_CHECKPOINT.parent.parent)})")
    return 0


def _compile_model(model: str, lanes: int, checkpoint, weight_depth=None, scratch_depth=None,
                   text=None):
    """Lower ``model`` (digits or shakespeare) for ``lanes`` lanes: (Lowered, model name)."""
    from ternac.lower import compile_checkpoint
    if model == "shakespeare":
        from ternac.config import LM_CONFIG, LM_CONFIGS
        from ternac.golden.lm_int import IntLM
        from ternac.lower import compile_lm
        from ternac.runner import model_config
        # 32, 40 and 128 lanes: the configuration ``ternac build`` builds for them (I2, T3,
        # the ULX3S's memories and mv_chain), so the image and program are the board's;
        # any other lane count: LM_CONFIG's memories at I2.
        cfg = model_config(LM_CONFIGS.get(lanes, LM_CONFIG), lanes, weight_depth,
                           scratch_depth)
        from ternac.runner import check_corpus
        check_corpus(checkpoint, text)
        try:
            intlm = IntLM.from_checkpoint(checkpoint, text_path=text)
        except ValueError as exc:
            raise CheckpointError(one_line(exc)) from None
        return compile_lm(intlm, cfg)
    if model == "vit-digits":
        from ternac.config import VIT_CONFIG
        from ternac.golden.vit import IntViT
        from ternac.lower import lower
        from ternac.runner import model_config
        cfg = model_config(VIT_CONFIG, lanes, weight_depth, scratch_depth)
        try:
            im = IntViT.from_checkpoint(checkpoint)
        except ValueError as exc:
            raise CheckpointError(one_line(exc)) from None
        return lower(im.graph(), cfg)
    cfg = _config(lanes, weight_depth, scratch_depth)
    return compile_checkpoint(checkpoint or _default_checkpoint(), cfg)


def _cmd_compile(args) -> int:
    from ternac.golden.cycles import program_cycles
    from ternac.lower import write_compiled
    _check_out_dir(args.out)
    if args.json:
        from ternac.errors import check_output_file
        check_output_file(args.json, "--json")
    owned = ("weights.tnac", "program.txt", "program.hex", "memory.hex", "scratch.hex")
    check_distinct([*(("output file", os.path.join(args.out, n)) for n in owned),
                    ("JSON output", args.json)],
                   _model_inputs(args.model, args.checkpoint, text=args.text))
    if args.lanes is None:
        args.lanes = 32 if args.model == "shakespeare" else 8
    if args.text is not None and args.model != "shakespeare":
        raise InputError("--text applies to the shakespeare model only (its calibration text)")
    c = _compile_model(args.model, args.lanes, args.checkpoint, args.weight_depth,
                       args.scratch_depth, text=args.text)
    cfg = c.cfg
    paths = _write_staged(args.out, lambda d: write_compiled(c, d), owned=owned)
    pred = program_cycles(c.program, cfg.lanes, weight_format=cfg.weight_format,
                          mv_chain=cfg.mv_chain, norm_steps=cfg.norm_steps)
    # The weight memory holds the image's tensors (what ``ternac image info`` lists) and,
    # after them, the words the lowering adds (embedding rows, MUL wb constants).
    tensor_words = sum(int(e.count) for e in c.image.tensors)
    extra = len(c.weight_words) - tensor_words
    print(f"compiled {args.model} for L={cfg.lanes}: {len(c.weight_words)} weight-memory words "
          f"of {cfg.word_bits} bits (of {cfg.weight_depth}"
          + (f"; {tensor_words} of them the image's tensors, {extra} embedding and constant "
             f"words" if extra else "")
          + f"), {len(c.program)} instructions "
          f"(of {cfg.prog_depth}), {c.scratch_words} scratch words (of {cfg.scratch_depth}); "
          f"cycle model: {pred['total']} cycles a run"
          + ("" if pred["exact"] else f" (upper bound; at least {pred['total_min']})"))
    if len(c.program) <= 16:
        for ins in c.program:
            print(f"  {ins}")
    for p in paths:
        print(f"wrote {p}")
    if args.json:
        bound = cfg.lanes and c.trit_macs / cfg.lanes
        _write_json(args.json, {
            "model": args.model, "lanes": cfg.lanes, "config": cfg.to_dict(),
            "instructions": len(c.program), "op_counts": c.op_counts(),
            "weight_words": len(c.weight_words), "scratch_words": c.scratch_words,
            "trit_macs": c.trit_macs, "predicted_cycles": pred["total"],
            "predicted_cycles_min": pred["total_min"], "predicted_exact": pred["exact"],
            "predicted_cycles_by_op": pred["by_op"],
            "weight_stream_bound_cycles": bound,
            "kinds": {"predicted_cycles": "modelled", "predicted_cycles_min": "modelled",
                      "predicted_cycles_by_op": "modelled", "weight_stream_bound_cycles": "derived",
                      "trit_macs": "derived"}})
        print(f"wrote {args.json}")
    return 0


def _cmd_verilog(args) -> int:
    from ternac.lower import compile_checkpoint
    _check_out_dir(args.out)
    cfg = _config(args.lanes, args.weight_depth, args.scratch_depth)
    c = compile_checkpoint(args.checkpoint or _default_checkpoint(), cfg)
    try:
        from ternac.hw.verilog import write_all
    except ImportError as exc:
        raise BackendError(f"Verilog generation is not available: {exc}") from None
    paths = _write_staged(args.out, lambda d: write_all(cfg, d, c.weight_words,
                                                        c.program_words))
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_bench(args) -> int:
    from ternac.bench_numerics import main as bench_main
    return int(bench_main(args.json) or 0)


def _cmd_image_info(args) -> int:
    import struct

    from ternac.golden.image import CRC_BYTES, VERSION, read_image
    from ternac.golden.isa import Flag
    from ternac.runner import check_image_file
    check_image_file(args.path)
    img = read_image(args.path)
    with open(args.path, "rb") as f:
        f.seek(-CRC_BYTES, os.SEEK_END)
        (crc,) = struct.unpack("<I", f.read(CRC_BYTES))
    size = os.path.getsize(args.path)
    print(f"{args.path}: ternac weight image version {VERSION}, format {int(img.format)} "
          f"({img.format.name}), {img.lanes} lanes, {img.word_bits}-bit words, "
          f"{len(img.words)} words, {len(img.tensors)} tensors, {size} bytes, "
          f"CRC32 {crc:#010x} (ok)")
    print(f"  {'#':>2}  {'name':<16} {'N':>5} {'K':>5} {'offset':>7} {'words':>7} "
          f"{'gamma':>10} {'m':>6} {'s':>3}  flags")
    for i, e in enumerate(img.tensors):
        flags = "|".join(f.name for f in (Flag.RELU, Flag.RAW) if e.flags & f) or "-"
        print(f"  {i:>2}  {e.name:<16} {e.n:>5} {e.k:>5} {e.offset:>7} {e.count:>7} "
              f"{e.gamma:>10.6g} {e.m:>6} {e.s:>3}  {flags}")
    return 0


# ----------------------------------------------------------------------------- parser

class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are the CLI's one line ``ternac: error: ...`` (exit
    code 2), not argparse's usage block; its subparsers are of this class too."""

    def error(self, message: str):
        cmd = self.prog.removeprefix("ternac").strip()
        where = f" (see ternac {cmd} --help)" if cmd else " (see ternac --help)"
        message = " ".join(message.split())
        # A type of ternac.cliargs names its option itself ("--lanes must be ..."): drop
        # argparse's "argument --lanes: " before it.
        head, sep, rest = message.partition(": ")
        if sep and head.startswith("argument ") and any(
                rest.startswith(name + " ") for name in head.split()[1].split("/")):
            message = rest
        self.exit(2, f"ternac: error: {message}{where}\n")


#: Seeds of the torch recipes: torch.manual_seed takes up to 64 bits, but its CPU generator
#: (mt19937) keeps only the low 32 (measured, torch 2.13: seeds 0, 2^32 and 2^63 draw the
#: same numbers) and a negative seed is mapped onto 2^64 + seed; so 0 .. 2^32 - 1 are the
#: seeds that train distinct models.
SEED_MAX = (1 << 32) - 1


#: A training seed: an integer from 0 to 2^32 - 1 (each gives its own run).
_seed = whole("--seed", 0, SEED_MAX, why="2^32 - 1: torch's CPU generator keeps 32 bits of "
                                         "a seed, so any other seed would repeat one of these")
#: Caps on training length (a typo such as --epochs 10000000 would run for days): about
#: 25 and 170 times the ViT's and the digits' recipes (golden.vit / golden.mlp
#: DEFAULT_EPOCHS: 400 and 60), about 100 times the LM's (golden.lm.DEFAULT_STEPS: 9444).
EPOCHS_MAX = 10_000
STEPS_MAX = 1_000_000
_epochs = whole("--epochs", 1, EPOCHS_MAX, why="the recipes train 60 epochs for digits and "
                                               "400 for vit-digits")
_steps = whole("--steps", 1, STEPS_MAX, why="the shakespeare recipe trains 9444 steps")


#: Path arguments that an empty string must not silently turn into their default.
PATH_ARGS = ("checkpoint", "image", "text", "out", "json", "build_dir", "bitstream", "waves",
             "path")


def _rel(path) -> str:
    """``path`` relative to the working folder (as a user would type it)."""
    return os.path.relpath(str(path))


def when_left_out(name: str, args) -> str:
    """What leaving the path option ``--name`` out does in the command of ``args``, as the
    end of a sentence: its default named (``for the committed checkpoint
    checkpoints/digits.safetensors``), or what happens without it (``to write no JSON
    report``), or that the command needs it."""
    cmd = getattr(args, "command", None)
    model = getattr(args, "model", None) or "digits"
    if cmd in ("generate", "bench"):
        model = "shakespeare"
    elif cmd == "verilog":
        model = "digits"
    board, lanes = getattr(args, "board", None), getattr(args, "lanes", None)
    if name == "checkpoint":
        return (f"leave the option out for the committed checkpoint "
                f"{_rel(_model_inputs(model, None)[0][1])}")
    if name == "image":
        return "leave the option out to run the checkpoint's own weights"
    if name == "text":
        from ternac.golden.shakespeare_data import DEFAULT_TEXT
        return f"leave the option out for the corpus {_rel(DEFAULT_TEXT)}"
    if name == "json":
        return "leave the option out to write no JSON report"
    if name == "waves":
        return "leave the option out to record no waveform"
    if name == "bitstream":
        from ternac.boards.program import default_bitstream
        return f"leave the option out for {_rel(default_bitstream(board, lanes or 8))}"
    if name == "out":
        if cmd == "train":
            return f"leave the option out for {TRAIN_OUT[model]}"
        if cmd == "bench":
            return "leave the option out for build/bench"
        if cmd == "sweep":
            return f"leave the option out for build/sweep/{board}-{model}"
        return "the command needs it: give the folder to write into"
    if name == "build_dir":
        if cmd == "build":
            target = getattr(args, "target", None) or []
            if len(target) == 2:
                return (f"leave the option out for build/units/{target[1]}-"
                        f"{getattr(args, 'device', 'up5k')}-L{lanes}")
            return ("leave the option out for build/" + (f"{board}-L{lanes}" if model == "digits"
                    else f"{board}-{model}" + ("" if lanes == 32 else f"-L{lanes}")))
        if cmd == "report":
            return "leave the option out for the board build's own folder under build/"
        return "leave the option out for the shared Verilator builds in build/sim"
    return "leave the option out for its default (see --help)"


def check_paths(args) -> None:
    """Refuse a path argument given as an empty string (``--checkpoint ""`` would otherwise
    run the default checkpoint), and a ``--build-dir`` that is a file or cannot be made.
    The message says what leaving the option out does (:func:`when_left_out`). Raises
    InputError."""
    for name in PATH_ARGS:
        v = getattr(args, name, None)
        if isinstance(v, str) and not v.strip():
            if name == "path":
                raise InputError("the path is empty; give the path of a file")
            hint = when_left_out(name, args)
            raise InputError(f"the --{name.replace('_', '-')} path is empty; "
                             + (f"give a path or {hint}" if hint.startswith("leave") else hint))
    if getattr(args, "build_dir", None):
        # Every command's build root (Verilator builds, bitstreams): a folder, or one that
        # can be made, checked before the Verilog is generated.
        check_output_dir(args.build_dir, "build folder")


def _memory_args(p: argparse.ArgumentParser) -> None:
    # AccelConfig takes depths from 1 to 2^20 words.
    p.add_argument("--weight-depth", type=whole("--weight-depth", 1, 1 << 20), default=None,
                   metavar="W", help="weight memory depth in words (default: AccelConfig's, "
                                     "4096)")
    p.add_argument("--scratch-depth", type=whole("--scratch-depth", 1, 1 << 20), default=None,
                   metavar="D",
                   help="scratchpad depth in 16-bit words (default: AccelConfig's, 1024)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ternac", description="Generate, verify and run FPGA accelerators for ternary "
                                   "(1.58-bit) neural networks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a demo model and write its checkpoint")
    p.add_argument("model", choices=MODELS + ("shakespeare",))
    p.add_argument("--text", default=None,
                   help="shakespeare: the corpus (default ../shared/data/tinyshakespeare.txt)")
    p.add_argument("--steps", type=_steps, default=None,
                   help=f"shakespeare: optimizer steps, 1 to {STEPS_MAX} (default: those of the "
                        f"committed checkpoint, 9444)")
    p.add_argument("--device", default=None,
                   help="shakespeare: torch device (cpu or cuda; default cpu)")
    p.add_argument("--seed", type=_seed, default=0, help="seed, 0 to 2^32 - 1 (default 0)")
    p.add_argument("--epochs", type=_epochs, default=None,
                   help=f"training epochs, 1 to {EPOCHS_MAX} (default: those of the committed "
                        f"checkpoint: 60 digits, 400 vit-digits)")
    p.add_argument("--out", default=None,
                   help="checkpoint to write (default: build/<model>.safetensors; the "
                        "committed checkpoints/ are written only with --force)")
    p.add_argument("--force", action="store_true",
                   help="write over a committed checkpoint in checkpoints/")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("run", help="run the test split on a backend and compare with golden")
    p.add_argument("model", choices=MODELS)
    p.add_argument("--backend", choices=BACKENDS, required=True)
    p.add_argument("--lanes", type=_lanes, default=None,
                   help="lanes L (default 8, or the weight image's)")
    p.add_argument("--checkpoint", default=None, help="safetensors checkpoint (default: "
                                                      "checkpoints/digits.safetensors)")
    p.add_argument("--image", default=None,
                   help="run this weight image (ternac compile) instead of the checkpoint's "
                        "weights; the checkpoint stays the golden reference")
    p.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON")
    p.add_argument("--limit", type=whole("--limit", 1), default=None, metavar="N",
                   help="only the first N test images")
    p.add_argument("--build-dir", default=None,
                   help="root of the Verilator builds (default: sim.runner's, shared with the "
                        "tests; builds are cached by a hash of the Verilog)")
    _memory_args(p)
    from ternac.lm_cli import add_board_args
    add_board_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("compile", help="compile a model to a weight image and a program")
    p.add_argument("model", choices=COMPILE_MODELS)
    p.add_argument("--lanes", type=_lanes, default=None,
                   help="lanes (default 8 for digits, 32 for shakespeare; shakespeare at 40 "
                        "lanes is T3 and at 128 the ULX3S configuration, as ternac build)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--text", default=None, metavar="PATH",
                   help="shakespeare: the corpus its integer model is calibrated on (default "
                        "../shared/data/tinyshakespeare.txt; must be the one it was trained on)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write the compile report with the cycle model's prediction")
    _memory_args(p)
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("verilog", help="write Verilog for the top and each unit")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--lanes", type=_lanes, default=8, help="lanes L (default 8)")
    p.add_argument("--checkpoint", default=None)
    _memory_args(p)
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("bench", help="benchmarks")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bsub.add_parser("numerics", help="error of the integer units against float")
    b.add_argument("--json", default=None, metavar="FILE")
    b.set_defaults(func=_cmd_bench)
    from ternac.bench import add_bench_lm_parser
    add_bench_lm_parser(bsub)

    from ternac.boards_cli import add_build_parser, add_program_parser
    add_build_parser(sub)
    add_program_parser(sub)
    from ternac.lm_cli import add_lm_parsers
    add_lm_parsers(sub)
    from ternac.sweep import add_sweep_parser
    add_sweep_parser(sub)
    from ternac.report import add_report_parser
    add_report_parser(sub)
    from ternac.simcli import add_sim_parser
    add_sim_parser(sub)

    p = sub.add_parser("image", help="inspect weight images")
    isub = p.add_subparsers(dest="image_cmd", required=True, metavar="ACTION")
    i = isub.add_parser("info", help="check a weight image and print its header and tensors")
    i.add_argument("path")
    i.set_defaults(func=_cmd_image_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ternac`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stderr is None or not sys.stderr.isatty():
        # A log, not a terminal: tqdm's bars (TQDM_* variables are its defaults) redraw at
        # most every 30 s, so a captured log holds a few frames a bar, not hundreds.
        os.environ.setdefault("TQDM_MININTERVAL", "30")
    try:
        check_paths(args)
    except InputError as exc:
        print(f"ternac: error: {one_line(exc)}", file=sys.stderr)
        return 2
    if getattr(args, "command", None) == "train":
        args.epochs_given = args.epochs is not None
        if args.epochs is None:
            from ternac.golden.mlp import DEFAULT_EPOCHS
            args.epochs = DEFAULT_EPOCHS
    from ternac.hw.unused import forget_unused_design
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"ternac: error: {one_line(exc)}", file=sys.stderr)
        forget_unused_design(exc)   # the design the error stopped: no UnusedElaboratable
        return 2
    except BrokenPipeError:
        # The reader of stdout went away (``ternac image info F | head``): as other Unix
        # tools, stop without a message; stdout goes to devnull so the interpreter's own
        # flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        # A path that cannot be written or read, a full disk (checked up front where the
        # command knows its paths; this is the net for the rest): one sentence, no
        # traceback, and the staged writers have left the old output as it was.
        if getattr(exc, "filename", None) is None:   # e.g. stdout on a full disk
            what = (exc.strerror or str(exc) or type(exc).__name__).lower()
            print(f"ternac: error: reading or writing failed: {what}", file=sys.stderr)
        else:
            print(f"ternac: error: cannot use {one_line(exc)}", file=sys.stderr)
        forget_unused_design(exc)
        return 2
    except RTLFailed as exc:
        print(f"ternac: error: the RTL simulation failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ternac: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
