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

"""qcow2 header extensions and encryption, for :mod:`.qcow2`.

Follows qemu's docs/interop/qcow2.txt ("Header extensions", "Bitmaps
extension", "Full disk encryption header pointer", "External data file
name") and the checks of qemu 7.2's block/qcow2.c
``qcow2_read_extensions`` and ``qcow2_update_options_prepare``.
"""

import logging
import struct
from typing import Any
from typing import cast

from glance_vsize.formats import base
from glance_vsize.formats import luks

LOG = logging.getLogger(__name__)

#: A header extension's header: type, length.
QCOW2_EXTENSION = struct.Struct('>II')

#: Full disk encryption header pointer: offset, length.
QCOW2_CRYPTO_HEADER = struct.Struct('>QQ')

#: Bitmaps extension: nb_bitmaps, reserved32, bitmap_directory_size,
#: bitmap_directory_offset.
QCOW2_BITMAPS = struct.Struct('>IIQQ')

# Header extension types.
EXT_END = 0
EXT_BACKING_FORMAT = 0xe2792aca
EXT_FEATURE_TABLE = 0x6803f857
EXT_CRYPTO_HEADER = 0x0537be77
EXT_BITMAPS = 0x23852875
EXT_DATA_FILE = 0x44415441

AUTOCLEAR_BITMAPS = 1 << 0
CRYPT_NONE, CRYPT_AES, CRYPT_LUKS = 0, 1, 2
LUKS_MAGIC = b'LUKS\xba\xbe'
LUKS_VERSION = b'\0\1'
#: The LUKS version 1 partition header qemu reads from the pointed region.
LUKS_HEADER_SIZE = 592

INT64_MAX = (1 << 63) - 1
#: qemu refuses any read that ends beyond this (``BDRV_MAX_LENGTH``, block
#: layer requests are int64_t and 1 GiB aligned): a table placed there
#: fails to load with EIO.
BDRV_MAX_LENGTH = INT64_MAX & ~((1 << 30) - 1)
QCOW2_MAX_BITMAPS = 65535
QCOW2_MAX_BITMAP_DIRECTORY_SIZE = 1024 * QCOW2_MAX_BITMAPS
#: ``sizeof(bs->backing_format)``: the format name must be shorter.
BACKING_FORMAT_BUF = 16
#: The longest file name copied into a message (qemu's backing file limit).
MAX_NAME = 1023

#: The size of the first request, and the most read ahead at once.
HEAD = 4096
WINDOW = 65536


def walk(probe: base.Probe, cursor: base.Reader, offset: int, end: int,
         cluster_size: int, crypt_method: int,
         autoclear: int) -> base.Reads[dict[str, Any]]:
    """Generator: check the header extensions in ``[offset, end)``.

    Bodies are read only for the types checked here, the others are
    skipped.  Returns what later checks need: ``{'data_file': (at, name),
    'crypto': (at, offset, length)}`` for the extensions found.
    """
    found: dict[str, Any] = {}
    while offset < end:
        raw = yield from cursor.read(offset, QCOW2_EXTENSION.size,
                                     ahead=min(WINDOW, end - offset))
        ext_type, length = QCOW2_EXTENSION.unpack(cast(bytes, raw))
        at, offset = offset, offset + QCOW2_EXTENSION.size
        # qemu checks the length before it looks at the type, even for
        # the end marker.
        if offset > end or length > end - offset:
            probe.fail('header_extension', 'header extension 0x%08x at offset '
                       '%d claims %d bytes, beyond the end of the header area '
                       'at offset %d' % (ext_type, at, length, end))
            break
        if ext_type == EXT_END:
            break
        if ext_type == EXT_BACKING_FORMAT and length >= BACKING_FORMAT_BUF:
            probe.fail('header_extension', 'backing format name of %d bytes '
                       'in the extension at offset %d (qemu takes at most %d)'
                       % (length, at, BACKING_FORMAT_BUF - 1))
        elif ext_type == EXT_CRYPTO_HEADER:
            body = None
            if length == QCOW2_CRYPTO_HEADER.size:
                body = yield from cursor.read(offset, length)
            _crypto_pointer(probe, at, length, body, cluster_size,
                            crypt_method, found)
        elif ext_type == EXT_BITMAPS:
            if length != QCOW2_BITMAPS.size:
                probe.fail('header_extension', 'the bitmaps extension at '
                           'offset %d has %d bytes, not %d'
                           % (at, length, QCOW2_BITMAPS.size))
            elif autoclear & AUTOCLEAR_BITMAPS:
                # Without the autoclear bit qemu ignores the bitmaps.
                body = yield from cursor.read(offset, length)
                _bitmaps(probe, at, body, cluster_size)
        elif ext_type == EXT_DATA_FILE:
            body = yield from cursor.read(offset, min(length, MAX_NAME))
            found['data_file'] = (at, base.cstring(cast(bytes, body)))
        offset += base.round_up(length, 8)
    return found


