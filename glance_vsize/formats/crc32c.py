#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.


"""CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), RFC 3720 B.4.

The checksum of VHDX headers, region tables and metadata ([MS-VHDX] 2.2),
computed as qemu's util/crc32c.c does: table-driven over the bytes up to
the trailing zeros, then the trailing zeros (most of a 4 KiB header or a
64 KiB region table) in O(log n) steps with precomputed "n zero bytes"
operators, so that pure Python stays well under a millisecond per image.
"""

UINT32 = (1 << 32) - 1
CRC32C_POLY = 0x82F63B78


def _crc_byte(crc: int) -> int:
    for _ in range(8):
        crc = (crc >> 1) ^ (CRC32C_POLY if crc & 1 else 0)
    return crc


_CRC_TABLE = [_crc_byte(byte) for byte in range(256)]


def _apply(operator: list[int], crc: int) -> int:
    """Apply a linear operator (the images of the 32 unit vectors)."""
    result = 0
    for image in operator:
        if crc & 1:
            result ^= image
        crc >>= 1
    return result


#: _ZEROS[k]: the operator that feeds 2**k zero bytes to the register.
_ZEROS = [[_CRC_TABLE[1 << i & 0xff] ^ (1 << i) >> 8 for i in range(32)]]


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (initial value and final XOR 0xFFFFFFFF)."""
    body = data.rstrip(b'\0')
    crc = UINT32
    table = _CRC_TABLE
    for byte in body:
        crc = table[(crc ^ byte) & 0xff] ^ (crc >> 8)
    zeros, level = len(data) - len(body), 0
    while zeros:
        if len(_ZEROS) == level:
            _ZEROS.append([_apply(_ZEROS[-1], i) for i in _ZEROS[-1]])
        if zeros & 1:
            crc = _apply(_ZEROS[level], crc)
        zeros >>= 1
        level += 1
    return crc ^ UINT32
