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

"""LUKS encrypted volumes, as qemu 7.2's ``luks`` driver opens them.

References: the LUKS1 On-Disk Format Specification 1.2.3 (cryptsetup
docs/on-disk-format.pdf), the LUKS2 On-Disk Format Specification 1.1.1
(docs/on-disk-format-luks2.pdf), and qemu crypto/block-luks.c and
block/crypto.c.  Debian's qemu 7.2 carries the stricter header checks of
later releases (``qcrypto_block_luks_check_header``), which are matched.

``qemu-img info`` opens a LUKS volume without its passphrase: only the
592-byte LUKS1 header is read and checked, nothing is decrypted.  The guest
sees everything after the payload: the virtual size is the image length
minus ``payload-offset`` sectors, rounded up to a sector.  So the inspector
needs the stream's length, and a payload past the end is an error in qemu.

LUKS2 volumes (version 2) are recognised and sized from the first
segment of their JSON metadata (``offset``, and ``size`` or ``dynamic``),
but always refused (``unsupported_version``): qemu 7.2 reads LUKS1 only.
``qemu-img info -f luks`` fails on them, and without ``-f`` qemu probes
them as raw, though every byte of the guest disk is encrypted.

Note that ``luks`` is not one of Glance's disk formats: by default the
engine refuses a recognised volume with ``unsupported_format``.

Declared ``raw``, a LUKS volume (either version) is raw: Cinder uploads an
encrypted volume's bytes that way, and decrypts them with the key that the
image's properties name when it makes a volume of the image; qemu's raw
driver, the engine's oracle for ``raw``, reads them as plain data.  The
inspector says so (:attr:`LuksInspector.raw_when_declared`);
:func:`raw_warning` is the warning the engine adds to such a verdict.
"""

import json
import logging
import struct

from glance_vsize.formats import base
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

LUKS_MAGIC = b'LUKS\xba\xbe'

#: LUKS1 spec 2.4 "phdr", big-endian: magic, version, cipher-name,
#: cipher-mode, hash-spec, payload-offset, key-bytes, mk-digest,
#: mk-digest-salt, mk-digest-iter, uuid; then 8 key slots.
LUKS1_PHDR = struct.Struct('>6sH32s32s32sII20s32sI40s')
#: LUKS1 spec 2.4 key slot: active, iterations, salt, key-material-offset,
#: stripes.
LUKS1_KEY_SLOT = struct.Struct('>II32sII')
LUKS1_NUM_KEYS = 8
LUKS1_HEADER_SIZE = LUKS1_PHDR.size + LUKS1_NUM_KEYS * LUKS1_KEY_SLOT.size
LUKS_KEY_DISABLED = 0x0000DEAD
LUKS_KEY_ENABLED = 0x00AC71F3
LUKS_STRIPES = 4000
#: Key material starts after the 4 KiB header area (8 sectors).
KEY_SLOT_OFFSET_SECTORS = 4096 // base.SECTOR

#: LUKS2 spec 2.1 binary header, big-endian: magic, version, hdr_size,
#: seqid, label, csum_alg, salt, uuid, subsystem, hdr_offset.
LUKS2_HDR = struct.Struct('>6sHQQ48s32s64s40s48sQ')
LUKS2_BINARY_SIZE = 4096
#: LUKS2 spec 2.1: the allowed hdr_size values (binary + JSON area).
LUKS2_HDR_SIZES = frozenset(1 << n for n in range(14, 23))
#: How much of the JSON area is read to find the segments.
LUKS2_JSON_READ = 65536

#: What qemu 7.2's parser knows (QAPI QCryptoCipherMode, QCryptoIVGenAlgo,
#: QCryptoHashAlgorithm; qcrypto_block_luks_cipher_name_map).
CIPHER_MODES = ('ecb', 'cbc', 'xts', 'ctr')
IVGENS = ('plain', 'plain64', 'essiv')
HASH_DIGEST_LEN = {'md5': 16, 'sha1': 20, 'sha224': 28, 'sha256': 32,
                   'sha384': 48, 'sha512': 64, 'ripemd160': 20}
