"""golden.image: the weight image format round-trips and its loader rejects every corruption."""
from __future__ import annotations

import os
import struct
import zlib

import pytest
import torch

from ternac.golden.image import (CRC_BYTES, HEADER_BYTES, HEADER_FMT, MAGIC, TENSOR_BYTES, VERSION,
                          Format, ImageError, TensorEntry, WeightImage, decode_image,
                          encode_image, image_from_layers, read_image, untile_lanes,
                          words_to_trits, write_image)
from ternac.golden.isa import Flag
from ternac.golden.packing import tile_lanes


class _Layer:
    def __init__(self, trits, m=0, s=0, relu=False, raw=False, gamma=1.0):
        self.trits, self.m, self.s, self.relu, self.raw, self.gamma = trits, m, s, relu, raw, gamma


def _trits(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)


def _image(lanes=8):
    layers = [_Layer(_trits(13, 7, 1), m=300, s=14, relu=True, gamma=0.0421),
              _Layer(_trits(5, 13, 2), raw=True, gamma=0.5)]
    return image_from_layers(layers, lanes, names=["hidden", "logits"]), layers


def _tamper(data: bytes, pos: int, value: bytes, fix_crc: bool = True) -> bytes:
    b = bytearray(data)
    b[pos:pos + len(value)] = value
    if fix_crc:
        b[-CRC_BYTES:] = struct.pack("<I", zlib.crc32(bytes(b[:-CRC_BYTES])))
    return bytes(b)


@pytest.mark.parametrize("lanes", [4, 8, 12, 32, 64])
def test_round_trip(tmp_path, lanes):
    img, layers = _image(lanes)
    path = tmp_path / "w.tnac"
    write_image(img, path)
    back = read_image(path)
    assert back == img
    assert back.word_bits == 2 * lanes
    for i, layer in enumerate(layers):
        assert torch.equal(back.trits(i), layer.trits)
    assert back.tensor("hidden").flags == Flag.RELU
    assert back.tensor("logits").flags == Flag.RAW
    assert back.tensor("hidden").m == 300 and back.tensor("hidden").s == 14
    assert back.tensor("hidden").gamma == pytest.approx(0.0421, rel=1e-6)
    size = HEADER_BYTES + 2 * TENSOR_BYTES + len(img.words) * lanes // 4 + CRC_BYTES
    assert os.path.getsize(path) == size


def test_layout_matches_tile_lanes():
    img, layers = _image(8)
    assert img.words == tile_lanes(layers[0].trits, 8) + tile_lanes(layers[1].trits, 8)
    assert img.tensors[1].offset == 2 * 7 and img.tensors[1].count == 1 * 13


def test_header_fields():
    img, _ = _image(8)
    data = encode_image(img)
    magic, version, fmt, lanes, word_bits, n_tensors, n_words, rsvd = struct.unpack_from(
        HEADER_FMT, data)
    assert (magic, version, fmt, lanes, word_bits, n_tensors, n_words, rsvd) == (
        MAGIC, VERSION, 0, 8, 16, 2, len(img.words), 0)
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])


def _boundaries(img):
    """Every field boundary of the header, the tensor table, the payload and the CRC."""
    data = encode_image(img)
    cuts = {0, 4, 6, 7, 8, 10, 12, 16, HEADER_BYTES}
    pos = HEADER_BYTES
    for _ in img.tensors:
        cuts |= {pos + d for d in (32, 36, 40, 44, 48, 52, 56, 57, 58)}
        pos += TENSOR_BYTES
        cuts.add(pos)
    cuts |= {pos + 1, len(data) - CRC_BYTES - 1, len(data) - CRC_BYTES, len(data) - 1}
    return data, sorted(c for c in cuts if c < len(data))


def test_truncation_at_every_boundary():
    img, _ = _image(8)
    data, cuts = _boundaries(img)
    for cut in cuts:
        with pytest.raises(ImageError, match="truncated") as e:
            decode_image(data[:cut], "w.tnac")
        assert "\n" not in str(e.value)


def test_truncated_file(tmp_path):
    img, _ = _image(8)
    path = tmp_path / "w.tnac"
    write_image(img, path)
    data = path.read_bytes()
    path.write_bytes(data[:HEADER_BYTES + 3])
    with pytest.raises(ImageError, match=r"w\.tnac: truncated: 23 bytes, but the header "
                                         r"describes \d+"):
        read_image(path)


def test_trailing_bytes():
    img, _ = _image(8)
    with pytest.raises(ImageError, match="unexpected bytes after the end"):
        decode_image(encode_image(img) + b"\0")


@pytest.mark.parametrize("where", ["payload", "table", "crc"])
def test_flipped_byte_is_a_crc_error(where):
    img, _ = _image(8)
    data = encode_image(img)
    pos = {"payload": len(data) - CRC_BYTES - 3, "table": HEADER_BYTES + 33,
           "crc": len(data) - 1}[where]
    bad = _tamper(data, pos, bytes([data[pos] ^ 0x01]), fix_crc=False)
    got = struct.unpack("<I", bad[-4:])[0]
    exp = zlib.crc32(bad[:-4])
    with pytest.raises(ImageError, match=f"CRC mismatch: the file says {got:#010x} but its "
                                         f"contents give {exp:#010x}"):
        decode_image(bad)


