"""The dataset contract of the ``shakespeare`` language model: corpus, vocabulary, split.

Corpus
------
``tinyshakespeare.txt`` (karpathy/char-rnn ``data/tinyshakespeare/input.txt``): 1,115,394
bytes of plain ASCII text, 65 distinct characters. It is never committed to this
repository; it is read from ``<repo>/../shared/data/tinyshakespeare.txt`` unless a path is
given (``ternac train shakespeare --text PATH``).

Vocabulary
----------
Character level: the sorted set of the corpus's characters (65 symbols, ``"\\n"`` first,
then ``" !$&',-.3:;?"``, ``A-Z``, ``a-z``). Token id = index in that sorted string.

Split
-----
The first 90% of the characters (``n_train = int(0.9 * len(text))`` = 1,003,854) train, the
last 10% (111,540) validate. Every validation bits-per-character ternac reports for this
model is on that last 10%.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch

__all__ = ["DEFAULT_TEXT", "TRAIN_FRACTION", "CORPUS_SHA256", "SPLIT_DESCRIPTION", "Vocab",
           "read_text", "build_vocab", "load_corpus", "Corpus"]

#: Where the corpus is read from by default: ``<repo>/../shared/data/tinyshakespeare.txt``.
DEFAULT_TEXT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tinyshakespeare.txt"
#: Fraction of the characters (from the start) that train; the rest validate.
TRAIN_FRACTION = 0.9
#: sha256 of the tinyshakespeare corpus the committed checkpoint was trained on.
CORPUS_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

SPLIT_DESCRIPTION = ("tinyshakespeare.txt (karpathy/char-rnn), character level, vocabulary = "
                     "sorted set of the corpus's characters; first 90% "
                     "(int(0.9 * len(text)) characters) train, last 10% validation")


@dataclasses.dataclass(frozen=True)
class Vocab:
    """A character vocabulary: ``chars[i]`` is the symbol of token id ``i``.

    Methods raise ``ValueError`` for a character (encode) or an id (decode) outside it.
    """
    chars: str

    def __post_init__(self):
        if not self.chars or len(set(self.chars)) != len(self.chars):
            raise ValueError(f"a vocabulary needs distinct characters, not {self.chars!r}")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """``text`` -> (len(text),) int64 token ids."""
        idx = self._index  # type: ignore[attr-defined]
        missing = set(text) - idx.keys()
        if missing:
            raise ValueError(f"character {min(missing)!r} is not in the vocabulary "
                             f"({len(self.chars)} symbols)")
        if text.isascii() and self.chars.isascii():
            # One table lookup over the bytes: ~100x faster than a dict a character.
            lut = torch.zeros(128, dtype=torch.int64)
            lut[torch.tensor([ord(c) for c in self.chars])] = torch.arange(len(self.chars))
            return lut[torch.frombuffer(bytearray(text.encode("ascii")), dtype=torch.uint8).long()]
        return torch.tensor([idx[c] for c in text], dtype=torch.int64)

    def decode(self, ids) -> str:
        """Token ids (any integer sequence or tensor) -> text."""
        out = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            if not 0 <= int(i) < len(self.chars):
                raise ValueError(f"token id {int(i)!r} is outside the vocabulary [0, {len(self.chars)})")
            out.append(self.chars[int(i)])
        return "".join(out)


def read_text(path: str | Path | None = None) -> str:
    """Read the corpus (default :data:`DEFAULT_TEXT`) as text.

    Raises
    ------
    ValueError, one sentence naming the path, if it does not exist, is not a file, is not
    UTF-8 text or is empty.
    """
    p = Path(DEFAULT_TEXT if path is None else path)
    if not p.is_file():
        raise ValueError(f"corpus {str(p)!r} does not exist or is not a file (pass --text PATH; "
                         f"the default is {str(DEFAULT_TEXT)!r})")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"corpus {str(p)!r} is not UTF-8 text: {e}") from None
    if len(text) < 2:
        raise ValueError(f"corpus {str(p)!r} is empty")
    return text


def build_vocab(text: str) -> Vocab:
    """The sorted set of ``text``'s characters (65 for tinyshakespeare)."""
    return Vocab("".join(sorted(set(text))))


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The encoded split. train, val: (N,) int64 token ids; vocab; sha256 of the text."""
    train: torch.Tensor
    val: torch.Tensor
    vocab: Vocab
    sha256: str
    source: str


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Read, encode and split the corpus (see the module docstring).

    Returns
    -------
    :class:`Corpus`: ``train`` (first ``int(0.9 * len(text))`` ids), ``val`` (the rest).

    Raises
    ------
    ValueError as :func:`read_text`.
    """
    text = read_text(path)
    vocab = build_vocab(text)
    ids = vocab.encode(text)
    n_train = int(TRAIN_FRACTION * len(text))
    return Corpus(train=ids[:n_train], val=ids[n_train:], vocab=vocab,
                  sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                  source=str(DEFAULT_TEXT if path is None else path))
