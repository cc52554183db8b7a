"""Argument types and the error path shared by the ``ternac`` command lines.

* :func:`whole` and :func:`number` -- argparse ``type=`` factories for integer and real
  options, with a checked range: a bad value is one sentence naming the option and the
  range (``--tokens must be a whole number from 1 to 10000, not 'many'``), not argparse's
  ``argument --tokens: invalid int value: 'many'``; also :data:`lanes` and :data:`baud`,
  the type of every ``--lanes`` and ``--baud``; :func:`whole_list` and :func:`number_list`
  for a comma-separated list of them (``--cpu-batches 1,64``). :func:`range_message` is that sentence, for the
  checks an API makes of the same option (one wording for both). :func:`usable_cpus`: the
  CPUs this process may run on (the cap of the CPU-count options).
* :func:`drop_argument_prefix` -- an argparse error of such a type as the type's sentence
  (for a parser's ``error``: ternac.cli.Parser's rule, and ``python -m ternac.baselines``).

Standard library only (tests/test_layering.py ranks it with the compiler layer), so the
developer entry points of sim/ and boards/ (``python -m ternac.sim.faults``, ...) parse
their options with the same types. The error path's clean-up of Amaranth components is
:func:`ternac.hw.unused.forget_unused_design`.

The CLI's parser (:class:`ternac.cli.Parser`) prints a type's message as ``ternac: error:
<message> (see ternac CMD --help)``, exit code 2.
"""
from __future__ import annotations

import argparse
import math
import os

__all__ = ["whole", "whole_list", "number_list", "usable_cpus", "number", "range_message",
           "drop_argument_prefix", "BAUD_MIN", "BAUD_MAX",
           "baud", "check_baud", "lanes"]


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _range_text(lo, hi, above: bool = False, below: bool = False) -> str:
    if lo is not None and hi is not None:
        if below:
            return (f"above {_num(lo)} and below {_num(hi)}" if above
                    else f"from {_num(lo)} up to (not including) {_num(hi)}")
        return (f"above {_num(lo)} and at most {_num(hi)}" if above
                else f"from {_num(lo)} to {_num(hi)}")
    if lo is not None:
        return f"above {_num(lo)}" if above else f"of at least {_num(lo)}"
    return f"below {_num(hi)}" if below else f"of at most {_num(hi)}"


def range_message(option: str, value, lo=None, hi=None, *, noun: str = "a whole number",
                  why: str = "", above: bool = False, below: bool = False) -> str:
    """The sentence for ``value`` of ``option`` outside ``lo .. hi`` (inclusive; None: no
    bound; ``above``: strictly above ``lo``; ``below``: strictly below ``hi``) or not a
    number: ``"--epochs must be a whole number from 1 to 10000 (why), not '1e9'"``.
    ``value`` is quoted as typed (a string) or as given (a number)."""
    bounds = "" if lo is None and hi is None else " " + _range_text(lo, hi, above, below)
    return (f"{option} must be {noun}{bounds}" + (f" ({why})" if why else "")
            + f", not {value!r}")


def whole(option: str, lo: int | None = 1, hi: int | None = None, *, why: str = ""):
    """An argparse ``type=`` for an integer option: the text as an ``int`` in
    ``lo .. hi`` (inclusive; None: unbounded). Anything else (not an integer, ``1e3``,
    ``0x10``, out of range) raises ``argparse.ArgumentTypeError`` with
    :func:`range_message`'s sentence."""
    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(range_message(option, text, lo, hi, why=why)) \
                from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(range_message(option, text, lo, hi, why=why))
        return v
    parse.__name__ = "whole number"         # what argparse would name the type
    return parse


def _list_of(item, message):
    # item: the type of one element; message(text): the sentence for a bad list.
    def parse(text: str) -> tuple:
        out = []
        try:
            for t in str(text).split(","):
                v = item(t.strip())
                if v not in out:
                    out.append(v)
        except argparse.ArgumentTypeError:
            out = []
        if not out:
            raise argparse.ArgumentTypeError(message(text))
        return tuple(out)
    return parse


