"""I2 and T3 trit packing (golden/packing.py) against the DESIGN's bit layout.

Hypothesis runs derandomized (fixed seed from the test's name), so CI is deterministic.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ternac.golden.packing import (I2_CODE, pack_i2, pack_i2_word, pack_t3, tile_lanes, unpack_i2,
                            unpack_i2_word, unpack_t3)

PROPS = settings(derandomize=True, max_examples=150, deadline=None)

trit_lists = st.lists(st.sampled_from([-1, 0, 1]), min_size=0, max_size=200)


def as_trits(ts: list[int]) -> torch.Tensor:
    return torch.tensor(ts, dtype=torch.int8)


# --- I2 ---------------------------------------------------------------------------------

def test_i2_codes_are_the_designs():
    # 00 = 0, 01 = +1, 11 = -1; bit 0 = nonzero, bit 1 = negate
    assert I2_CODE == {0: 0b00, 1: 0b01, -1: 0b11}
    for t, code in I2_CODE.items():
        assert (code & 1) == (t != 0) and (code >> 1) == (t < 0)


def test_pack_i2_word_bit_positions():
    # trit j sits at bits [2j+1:2j]
    assert pack_i2_word([1]) == 0b01
    assert pack_i2_word([-1]) == 0b11
    assert pack_i2_word([0, 1]) == 0b01_00
    assert pack_i2_word([0, 0, -1]) == 0b11_00_00
    assert pack_i2_word([1, -1, 0, 1]) == 0b01_00_11_01
    for j in range(32):
        trits = [0] * 32
        trits[j] = -1
        assert pack_i2_word(trits) == 0b11 << (2 * j)
        trits[j] = 1
        assert pack_i2_word(trits) == 1 << (2 * j)


@given(st.lists(st.sampled_from([-1, 0, 1]), min_size=1, max_size=64))
@PROPS
def test_i2_word_round_trip_and_fields(ts):
    w = pack_i2_word(ts)
    assert 0 <= w < 1 << (2 * len(ts))
    assert unpack_i2_word(w, len(ts)) == ts
    for j, t in enumerate(ts):
        assert (w >> (2 * j)) & 1 == (t != 0)      # nonzero wire
        assert (w >> (2 * j + 1)) & 1 == (t == -1)  # negate wire


def test_pack_i2_word_rejects_non_trit():
    with pytest.raises(ValueError, match="position 1 is not a trit"):
        pack_i2_word([0, 2, 1])


def test_unpack_i2_word_rejects_code_10():
    with pytest.raises(ValueError, match="invalid I2 code 0b10 at trit 2"):
        unpack_i2_word(0b10_01_11, 3)


@given(trit_lists)
@PROPS
def test_i2_round_trip(ts):
    t = as_trits(ts)
    data = pack_i2(t)
    assert len(data) == (len(ts) + 3) // 4
    assert unpack_i2(data, len(ts)).tolist() == ts


def test_i2_bytes_little_endian_and_padding():
    # trits 0..3 in byte 0 (trit 0 in bits [1:0]); trit 4 in byte 1, padded with zero trits
    data = pack_i2(as_trits([1, -1, 0, 1, -1]))
    assert data == bytes([0b01_00_11_01, 0b00_00_00_11])
    # the byte stream equals the little-endian bytes of the whole word
    ts = [1, -1, 0, 1, -1, -1, 1, 0]
    assert pack_i2(as_trits(ts)) == pack_i2_word(ts).to_bytes(2, "little")


def test_unpack_i2_rejects_code_10_and_short_data():
    with pytest.raises(ValueError, match="invalid I2 code 0b10 at trit 5"):
        unpack_i2(bytes([0x00, 0b0000_1000]), 8)
    with pytest.raises(ValueError, match="fewer than"):
        unpack_i2(bytes([0]), 5)


def test_pack_i2_rejects_non_ternary():
    with pytest.raises(ValueError, match="not ternary"):
        pack_i2(torch.tensor([0, 1, 2]))


# --- T3 ---------------------------------------------------------------------------------

@given(trit_lists)
@PROPS
def test_t3_round_trip(ts):
    t = as_trits(ts)
    data = pack_t3(t)
    assert len(data) == (len(ts) + 4) // 5
    assert all(b <= 242 for b in data)
    assert unpack_t3(data, len(ts)).tolist() == ts


def test_t3_value_and_padding():
    # value = sum (t_i + 1) * 3^i; padding trits are 0 (digit 1)
    assert pack_t3(as_trits([-1, -1, -1, -1, -1])) == bytes([0])
    assert pack_t3(as_trits([1, 1, 1, 1, 1])) == bytes([242])
    assert pack_t3(as_trits([1, 0, -1, 1, 0])) == bytes([2 + 3 + 0 + 54 + 81])
    assert pack_t3(as_trits([1])) == bytes([2 + 3 + 9 + 27 + 81])


def test_t3_every_byte_value_decodes():
    data = bytes(range(243))
    t = unpack_t3(data, 243 * 5).view(243, 5).to(torch.int64) + 1
    values = (t * torch.tensor([1, 3, 9, 27, 81])).sum(dim=1)
    assert values.tolist() == list(range(243))


@pytest.mark.parametrize("bad", [243, 250, 255])
def test_t3_rejects_byte_over_242(bad):
    with pytest.raises(ValueError, match=f"invalid T3 byte {bad} at byte 1"):
        unpack_t3(bytes([0, bad]), 10)


def test_t3_rejects_short_data():
    with pytest.raises(ValueError, match="fewer than"):
        unpack_t3(bytes([0]), 6)


# --- lane tiling ------------------------------------------------------------------------

def direct_tiles(t: list[list[int]], lanes: int) -> list[int]:
    """Word jt*K + i holds t[jt*lanes + l][i] for l < lanes at bits [2l+1:2l] (zero-padded rows)."""
    n, k = len(t), len(t[0])
    tiles = -(-n // lanes)
    words = []
    for jt in range(tiles):
        for i in range(k):
            w = 0
            for l in range(lanes):
                j = jt * lanes + l
                trit = t[j][i] if j < n else 0
                w |= {0: 0b00, 1: 0b01, -1: 0b11}[trit] << (2 * l)
            words.append(w)
    return words


@given(n=st.integers(1, 20), k=st.integers(1, 12), lanes=st.sampled_from([1, 2, 4, 8, 32]),
       data=st.data())
@PROPS
def test_tile_lanes_matches_direct_construction(n, k, lanes, data):
    ts = data.draw(st.lists(st.lists(st.sampled_from([-1, 0, 1]), min_size=k, max_size=k),
                            min_size=n, max_size=n))
    words = tile_lanes(torch.tensor(ts, dtype=torch.int8), lanes)
    assert len(words) == -(-n // lanes) * k
    assert all(0 <= w < 1 << (2 * lanes) for w in words)
    assert words == direct_tiles(ts, lanes)
    # each word decodes back to the lane column it feeds
    for jt in range(-(-n // lanes)):
        for i in range(k):
            col = unpack_i2_word(words[jt * k + i], lanes)
            want = [ts[jt * lanes + l][i] if jt * lanes + l < n else 0 for l in range(lanes)]
            assert col == want


def test_tile_lanes_small_example_and_padding():
    t = torch.tensor([[1, 0], [-1, 1], [0, -1]], dtype=torch.int8)  # N=3, K=2
    # lanes=2: tile 0 = rows 0,1; tile 1 = row 2 and a zero pad row
    assert tile_lanes(t, 2) == [0b11_01, 0b01_00, 0b00_00, 0b00_11]


def test_tile_lanes_rejects_non_ternary():
    with pytest.raises(ValueError, match="not ternary"):
        tile_lanes(torch.tensor([[0, 3]]), 4)
