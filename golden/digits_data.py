"""The dataset contract of the ``digits`` demo model: which images, which split, which input.

Data
----
``sklearn.datasets.load_digits``: 1,797 grey-scale 8x8 images of the digits 0-9 (the UCI
"Optical Recognition of Handwritten Digits" test set, bundled with scikit-learn, so nothing
is downloaded). Each image is flattened row-major to 64 features; a pixel is an integer
count 0..16.

Split
-----
``sklearn.model_selection.train_test_split(x, y, test_size=0.2, random_state=0,
stratify=y)``: 1,437 training and 360 test images, every class in the same proportion in
both. The split is fixed; every accuracy ternac reports for ``digits`` is on these 360 test
images.

Input quantization (the accelerator's input)
--------------------------------------------
The accelerator takes int8 activations (:mod:`golden.numerics`). A pixel ``p`` in 0..16 is
quantized with ``golden.numerics.quantize_act(p, INPUT_SCALE)``, ``INPUT_SCALE = 16/127``,
so 0..16 maps onto 0..127 (``round(p * 127 / 16)``). The float model is fed the dequantized
pixels ``q * INPUT_SCALE`` (:func:`dequantize_pixels`), so the float model, the integer
golden model and the RTL all see the same input.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .numerics import ACT_MAX, quantize_act

__all__ = ["PIXEL_MAX", "INPUT_SCALE", "N_FEATURES", "N_CLASSES", "N_TRAIN", "N_TEST",
           "SPLIT_DESCRIPTION", "load_split", "quantize_pixels", "dequantize_pixels"]

#: Largest pixel value of ``load_digits`` (pixels are integer counts 0..16).
PIXEL_MAX = 16
#: Real value of one LSB of the int8 input: 16/127, so pixels 0..16 map onto 0..127.
INPUT_SCALE = PIXEL_MAX / ACT_MAX
#: Features an image (8x8, flattened row-major) and classes (digits 0-9).
N_FEATURES = 64
N_CLASSES = 10
#: Sizes of the fixed split.
N_TRAIN = 1437
N_TEST = 360

SPLIT_DESCRIPTION = ("sklearn.datasets.load_digits (1797 8x8 images, pixels 0..16, flattened "
                     "row-major to 64 features); sklearn.model_selection.train_test_split("
                     "test_size=0.2, random_state=0, stratify=y): 1437 train / 360 test")


@functools.lru_cache(maxsize=1)
def _split_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Imported here so that importing golden does not pay for scikit-learn.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    for a in (x_tr, x_te, y_tr, y_te):
        a.setflags(write=False)
    return x_tr, y_tr, x_te, y_te


def load_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the fixed digits split ``(x_train, y_train, x_test, y_test)``.

    Returns
    -------
    x_train : (1437, 64) float32, pixel values 0..16
    y_train : (1437,) int64, class 0..9
    x_test : (360, 64) float32, pixel values 0..16
    y_test : (360,) int64, class 0..9

    Fresh tensors on every call (the arrays behind them are cached), so callers may modify
    them. See the module docstring for the exact split.
    """
    return tuple(torch.tensor(a) for a in _split_arrays())  # type: ignore[return-value]


def quantize_pixels(x: torch.Tensor) -> torch.Tensor:
    """Quantize pixels (0..16, any float or integer dtype) to the accelerator's int8 input.

    ``quantize_act(x, INPUT_SCALE)``: ``clamp(round(x * 127 / 16), -127, 127)``, so 0..16
    maps onto 0..127.

    Returns
    -------
    torch.Tensor, int8, same shape, values in [0, 127] for pixels in [0, 16].
    """
    return quantize_act(torch.as_tensor(x), INPUT_SCALE)


def dequantize_pixels(q: torch.Tensor) -> torch.Tensor:
    """The float model's input: ``q * INPUT_SCALE`` as float32 (q from :func:`quantize_pixels`)."""
    return q.to(torch.float32) * INPUT_SCALE