CIPHER_KEY_BYTES = {'aes': (16, 24, 32), 'cast5': (16,),
                    'serpent': (16, 24, 32), 'twofish': (16, 24, 32)}


def _field(raw: bytes, what: str, offset: int) -> str:
    """A NUL-terminated header string, or FormatError ``cipher``."""
    if b'\0' not in raw:
        raise base.FormatError('cipher', 'the %s at offset %d is not '
                               'NUL-terminated' % (what, offset))
    return base.cstring(raw)


def check_cipher(cipher_name: str, cipher_mode: str, hash_spec: str,
                 key_bytes: int) -> str | None:
    """qemu's ``qcrypto_block_luks_parse_header``: the cipher spec.

    :returns: ``None``, or why qemu cannot use the spec.
    """
    # cipher-mode is "<mode>-<ivgen>[:<ivhash>]", e.g. "xts-plain64".
    mode, dash, ivgen = cipher_mode.partition('-')
    if not dash:
        return 'cipher mode %r is not "<mode>-<iv generator>"' % cipher_mode
    ivgen, colon, ivhash = ivgen.partition(':')
    if colon and ivhash not in HASH_DIGEST_LEN:
        return 'unknown IV generator hash %r' % ivhash
    if mode not in CIPHER_MODES:
        return 'unknown cipher mode %r' % mode
    if mode == 'xts':
        # Two keys of half the size; qemu halves an odd count silently,
        # and the cipher would then refuse the key: refuse it here.
        if key_bytes % 2:
            return 'odd key size %d for XTS' % key_bytes
        key_bytes //= 2
    if key_bytes not in CIPHER_KEY_BYTES.get(cipher_name, ()):
        return 'cipher %r with a %d-byte key is not supported' % (
            cipher_name, key_bytes)
    if hash_spec not in HASH_DIGEST_LEN:
        return 'unknown hash %r' % hash_spec
    if ivgen not in IVGENS:
        return 'unknown IV generator %r' % ivgen
    if ivgen == 'essiv':
        # qcrypto_block_luks_essiv_cipher: ESSIV keys a cipher of the
        # family with the hash digest.
        if not colon:
            return 'ESSIV without a hash'
        digest = HASH_DIGEST_LEN[ivhash]
        if digest != key_bytes and (cipher_name == 'cast5' or
                                    digest not in (16, 24, 32)):
            return 'no %s cipher with a %d-byte key for ESSIV with %s' % (
                cipher_name, digest, ivhash)
    return None


def _slot_sectors(key_bytes: int) -> int:
    """Sectors of a slot's key material, aligned as qemu (and cryptsetup)
    do: key-bytes * stripes, rounded up to a sector then to 8 sectors.
    """
    sectors = base.round_up(key_bytes * LUKS_STRIPES) // base.SECTOR
    return base.round_up(sectors, KEY_SLOT_OFFSET_SECTORS)