def test_bad_magic():
    img, _ = _image(8)
    with pytest.raises(ImageError, match=r"bad magic b'PK.*', expected b'TNAC'; this is not a ternac weight image"):
        decode_image(_tamper(encode_image(img), 0, b"PK\x03\x04"))


def test_bad_version():
    img, _ = _image(8)
    with pytest.raises(ImageError, match="unsupported version 2; this loader reads version 1"):
        decode_image(_tamper(encode_image(img), 4, struct.pack("<H", 2)))


def test_format_t3_reserved_and_unknown():
    img, _ = _image(8)
    data = encode_image(img)
    with pytest.raises(ImageError, match="format 1 \\(T3\\) is reserved"):
        decode_image(_tamper(data, 6, bytes([Format.T3])))
    with pytest.raises(ImageError, match="unknown payload format 7"):
        decode_image(_tamper(data, 6, bytes([7])))
    with pytest.raises(ImageError, match="reserved"):
        encode_image(WeightImage(lanes=8, tensors=[], words=[], format=Format.T3))


def test_bad_lanes_and_word_bits():
    img, _ = _image(8)
    data = encode_image(img)
    with pytest.raises(ImageError, match="lanes 6 is not a multiple of 4"):
        decode_image(_tamper(data, 7, bytes([6])))
    with pytest.raises(ImageError, match="word_bits 32 does not match 2 \\* lanes = 16"):
        decode_image(_tamper(data, 8, struct.pack("<H", 32)))


def test_table_inconsistencies():
    img, _ = _image(8)
    data = encode_image(img)
    t1 = HEADER_BYTES + TENSOR_BYTES  # second tensor entry
    # word count that does not match the shape
    with pytest.raises(ImageError, match="needs 13 words at 8 lanes, but its table entry says 12"):
        decode_image(_tamper(data, t1 + 44, struct.pack("<I", 12)))
    # offset past the payload
    with pytest.raises(ImageError, match="past the end of the 27-word payload"):
        decode_image(_tamper(data, t1 + 40, struct.pack("<I", 20)))
    # overlapping tensors
    with pytest.raises(ImageError, match="overlap"):
        decode_image(_tamper(data, t1 + 40, struct.pack("<I", 10)))
    # unknown flag bits, shift out of range, nonzero reserved bytes
    with pytest.raises(ImageError, match="unknown flag bits 0x8"):
        decode_image(_tamper(data, t1 + 57, bytes([8])))
    with pytest.raises(ImageError, match="s=64"):
        decode_image(_tamper(data, t1 + 56, bytes([64])))
    with pytest.raises(ImageError, match="reserved bytes"):
        decode_image(_tamper(data, t1 + 60, b"\x01"))


def test_code_0b10_rejected():
    img, _ = _image(8)
    data = encode_image(img)
    # word 3 of the payload, lane 2 (bits 5:4 -> byte 0 of the word, bits 5:4)
    pos = HEADER_BYTES + 2 * TENSOR_BYTES + 3 * 2
    b = (data[pos] & ~0x30) | 0x20
    with pytest.raises(ImageError, match="invalid I2 code 0b10 in weight word 3, lane 2"):
        decode_image(_tamper(data, pos, bytes([b])))
    with pytest.raises(ValueError, match="0b10"):
        words_to_trits([0b10], 4)


def test_nonzero_padding_rejected():
    img, _ = _image(8)  # tensor 0 has 13 rows: rows 13..15 of tile 1 are padding
    data = encode_image(img)
    word = 1 * 7 + 2  # tile 1, column 2
    pos = HEADER_BYTES + 2 * TENSOR_BYTES + word * 2 + 1  # high byte: lanes 4..7
    b = data[pos] | 0b01 << 2 * (6 - 4)  # lane 6 = row 14 -> +1
    with pytest.raises(ImageError, match="padding row 14 \\(the tensor has 13 rows\\)"):
        decode_image(_tamper(data, pos, bytes([b])))


def test_missing_and_directory(tmp_path):
    with pytest.raises(ImageError, match=r"weight image .*nope\.tnac does not exist"):
        read_image(tmp_path / "nope.tnac")
    with pytest.raises(ImageError, match="is a directory"):
        read_image(tmp_path)


def test_write_does_not_clobber_on_error(tmp_path):
    img, _ = _image(8)
    path = tmp_path / "w.tnac"
    write_image(img, path)
    before = path.read_bytes()
    bad = WeightImage(lanes=8, tensors=[TensorEntry("x", 3, 2, 0, 5)], words=[0, 0])
    with pytest.raises(ImageError, match="needs 2 words at 8 lanes, but its table entry says 5"):
        write_image(bad, path)
    worse = WeightImage(lanes=8, tensors=[], words=[1 << 16])
    with pytest.raises(ImageError, match="does not fit 16 bits"):
        write_image(worse, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["w.tnac"]  # no temporary file left behind


def test_untile_is_inverse_of_tile_lanes():
    for lanes in (4, 8, 32):
        for n, k in ((1, 1), (lanes, 3), (lanes + 1, 5), (37, 11)):
            t = _trits(n, k, n * 100 + k)
            assert torch.equal(untile_lanes(tile_lanes(t, lanes), n, k, lanes), t)
