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

"""Set the virtual size of images already in Glance's catalogue.

Images are read through Glance's own database API (``glance.db``) and
image repository with an administrator context; their data is read by
ranges from their store (:mod:`glance_vsize.glance.store_reader`), never
written; ``virtual_size`` is written with ``image_update`` (only that
column, only while the image is still ``active``; looked at again before
the run ends, :mod:`size_writer`).  No SQL of its own.

Safe to interrupt: every image is one independent update.  An image
deleted, deactivated or changed (data, locations, formats) while it was
being inspected is skipped; the next run takes it again.
"""

import dataclasses
import logging
import threading
import time
import typing

from glance_vsize.glance import common
from glance_vsize.glance import size_writer
from glance_vsize.glance import store_reader

LOG = logging.getLogger(__name__)

#: Actions reported per image.
SET, UNCHANGED, UNSAFE, SKIPPED, ERROR = ('set', 'unchanged', 'unsafe',
                                          'skipped', 'error')
#: Images listed per database query.
PAGE = 200
#: The least time, in seconds, between a write and :meth:`Catalogue.undone`
#: looking at it again.
SETTLE = 1.0


@dataclasses.dataclass
class Outcome:
    """What was done to one image (one ``--json`` line)."""

    id: str
    disk_format: typing.Optional[str] = None
    container_format: typing.Optional[str] = None
    old_virtual_size: typing.Optional[int] = None
    virtual_size: typing.Optional[int] = None
    bytes_read: int = 0
    safe: typing.Optional[bool] = None
    failures: dict = dataclasses.field(default_factory=dict)
    action: str = SKIPPED

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Catalogue:
    """Glance's images, through its own database API."""

    def __init__(self, conf) -> None:
        import glance.context
        import glance.db
        self.conf = conf
        self.db_api = glance.db.get_api()
        self.context = glance.context.get_admin_context()
        self.repo = glance.db.ImageRepo(self.context, self.db_api)
        self._write_lock = threading.Lock()
        #: {image_id: virtual_size} written by this run, and when last.
        self.written: typing.Dict[str, int] = {}
        self.last_write = 0.0

    def image_ids(self, every: bool = False) -> typing.Iterator[str]:
        """Active images (hidden ones too) whose virtual_size is null, or
        all active images, oldest first.
        """
        marker = None
        while True:
            page = self.db_api.image_get_all(
                self.context, filters={'status': 'active'}, marker=marker,
                limit=PAGE, sort_key=['created_at', 'id'],
                sort_dir=['asc', 'asc'])
            if not page:
                return
            for image in page:
                if every or image['virtual_size'] is None:
                    yield image['id']
            marker = page[-1]['id']

    def get(self, image_id: str):
        """The domain image (locations decrypted), or None when gone."""
        from glance.common import exception
        try:
            return self.repo.get(image_id)
        except (exception.ImageNotFound, exception.NotFound):
            return None

    def set_virtual_size(self, image_id: str, value: int) -> None:
        """Write only ``virtual_size``; Conflict unless still active.
        One write at a time from this process (:mod:`size_writer`).
        """
        size_writer.write(self.db_api, self.context, image_id, value,
                          self._write_lock)
        with self._write_lock:
            self.written[image_id] = value
            self.last_write = time.monotonic()

    def undone(self) -> typing.List[str]:
        """The images whose write a concurrent save of Glance undid
        (:mod:`size_writer`), each written once more; those still
        undone after that are returned.
        """
        written, self.written = self.written, {}
        if written:
            time.sleep(max(0.0, self.last_write + SETTLE - time.monotonic()))
        again = {}
        for image_id, value in sorted(written.items()):
            try:
                if size_writer.undone(self.db_api, self.context, image_id,
                                      value) and \
                        size_writer.write_again(self.db_api, self.context,
                                                image_id, value):
                    again[image_id] = value
            except Exception as exc:
                LOG.warning('Image %s: %s', image_id, exc)
                again[image_id] = value
        if again:
            time.sleep(SETTLE)
        return [image_id for image_id, value in again.items()
                if size_writer.undone(self.db_api, self.context, image_id,
                                      value)]