def _crypto_pointer(probe: base.Probe, at: int, length: int,
                    body: bytes | None, cluster_size: int, crypt_method: int,
                    found: dict[str, Any]) -> None:
    if crypt_method != CRYPT_LUKS:
        probe.fail('header_extension', 'encryption header pointer at offset '
                   '%d, but crypt_method is %d, not LUKS' % (at, crypt_method))
    elif body is None:
        probe.fail('header_extension', 'the encryption header pointer at '
                   'offset %d has %d bytes, not %d'
                   % (at, length, QCOW2_CRYPTO_HEADER.size))
    else:
        crypto_offset, crypto_length = QCOW2_CRYPTO_HEADER.unpack(body)
        if crypto_offset % cluster_size:
            probe.fail('header_extension', 'LUKS header offset %d (in the '
                       'extension at offset %d) is not cluster aligned'
                       % (crypto_offset, at))
        else:
            found['crypto'] = (at, crypto_offset, crypto_length)


def _bitmaps(probe: base.Probe, at: int, body: bytes | None,
             cluster_size: int) -> None:
    """What qemu checks of a bitmaps extension it uses; the bitmap
    directory (up to 64 MiB) is not read, so its entries are not checked.
    """
    nb_bitmaps, reserved, dir_size, dir_offset = QCOW2_BITMAPS.unpack(
        cast(bytes, body))
    problem = None
    if reserved:
        problem = 'a non-zero reserved field'
    elif not 0 < nb_bitmaps <= QCOW2_MAX_BITMAPS:
        problem = '%d bitmaps' % nb_bitmaps
    elif dir_offset % cluster_size:
        problem = 'an unaligned directory offset %d' % dir_offset
    elif not 0 < dir_size <= QCOW2_MAX_BITMAP_DIRECTORY_SIZE:
        problem = 'a directory of %d bytes' % dir_size
    elif dir_offset + dir_size > BDRV_MAX_LENGTH:
        problem = 'its directory beyond the last offset qemu can read'
    if problem:
        probe.fail('header_extension', 'the bitmaps extension at offset %d '
                   'has %s' % (at, problem))


def check_encryption(probe: base.Probe, cursor: base.Reader,
                     crypt_method: int,
                     found: dict[str, Any]) -> base.Reads[None]:
    """Generator: check ``crypt_method`` and the LUKS header it needs.

    qemu 7.2's system emulators refuse AES-CBC images (``Use of AES-CBC
    encrypted qcow2 images is no longer supported``) although qemu-img
    still opens them; ``qemu-img info`` crashes on a LUKS image without
    its encryption header pointer.  The LUKS header it points to gets the
    checks qemu makes when it opens the image without the key
    (``qcrypto_block_luks_check_header``, ciphers, key slots: those of
    :mod:`glance_vsize.formats.luks`); a header cut short by the end of
    the file reads as zeros, as in qemu, and fails them.
    """
    if crypt_method == CRYPT_NONE:
        return
    if crypt_method == CRYPT_AES:
        probe.fail('encryption', 'crypt_method 1 at offset 32: legacy AES-CBC '
                   'encryption, which qemu refuses in virtual machines')
        return
    if crypt_method != CRYPT_LUKS:
        probe.fail('encryption', 'unknown crypt_method %d at offset 32'
                   % crypt_method)
        return
    probe.details['encryption'] = 'luks'
    if 'crypto' not in found:
        probe.fail('encryption', 'crypt_method 2 (LUKS) at offset 32 but no '
                   'encryption header pointer extension')
        return
    at, offset, length = found['crypto']
    raw = yield from cursor.read(offset, LUKS_HEADER_SIZE)
    if length < LUKS_HEADER_SIZE or raw is None or \
            raw[:len(LUKS_MAGIC) + 2] != LUKS_MAGIC + LUKS_VERSION:
        probe.fail('encryption', 'no LUKS version 1 header of %d bytes at '
                   'offset %d, where the extension at offset %d points'
                   % (length, offset, at))
        return
    header = base.Probe(luks.LuksInspector())
    try:
        luks.LuksInspector._check_luks1(header, raw)
    except base.FormatError as exc:
        header.fail(exc.check, exc.reason)
    if header.failures:
        probe.fail('encryption', 'the LUKS header at offset %d (offsets '
                   'below are within it): %s' % (offset, '; '.join(
                       '%s: %s' % item
                       for item in sorted(header.failures.items()))))
