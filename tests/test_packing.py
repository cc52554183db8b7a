"""I2 and T3 trit packing (golden/packing.py) against the DESIGN's bit layout.

Hypothesis runs derandomized (fixed seed from the test's name), so CI is deterministic.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ternac.golden.packing import (I2_CODE, T3_DECODE, T3_MAX, pack_i2, pack_i2_word, pack_t3,
                                  pack_t3_word, t3_byte_trits, t3_byte_value, t3_decode_rom,
                                  t3_word_bits, t3_word_bytes, t3_word_to_i2, tile_lanes,
                                  tile_lanes_t3, unpack_i2, unpack_i2_word, unpack_t3,
                                  unpack_t3_word)

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


# --- T3 words, the decode table and T3 lane tiling ----------------------------------------

def test_t3_decode_table_is_the_division_decode():
    # entry v: the I2 code (bit 2d = nz, bit 2d+1 = neg) of the digits of v in base 3, minus 1
    assert len(T3_DECODE) == 243 == T3_MAX + 1
    for v in range(243):
        digits = [(v // 3 ** d) % 3 - 1 for d in range(5)]
        assert list(t3_byte_trits(v)) == digits
        assert t3_byte_value(digits) == v
        assert unpack_t3(bytes([v]), 5).tolist() == digits
        e = T3_DECODE[v]
        assert 0 <= e < 1 << 10
        for d, t in enumerate(digits):
            assert (e >> (2 * d)) & 1 == (t != 0)     # nz
            assert (e >> (2 * d + 1)) & 1 == (t < 0)  # neg
        assert e == pack_i2_word(digits)
    assert len(set(T3_DECODE)) == 243


def test_t3_decode_rom_padding():
    rom = t3_decode_rom()
    assert len(rom) == 256 and rom[:243] == list(T3_DECODE) and rom[243:] == [0] * 13
    assert len(t3_decode_rom(512)) == 512
    with pytest.raises(ValueError, match="at least 243 entries"):
        t3_decode_rom(200)


@pytest.mark.parametrize("bad", [-1, 243, 255, 1.0])
def test_t3_byte_trits_rejects(bad):
    with pytest.raises(ValueError, match="invalid T3 byte"):
        t3_byte_trits(bad)


def test_t3_byte_value_rejects():
    with pytest.raises(ValueError, match="holds 5 trits, not 4"):
        t3_byte_value([0, 0, 0, 0])
    with pytest.raises(ValueError, match="position 2 is not a trit"):
        t3_byte_value([0, 0, 2, 0, 0])


@pytest.mark.parametrize("lanes,nbytes", [(5, 1), (20, 4), (40, 8), (80, 16)])
def test_t3_word_size(lanes, nbytes):
    assert t3_word_bytes(lanes) == nbytes and t3_word_bits(lanes) == 8 * nbytes


@pytest.mark.parametrize("lanes", [0, 4, 8, 32, 41, -5])
def test_t3_word_size_rejects(lanes):
    with pytest.raises(ValueError, match="positive multiple of 5"):
        t3_word_bytes(lanes)


def test_t3_word_bit_positions():
    # lane l is digit l % 5 of byte l // 5; byte b at bits [8b+7:8b]
    assert pack_t3_word([-1] * 10) == 0
    assert pack_t3_word([1] * 10) == 242 | 242 << 8
    assert pack_t3_word([0] * 5) == 121
    for l in range(40):
        trits = [-1] * 40
        trits[l] = 0   # digit 1 in position l % 5 of byte l // 5
        assert pack_t3_word(trits) == 3 ** (l % 5) << (8 * (l // 5))
        assert unpack_t3_word(3 ** (l % 5) << (8 * (l // 5)), 40) == trits


@given(st.integers(1, 16).flatmap(
    lambda b: st.lists(st.sampled_from([-1, 0, 1]), min_size=5 * b, max_size=5 * b)))
@PROPS
def test_t3_word_round_trip_and_decoder(ts):
    lanes = len(ts)
    w = pack_t3_word(ts)
    assert 0 <= w < 1 << t3_word_bits(lanes)
    assert all((w >> (8 * b)) & 0xFF <= 242 for b in range(lanes // 5))
    assert unpack_t3_word(w, lanes) == ts
    # the word's bytes are pack_t3 of its lanes
    assert w.to_bytes(lanes // 5, "little") == pack_t3(as_trits(ts))
    # the RTL decoder (table a byte) gives the I2 word of the same trits
    assert t3_word_to_i2(w, lanes) == pack_i2_word(ts)


def test_t3_word_rejects():
    with pytest.raises(ValueError, match="invalid T3 byte 243 at byte 1"):
        unpack_t3_word(243 << 8, 10)
    with pytest.raises(ValueError, match="does not fit 16 bits"):
        unpack_t3_word(1 << 16, 10)
    with pytest.raises(ValueError, match="lanes 5..9: value 2 at position 0 is not a trit"):
        pack_t3_word([0] * 5 + [2] + [0] * 4)
    with pytest.raises(ValueError, match="positive multiple of 5"):
        pack_t3_word([0] * 4)
    # the RTL decodes the 13 invalid bytes to zero trits (the loader rejects them first)
    assert t3_word_to_i2(0xFF << 8 | 242, 10) == pack_i2_word([1] * 5 + [0] * 5)
    with pytest.raises(ValueError, match="does not fit 8 bits"):
        t3_word_to_i2(256, 5)


@given(n=st.integers(1, 50), k=st.integers(1, 9), lanes=st.sampled_from([5, 10, 20, 40]),
       data=st.data())
@PROPS
def test_tile_lanes_t3_matches_direct_construction(n, k, lanes, data):
    ts = data.draw(st.lists(st.lists(st.sampled_from([-1, 0, 1]), min_size=k, max_size=k),
                            min_size=n, max_size=n))
    t = torch.tensor(ts, dtype=torch.int8)
    words = tile_lanes_t3(t, lanes)
    tiles = -(-n // lanes)
    assert len(words) == tiles * k
    for jt in range(tiles):
        for i in range(k):
            col = [ts[jt * lanes + l][i] if jt * lanes + l < n else 0 for l in range(lanes)]
            assert words[jt * k + i] == pack_t3_word(col)
    # decoded through the RTL's table, the T3 tiling is the I2 tiling
    assert [t3_word_to_i2(w, lanes) for w in words] == tile_lanes(t, lanes)


def test_tile_lanes_t3_example_and_padding():
    t = torch.tensor([[1, 0], [-1, 1], [0, -1]], dtype=torch.int8)  # N=3, K=2
    # lanes=5: one tile, rows 3 and 4 are zero pad (digit 1)
    assert tile_lanes_t3(t, 5) == [2 + 0 * 3 + 1 * 9 + 27 + 81, 1 + 2 * 3 + 0 * 9 + 27 + 81]
    # 40 lanes: 64-bit words
    w = tile_lanes_t3(torch.ones(40, 1, dtype=torch.int8), 40)
    assert w == [int.from_bytes(bytes([242] * 8), "little")]


def test_tile_lanes_t3_rejects():
    with pytest.raises(ValueError, match="positive multiple of 5"):
        tile_lanes_t3(torch.zeros(4, 4, dtype=torch.int8), 8)
    with pytest.raises(ValueError, match="not ternary"):
        tile_lanes_t3(torch.tensor([[0, 3]]), 5)