class LuksInspector(base.FormatInspector):
    """LUKS1 volumes as qemu 7.2 opens them; LUKS2 recognised, refused."""

    name = 'luks'
    order = 80
    #: Declared ``raw``, a volume is inspected as raw: see
    #: :func:`glance_vsize.engine.raw_view`.
    raw_when_declared = True

    @staticmethod
    def raw_warning(probe: base.Probe) -> str:
        """The warning of a LUKS volume accepted as raw."""
        return raw_warning(probe)

    #: The checks this inspector can fail, and what each means.
    CHECKS = {
        'luks':
            'a warning only: a LUKS volume declared raw is accepted as raw, '
            'and this names its header',
        'truncated':
            'the image ends inside the LUKS header or before the payload',
        'version': 'a LUKS version qemu does not read',
        'unsupported_version': 'LUKS2, which qemu 7.2 does not open',
        'payload_offset': 'the payload overlaps the header',
        'iterations': 'zero PBKDF2 iterations',
        'key_slot':
            'a malformed key slot, or key material overlapping the header, '
            'the payload or another slot',
        'cipher':
            'a cipher, mode or hash qemu does not support, or an unterminated '
            'name',
    }

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        head = yield base.Read(0, LUKS2_BINARY_SIZE)
        if head[:6] != LUKS_MAGIC:
            return
        if len(head) < 8:
            probe.match('magic %r at offset 0' % LUKS_MAGIC)
            raise base.FormatError('truncated', 'the LUKS header ends at '
                                   'offset %d' % len(head))
        version, = struct.unpack_from('>H', head, 6)
        probe.match('magic %r at offset 0' % LUKS_MAGIC,
                    variant='luks%d' % version)
        if version == 2:
            yield from self._luks2(probe, head)
            return
        if version != 1:
            raise base.FormatError('version', 'LUKS version %d at offset 6, '
                                   'qemu reads only version 1' % version)
        if len(head) < LUKS1_HEADER_SIZE:
            raise base.FormatError(
                'truncated', 'the LUKS header needs %d bytes but the image '
                'ends at offset %d' % (LUKS1_HEADER_SIZE, len(head)))
        payload_offset = self._check_luks1(probe, head)
        payload = payload_offset * base.SECTOR
        probe.details['payload_offset'] = payload
        length = yield base.LENGTH
        if payload > length:
            raise base.FormatError(
                'truncated', 'the payload starts at offset %d (payload-offset'
                ' %d at offset 104), past the end of the image at offset %d'
                % (payload, payload_offset, length))
        probe.virtual_size = base.round_up(length - payload)

    @staticmethod
    def _check_luks1(probe: base.Probe, head: bytes) -> int:
        """qemu's ``qcrypto_block_luks_check_header`` and ``_parse_header``.

        :returns: the payload offset, in sectors.
        """
        payload_offset: int
        (_magic, _version, cipher_name, cipher_mode, hash_spec,
         payload_offset, key_bytes, _digest, _salt, mk_iterations,
         _uuid) = LUKS1_PHDR.unpack_from(head)
        cipher_name = _field(cipher_name, 'cipher-name', 8)
        cipher_mode = _field(cipher_mode, 'cipher-mode', 40)
        hash_spec = _field(hash_spec, 'hash-spec', 72)
        probe.details['cipher'] = '%s-%s' % (cipher_name, cipher_mode)
        if payload_offset < KEY_SLOT_OFFSET_SECTORS:
            probe.fail('payload_offset',
                       'payload-offset %d at offset 104 overlaps the header '
                       '(%d sectors)' % (payload_offset,
                                         KEY_SLOT_OFFSET_SECTORS))
        if not mk_iterations:
            probe.fail('iterations', 'mk-digest-iter at offset 164 is zero')

        slots: list[tuple[int, int]] = []
        for index in range(LUKS1_NUM_KEYS):
            at = LUKS1_PHDR.size + index * LUKS1_KEY_SLOT.size
            active, iterations, _salt, start, stripes = \
                LUKS1_KEY_SLOT.unpack_from(head, at)
            if stripes != LUKS_STRIPES:
                probe.fail('key_slot', 'key slot %d at offset %d has %d '
                           'stripes, not %d'
                           % (index, at, stripes, LUKS_STRIPES))
            if active not in (LUKS_KEY_DISABLED, LUKS_KEY_ENABLED):
                probe.fail('key_slot', 'key slot %d at offset %d has state '
                           '0x%08x' % (index, at, active))
            elif active == LUKS_KEY_ENABLED and not iterations:
                probe.fail('iterations', 'key slot %d at offset %d is '
                           'active with zero iterations' % (index, at))
            end = start + _slot_sectors(key_bytes)
            if start < KEY_SLOT_OFFSET_SECTORS:
                probe.fail('key_slot', 'key slot %d at offset %d: key '
                           'material at sector %d overlaps the header'
                           % (index, at, start))
            if end > payload_offset:
                probe.fail('key_slot', 'key slot %d at offset %d: key '
                           'material at sector %d (%d sectors) overlaps the '
                           'payload at sector %d'
                           % (index, at, start, end - start, payload_offset))
            for other, (start2, end2) in enumerate(slots):
                if start < end2 and start2 < end:
                    probe.fail('key_slot', 'the key material of slots %d '
                               'and %d overlaps' % (other, index))
            slots.append((start, end))

        why = check_cipher(cipher_name, cipher_mode, hash_spec, key_bytes)
        if why:
            probe.fail('cipher', '%s (cipher-name %r, cipher-mode %r, '
                       'hash-spec %r, key-bytes %d at offsets 8-111)'
                       % (why, cipher_name, cipher_mode, hash_spec,
                          key_bytes))
        return payload_offset

    @staticmethod
    def _luks2(probe: base.Probe, head: bytes) -> base.Reads[None]:
        """Refuse a LUKS2 volume; size it from its first segment."""
        probe.fail('unsupported_version',
                   'LUKS version 2 at offset 6: qemu 7.2 opens LUKS1 '
                   'volumes only (and probes this one as raw)')
        if len(head) < LUKS2_HDR.size:
            return
        hdr_size = LUKS2_HDR.unpack_from(head)[2]
        if hdr_size not in LUKS2_HDR_SIZES:
            LOG.debug('LUKS2 hdr_size %d is not a valid size', hdr_size)
            return
        area = yield base.Read(LUKS2_BINARY_SIZE,
                               min(hdr_size - LUKS2_BINARY_SIZE,
                                   LUKS2_JSON_READ))
        segment = _luks2_segment(area)
        if segment is None:
            return
        offset, size, sector_size = segment
        probe.details['payload_offset'] = offset
        if size is None:
            length = yield base.LENGTH
            if length < offset:
                return
            size = base.round_down(length - offset, sector_size)
        probe.virtual_size = size


