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

"""Runs format probes and turns their findings into one verdict.

Every registered inspector probes every image: detection is by content,
never by name.  :func:`decide` then arbitrates:

* no format matched: the image is ``raw``, its size the byte count
  rounded up to 512 (what qemu's raw driver reports);
* one format matched: its findings are the verdict;
* two container formats matched, or a container and a content signature
  (an ISO volume descriptor inside a qcow2), or the reverse: the bytes mean
  different things to different readers, so the image is refused
  (``multiple_formats``).  Content signatures inside a raw disk (ISO with
  an MBR/GPT in front, a fixed VHD holding a GPT disk) are expected.

One format is raw when it is declared raw: a LUKS volume (its inspector's
``raw_when_declared``) uploaded with ``disk_format`` raw, as Cinder
uploads an encrypted volume.  qemu's raw driver reads it as plain data, so
the verdict is ``raw`` sized by the byte count, with a warning naming the
LUKS header.  Only when it is the one format matched: any other signature
beside it still refuses the image.
"""

from collections.abc import Iterable
from collections.abc import Sequence
import logging
from typing import Any

from glance_vsize.formats import base
from glance_vsize import inspection as insp_mod

LOG = logging.getLogger(__name__)

#: Content signatures in order of precedence: an ISO with a GPT and an MBR
#: in front of it is an ISO; a GPT disk has a protective MBR.
CONTENT_PRECEDENCE = ('iso', 'gpt', 'mbr')


def start(inspectors: Iterable[base.FormatInspector],
          policy: insp_mod.Policy,
          ) -> list[tuple[base.Probe, base.Request | None]]:
    """Create one :class:`~base.Probe` per inspector and prime it.

    :returns: list of ``(probe, first_request)``.
    """
    started = []
    for inspector in inspectors:
        probe = base.Probe(inspector)
        probe.gen = inspector.inspect(probe, policy)
        started.append((probe, step(probe, None)))
    return started


def step(probe: base.Probe, data: Any) -> base.Request | None:
    """Send ``data`` to the probe's generator; return its next request.

    Returns ``None`` once the probe is done.  Exceptions from format code
    never escape: a :class:`~base.FormatError` is recorded as the failure it
    names, anything else as ``inspector_error`` (and logged, it is a bug).
    """
    try:
        if data is None:
            request = next(probe.gen)
        else:
            request = probe.gen.send(data)
    except StopIteration:
        probe.done = True
        return None
    except base.FormatError as exc:
        if probe.matched:
            probe.fail(exc.check, exc.reason)
        probe.done = True
        return None
    except Exception as exc:
        LOG.exception('The %s inspector failed', probe.name)
        if probe.matched:
            probe.fail('inspector_error', 'the %s inspector failed: %r'
                       % (probe.name, exc))
        probe.done = True
        return None
    return _checked(probe, request)


def _checked(probe: base.Probe,
             request: base.Request) -> base.Request | None:
    """Refuse requests beyond the engine's bounds (a lying header)."""
    if isinstance(request, base.Read):
        if request.offset < 0 or not 0 <= request.length <= base.MAX_REGION:
            return _abort(probe, 'region_bounds',
                          'the %s inspector asked for %d bytes at offset %d, '
                          'beyond the %d-byte limit of one region'
                          % (probe.name, request.length, request.offset,
                             base.MAX_REGION))
    elif isinstance(request, base.Tail):
        if not 0 < request.length <= base.MAX_TAIL:
            return _abort(probe, 'region_bounds',
                          'the %s inspector asked for the last %d bytes'
                          % (probe.name, request.length))
    elif request is not base.LENGTH:
        return _abort(probe, 'inspector_error',
                      'the %s inspector made an unknown request %r'
                      % (probe.name, request))
    return request


def _abort(probe: base.Probe, check: str,
           reason: str) -> base.Request | None:
    if probe.matched:
        probe.fail(check, reason)
    probe.gen.close()
    probe.done = True
    return None


def stream_order(probe: base.Probe, request: base.Read,
                 position: int) -> base.Request | None:
    """A probe wants bytes the stream has passed: record it, stop it."""
    return _abort(probe, 'stream_order',
                  'the %s inspector needs %d bytes at offset %d, but the '
                  'stream is already at offset %d: the image is laid out in '
                  'an order that one pass cannot inspect'
                  % (probe.name, request.length, request.offset, position))