def whole_list(option: str, lo: int | None = 1, hi: int | None = None, *, why: str = ""):
    """An argparse ``type=`` for a comma-separated list of integers (``"1,64"``): a tuple
    of ints, each in ``lo .. hi`` as :func:`whole` takes them, in the order given, repeats
    dropped. An empty list or any item :func:`whole` refuses raises
    ``argparse.ArgumentTypeError``: ``"--cpu-batches must be comma-separated whole numbers
    from 1 to 65536, not '1,x'"`` (the text as typed)."""
    parse = _list_of(whole(option, lo, hi), lambda text: range_message(
        option, text, lo, hi, noun="comma-separated whole numbers", why=why))
    parse.__name__ = "list of whole numbers"
    return parse


def number_list(option: str, lo: float | None = None, hi: float | None = None, *,
                noun: str = "numbers", why: str = "", above: bool = False):
    """An argparse ``type=`` for a comma-separated list of reals (``"12,24.5"``): a tuple of
    floats, each as :func:`number` takes it, in the order given, repeats dropped; else
    ``argparse.ArgumentTypeError``: ``"--freq must be comma-separated clocks in MHz from 1
    to 1000, not '12,1e9'"`` (``noun``: what the items are, plural)."""
    parse = _list_of(number(option, lo, hi, above=above), lambda text: range_message(
        option, text, lo, hi, noun="comma-separated " + noun, why=why, above=above))
    parse.__name__ = "list of numbers"
    return parse


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where the
    platform has none), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def number(option: str, lo: float | None = None, hi: float | None = None, *,
           noun: str = "a number", why: str = "", above: bool = False, below: bool = False):
    """An argparse ``type=`` for a real option: the text as a finite ``float`` in
    ``lo .. hi`` (inclusive; with ``above``, strictly above ``lo``; with ``below``, strictly
    below ``hi``). ``nan``, ``inf``, a word or a value out of range raises
    ``argparse.ArgumentTypeError`` with :func:`range_message`'s sentence (``noun`` names
    the quantity: ``"a clock in MHz"``)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except (TypeError, ValueError):
            v = math.nan
        bad = (not math.isfinite(v) or (lo is not None and (v <= lo if above else v < lo))
               or (hi is not None and (v >= hi if below else v > hi)))
        if bad:
            raise argparse.ArgumentTypeError(range_message(option, text, lo, hi, noun=noun,
                                                           why=why, above=above, below=below))
        return v
    parse.__name__ = "number"
    return parse


#: The ``type=`` of every ``--lanes`` option: a whole number here; the lane counts a model
#: takes are ternac.config.AccelConfig's check (its message names them).
LANES_WHY = "a multiple of 4 from 4 to 128; T3 weights: of 5 from 5 to 80"
lanes = whole("--lanes", None, None, why=LANES_WHY)

#: Host-link baud rates a command takes (``build --baud``, ``run``/``generate --backend
#: board --baud``): from the slowest standard rate to the fastest of the boards' USB UARTs
#: (the iCEBreaker's FTDI FT2232H: 12 Mbaud; the ULX3S's FT231X: 3 Mbaud). A board build
#: also needs its clock to give a UART divisor of at least 4 (ternac.hw.uart.uart_divisor).
BAUD_MIN, BAUD_MAX = 300, 12_000_000
_BAUD_WHY = "bit/s; the boards' USB UARTs run up to 12 Mbaud"
#: The ``type=`` of every ``--baud`` option.
baud = whole("--baud", BAUD_MIN, BAUD_MAX, why=_BAUD_WHY)


def check_baud(value) -> int:
    """``value`` as a host-link baud rate (an int from BAUD_MIN to BAUD_MAX), for callers
    that did not parse it with :data:`baud`. Raises ValueError with the same sentence."""
    if isinstance(value, bool) or not isinstance(value, int) or not BAUD_MIN <= value <= BAUD_MAX:
        raise ValueError(range_message("--baud", value, BAUD_MIN, BAUD_MAX, why=_BAUD_WHY))
    return value


def drop_argument_prefix(message: str) -> str:
    """An argparse error ``message`` on one line, without argparse's ``argument --x: ``
    before a message that names its option itself (this module's types: ``argument
    --warmup: --warmup must be ...`` is ``--warmup must be ...``)."""
    message = " ".join(message.split())
    head, sep, rest = message.partition(": ")
    if sep and head.startswith("argument ") and any(
            rest.startswith(name + " ") for name in head.split()[1].split("/")):
        return rest
    return message