def _luks2_segment(area: bytes) -> tuple[int, int | None, int] | None:
    """(offset, size or None for "dynamic", sector_size) of the first
    crypt segment of a LUKS2 JSON area, or None when it cannot be read.
    """
    text = area.split(b'\0', 1)[0]
    try:
        segments = json.loads(text.decode('utf-8'))['segments']
        first = segments[min(segments, key=int)]
        offset = int(first['offset'])
        size = None if first['size'] == 'dynamic' else int(first['size'])
        sector_size = int(first.get('sector_size', base.SECTOR))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        LOG.debug('Cannot read the LUKS2 segments: %s', exc)
        return None
    if offset < 0 or (size is not None and size < 0) or sector_size <= 0:
        return None
    return offset, size, sector_size


def raw_warning(probe: base.Probe) -> str:
    """Name the LUKS header of a volume that is inspected as raw: its
    version, where it is, and where the encrypted payload starts.
    """
    version = (probe.variant or 'luks?')[4:]
    where = 'LUKS version %s header at offset 0' % version
    facts = []
    if 'payload_offset' in probe.details:
        facts.append('payload at offset %d' % probe.details['payload_offset'])
    if 'cipher' in probe.details:
        facts.append('cipher %s' % probe.details['cipher'])
    if facts:
        where += ' (%s)' % ', '.join(facts)
    reason = ('%s: an encrypted volume declared raw, inspected and sized '
              'as raw (its guest data is encrypted)' % where)
    if probe.failures and set(probe.failures) != {'unsupported_version'}:
        reason += ('; qemu\'s luks driver would not open it (%s)'
                   % ', '.join(sorted(probe.failures)))
    return reason