def raw_view(containers: list[base.Probe], contents: list[base.Probe],
             disk_format: str | None) -> base.Probe | None:
    """The probe of a format that is read as raw because it is declared
    raw (a LUKS volume with ``disk_format`` raw), or ``None``.

    Only a lone match qualifies: with another container or a content
    signature beside it, the bytes mean different things to different
    readers, and the image is refused as before.
    """
    if disk_format != 'raw' or len(containers) != 1 or contents:
        return None
    probe = containers[0]
    if getattr(probe.inspector, 'raw_when_declared', False):
        return probe
    return None


def compatible(declared: str | None, detected: str) -> bool:
    """Whether content of format ``detected`` may be uploaded as
    ``declared``.  qemu reads ISO images as raw, so raw accepts them.
    """
    if declared is None or declared == detected:
        return True
    return declared in insp_mod.RAW_LIKE and detected in ('raw', 'iso')


def _describe(probe: base.Probe) -> str:
    return '%s (%s)' % (probe.name, probe.evidence)


def decide(probes: Sequence[base.Probe], disk_format: str | None,
           policy: insp_mod.Policy, length: int | None,
           final: bool = True) -> insp_mod.Inspection:
    """Arbitrate the probes' findings into an :class:`Inspection`.

    With ``final=False`` (mid-stream), only conclusions that no later byte
    can change are drawn, so that a refusal can be raised early.
    """
    result = insp_mod.Inspection()
    failures = {}
    matched = [p for p in probes if p.matched]
    containers = [p for p in matched if not p.inspector.content]
    contents = sorted(
        (p for p in matched if p.inspector.content),
        key=lambda p: (CONTENT_PRECEDENCE.index(p.name)
                       if p.name in CONTENT_PRECEDENCE else 99))
    chosen = containers[0] if containers else None
    as_raw = raw_view(containers, contents, disk_format)
    if as_raw is not None:
        chosen = None
        result.variant = as_raw.variant
        result.details.update(as_raw.details)
        result.warnings[as_raw.name] = as_raw.inspector.raw_warning(as_raw)

    if len(containers) > 1:
        failures['multiple_formats'] = 'the content matches %s' % ' and '.join(
            _describe(p) for p in containers)
    elif chosen is not None and contents and not chosen.raw_data:
        failures['multiple_formats'] = 'the content matches %s and also %s' % (
            _describe(chosen), ' and '.join(_describe(p) for p in contents))

    if chosen is not None:
        result.format = chosen.name
        result.variant = chosen.variant
        result.virtual_size = chosen.virtual_size
        result.details.update(chosen.details)
        failures.update(chosen.failures)
        for probe in contents:
            failures.update(probe.failures)
    elif final:
        if contents:
            top = contents[0]
            result.format = 'iso' if top.name == 'iso' else 'raw'
            result.variant = top.variant if top.name == 'iso' else top.name
            for probe in contents:
                failures.update(probe.failures)
        else:
            result.format = 'raw'
        if length is not None:
            result.virtual_size = base.round_up(length)
    else:
        for probe in contents:
            failures.update(probe.failures)

    if disk_format:
        declared = next((p for p in probes if p.name == disk_format), None)
        detected = result.format
        if detected is None and declared is not None and declared.done \
                and not declared.matched and disk_format not in \
                insp_mod.RAW_LIKE:
            detected = 'no %s signature' % disk_format
        if detected is not None and not compatible(disk_format, detected):
            found = _describe(chosen) if chosen is not None else detected
            failures['format_mismatch'] = (
                'disk_format is %s but the content is %s'
                % (disk_format, found))

    if result.format is not None and \
            result.format not in policy.allowed_formats and \
            result.format not in ('raw',):
        failures['unsupported_format'] = (
            '%s images are not accepted (allowed: %s)'
            % (result.format, ', '.join(sorted(policy.allowed_formats))))

    if final and result.format is not None and result.virtual_size is None \
            and not failures:
        failures['virtual_size'] = ('the %s image gives no virtual size'
                                    % result.format)

    for check, reason in failures.items():
        result.record(check, reason, policy)
    return result