def _fingerprint(image) -> typing.Dict[str, object]:
    """What may not change between inspecting an image and writing."""
    return {'status': image.status, 'size': image.size,
            'checksum': image.checksum, 'os_hash_value': image.os_hash_value,
            'disk_format': image.disk_format,
            'container_format': image.container_format,
            'virtual_size': image.virtual_size,
            'locations': [loc['url'] for loc in image.locations]}


def _changes(before: typing.Dict[str, object],
             now: typing.Dict[str, object]) -> typing.List[str]:
    """The names of what changed (an old and a new value for each)."""
    return ['%s %s -> %s' % (key, _redact_value(key, value),
                             _redact_value(key, now[key]))
            for key, value in before.items() if now[key] != value]


def _redact_value(key: str, value: object) -> object:
    if key == 'locations' and isinstance(value, list):
        return [_redact(url) for url in value]
    return value


def _active_locations(image) -> list:
    return [loc for loc in image.locations
            if loc.get('status', 'active') == 'active']


def inspect_image(image, policy, conf):
    """The :class:`~glance_vsize.ranged.RangedInspection` of an image's
    data, from its first readable location.
    """
    errors = []
    for loc in _active_locations(image):
        try:
            return store_reader.inspect_location(
                loc['url'], loc.get('metadata') or {}, image.size,
                image.disk_format, image.container_format, policy, conf)
        except Exception as exc:
            errors.append('%s: %s' % (_redact(loc['url']), exc))
    raise IOError('; '.join(errors) or 'the image has no active location')


def _redact(url: str) -> str:
    """A location for a report: credentials in a URL are dropped."""
    scheme, sep, rest = url.partition('://')
    if '@' in rest.split('/', 1)[0]:
        rest = rest.split('@', 1)[1]
    return scheme + sep + rest


def backfill_one(catalogue: Catalogue, image_id: str, policy,
                 dry_run: bool = False, every: bool = False) -> Outcome:
    """Inspect one image and set its virtual size; never raises."""
    out = Outcome(image_id)
    try:
        image = catalogue.get(image_id)
        if image is None:
            out.failures['skipped'] = 'the image does not exist (deleted)'
            return out
        out.disk_format = image.disk_format
        out.container_format = image.container_format
        out.old_virtual_size = image.virtual_size
        if image.status != 'active':
            out.failures['skipped'] = 'the image is %s, not active' % (
                image.status)
            return out
        if not common.inspectable(image):
            out.failures['skipped'] = (
                'container_format %s is not a disk image glance_vsize '
                'inspects' % image.container_format)
            return out
        if image.virtual_size is not None and not every:
            out.failures['skipped'] = 'the image has a virtual_size'
            return out
        before = _fingerprint(image)
        result = inspect_image(image, policy, catalogue.conf)
        verdict = result.inspection
        out.bytes_read = result.bytes_read
        out.safe = verdict.safe
        if not verdict.safe:
            out.failures = dict(verdict.failures) or {
                'virtual_size': verdict.describe()}
            out.action = UNSAFE
            LOG.warning('Image %s is refused by glance_vsize: %s',
                        image_id, verdict.describe())
            return out
        out.virtual_size = verdict.virtual_size
        if verdict.virtual_size == image.virtual_size:
            out.action = UNCHANGED
            return out
        if dry_run:
            out.action = SET
            return out
        now = catalogue.get(image_id)
        if now is None:
            out.failures['skipped'] = ('the image was deleted while it '
                                       'was inspected')
            return out
        changed = _changes(before, _fingerprint(now))
        if changed:
            out.failures['skipped'] = ('the image changed while it was '
                                       'inspected: %s' % '; '.join(changed))
            return out
        from glance.common import exception
        try:
            catalogue.set_virtual_size(image_id, verdict.virtual_size)
        except (exception.Conflict, exception.NotFound) as exc:
            out.failures['skipped'] = 'the image changed: %s' % exc
            return out
        LOG.info('Image %s: virtual_size %s (%s), was %s', image_id,
                 verdict.virtual_size, verdict.format, image.virtual_size)
        out.action = SET
        return out
    except Exception as exc:
        LOG.debug('Image %s could not be inspected', image_id,
                  exc_info=True)
        out.action = ERROR
        out.failures = {'error': str(exc) or type(exc).__name__}
        return out
