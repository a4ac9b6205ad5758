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

"""Images added by location, without data: their virtual size by ranged
reads.

Two calls add a location to an image that has no data: ``POST
/v2/images/{id}/locations`` (Glance 2024.2+, the service role's API, used
by Nova and Cinder), and ``PATCH /v2/images/{id}`` adding ``/locations``
where ``show_multiple_locations`` allows it.  The paste filter hands both
to :func:`dispatch`:

1. Before Glance sees the call, the new location is inspected by ranged
   reads (:mod:`glance_vsize.glance.store_reader`, at most a few small
   reads).  An unsafe image is refused there: HTTP 400 naming the check,
   and Glance never records the location.
2. Once Glance has accepted the location (``POST`` runs Glance's
   ``location_import`` task in the background: the image is ``active``,
   the location recorded, the task's lock released), a thread in the same
   worker inspects the location Glance recorded and writes
   ``virtual_size`` with Glance's database API, only while the image is
   ``active``, and again if a concurrent save of the image undoes it
   (:mod:`glance_vsize.glance.size_writer`).  Should the data read
   unsafe then (it changed since step 1, or could not be read at step
   1), the image is deactivated, as Glance lets an administrator do with
   an image found unsafe, and the refusal is logged as an error.

Containers (ova, compressed) and stores that cannot seek are not read in
the request; they are read in step 2, from start to end.  An image whose
task outlives the worker or :data:`WAIT` keeps a null virtual_size until
``glance-vsize backfill`` takes it.
"""

import json
import logging
import re
import threading
import time
import typing

import webob

from glance_vsize import conf as vsize_conf
from glance_vsize.glance import common
from glance_vsize.glance import releases
from glance_vsize.glance import size_writer
from glance_vsize.glance import store_reader
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

_LOCATIONS_PATH = re.compile(
    r'^(?:/v2)?/images/([0-9a-fA-F-]{1,64})/locations/?$')
_IMAGE_PATH = re.compile(r'^(?:/v2)?/images/([0-9a-fA-F-]{1,64})/?$')
#: The JSON patch paths Glance takes a new location from: ``add`` one
#: location at ``/locations/-`` or ``/locations/N``; ``replace`` the list
#: at ``/locations``.  Glance refuses any other shape (its schema, or its
#: position check) before it reads a location: so does this filter.
_PATCH_LOCATION = {'add': re.compile(r'^/locations/(-|\d+)$'),
                   'replace': re.compile(r'^/locations$')}

#: How long step 2 waits for Glance to accept a location, in seconds
#: (Glance's task may read the whole image to hash it first).
WAIT = 6 * 3600
#: The longest pause between two looks at the image, in seconds.
POLL_MAX = 5.0


def dispatch(environ, start_response, app, conf):
    """The filter's entry point: the WSGI response for a location call,
    or ``None`` for any other request.
    """
    method = environ.get('REQUEST_METHOD')
    path = environ.get('PATH_INFO', '')
    if method == 'POST':
        match = _LOCATIONS_PATH.match(path)
    elif method == 'PATCH':
        match = _IMAGE_PATH.match(path)
    else:
        return None
    if match is None:
        return None
    request = webob.Request(environ)
    urls = _new_locations(request, method)
    if not urls:
        return None
    image_id = match.group(1)
    image = _get_image(request, image_id)
    if image is None or image.status != 'queued' or \
            not common.inspectable(image):
        return None
    policy = vsize_conf.policy(conf)
    for url in urls:
        if not _may_read(request, image, url, method):
            break       # Glance refuses the call, or reads it first
        refusal = _precheck(image, url, policy, conf)
        if refusal is not None:
            message = common.refusal_message(image_id, refusal)
            LOG.warning('%s (location %s)', message, _redact(url))
            return webob.Response(
                status=400, content_type='application/json',
                charset='UTF-8', json_body={
                    'message': message, 'code': 400,
                    'title': 'Bad Request'})(environ, start_response)
    response = request.get_response(app)
    if response.status_int < 300:
        Watcher(image_id, urls, policy, conf,
                locked=(method == 'POST')).start()
    return response(environ, start_response)


def _new_locations(request, method) -> typing.List[str]:
    """The URLs a location call adds (the body is kept for Glance)."""
    try:
        body = request.body
        request.body = body
        doc = json.loads(body or b'null')
    except Exception:
        return []
    if method == 'POST':
        url = doc.get('url') if isinstance(doc, dict) else None
        return [url] if isinstance(url, str) else []
    urls = []
    for op in doc if isinstance(doc, list) else ():
        if not isinstance(op, dict) or op.get('op') not in _PATCH_LOCATION:
            continue
        if not _PATCH_LOCATION[op['op']].match(str(op.get('path', ''))):
            continue
        value = op.get('value')
        if op['op'] == 'add':
            value = [value] if isinstance(value, dict) else []
        for loc in value if isinstance(value, list) else ():
            if isinstance(loc, dict) and isinstance(loc.get('url'), str):
                urls.append(loc['url'])
    return urls


def _get_image(request, image_id):
    context = getattr(request, 'context', None)
    if context is None:
        return None
    from glance import gateway
    try:
        return gateway.Gateway().get_repo(context).get(image_id)
    except Exception as exc:
        LOG.debug('Image %s: location not inspected: %s', image_id, exc)
        return None


_ENFORCER: list[typing.Any] = []


def _may_read(request, image, url, method) -> bool:
    """Whether Glance would go on with this call: the checks it makes
    before it reads anything (policy, the http store for callers without
    the service role, the import filter on http hosts and ports).  Nothing
    is read for a call Glance refuses: a location is not a way to make
    Glance fetch an arbitrary URL.
    """
    from glance.api import policy as glance_policy
    from glance.api.v2 import policy as api_policy
    from glance.common import utils
    from oslo_config import cfg
    try:
        if not _ENFORCER:
            _ENFORCER.append(glance_policy.Enforcer(
                suppress_deprecation_warnings=True))
        checks = api_policy.ImageAPIPolicy(request.context, image,
                                           _ENFORCER[0])
        if method == 'POST':
            checks.add_location()
        else:
            checks.update_locations()
            if not cfg.CONF.show_multiple_locations:
                return False
        context = request.context
        roles = set(context.roles) | set(getattr(context, 'service_roles',
                                                 None) or ())
        if 'service' not in roles and not utils.is_http_store_configured(
                url):
            return False
        if url.split('://', 1)[0].lower() in ('http', 'https') and \
                not _uri_allowed(utils, url):
            return False
    except Exception as exc:
        LOG.debug('Image %s: location not inspected: %s', image.image_id,
                  exc)
        return False
    return True


def _uri_allowed(utils, url: str) -> bool:
    """Whether ``[import_filtering_opts]`` lets Glance fetch ``url``, by
    the release's check
    (:attr:`~glance_vsize.glance.releases.GlanceRelease.location_uri_check`):
    ``validate_uri``, which Glance 33 makes before it accepts a new http
    location; before 33 (no check on this call), the filter web-download
    uses, ``validate_import_uri``.
    """
    return bool(getattr(utils, releases.running().location_uri_check)(url))


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition('://')
    if '@' in rest.split('/', 1)[0]:
        rest = rest.split('@', 1)[1]
    return scheme + sep + rest


def _precheck(image, url, policy, conf) -> typing.Optional[
        inspection.Inspection]:
    """The refusal, when the location's data is unsafe and can be read by
    ranges now; else ``None`` (Glance decides, step 2 follows).
    """
    if image.container_format not in inspection.BARE_CONTAINERS:
        return None
    try:
        result = store_reader.inspect_location(
            url, {}, 0, image.disk_format, image.container_format, policy,
            conf, stream=False)
    except Exception as exc:
        LOG.info('Image %s: location %s not inspected before Glance '
                 'accepts it: %s', image.image_id, _redact(url), exc,
                 exc_info=LOG.isEnabledFor(logging.DEBUG))
        return None
    if result.inspection.safe:
        return None
    result.inspection.details.setdefault('declared', image.disk_format)
    return result.inspection


class Watcher(threading.Thread):
    """Step 2: once Glance accepted the location, set the virtual size."""

    def __init__(self, image_id, urls, policy, conf, locked) -> None:
        super().__init__(name='glance_vsize-location-%s' % image_id,
                         daemon=True)
        self.image_id = image_id
        self.urls = urls
        self.policy = policy
        self.conf = conf
        self.locked = locked

    def run(self) -> None:
        try:
            image = self._wait()
            if image is not None:
                self._inspect(image)
        except Exception:
            LOG.exception('Image %s: glance_vsize could not inspect its new '
                          'location', self.image_id)

    def _repo(self):
        import glance.context
        import glance.db
        db_api = glance.db.get_api()
        context = glance.context.get_admin_context()
        return glance.db.ImageRepo(context, db_api), db_api, context

    def _wait(self):
        repo, _db_api, _context = self._repo()
        deadline = time.monotonic() + WAIT
        pause = 0.1
        while time.monotonic() < deadline:
            try:
                image = repo.get(self.image_id)
            except Exception:
                return None             # deleted
            urls = [loc['url'] for loc in image.locations]
            accepted = image.status == 'active' and \
                any(url in urls for url in self.urls)
            busy = self.locked and \
                'os_glance_import_task' in image.extra_properties
            if accepted and not busy:
                return image
            if image.status == 'queued' and not busy and self.locked:
                LOG.info('Image %s: Glance did not accept the location',
                         self.image_id)
                return None
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX)
        LOG.warning('Image %s: Glance did not accept its location within '
                    '%d s; glance-vsize backfill can set its virtual_size',
                    self.image_id, WAIT)
        return None

    def _inspect(self, image) -> None:
        _repo, db_api, context = self._repo()
        loc = next(loc for loc in image.locations if loc['url'] in self.urls)
        result = store_reader.inspect_location(
            loc['url'], loc.get('metadata') or {}, image.size,
            image.disk_format, image.container_format, self.policy,
            self.conf)
        verdict = result.inspection
        if verdict.safe:
            LOG.info('Image %s: virtual_size %s (%s) from its location, '
                     '%d bytes read', self.image_id, verdict.virtual_size,
                     verdict.format, result.bytes_read)
            size = verdict.virtual_size
            if size is not None and image.virtual_size != size and \
                    not size_writer.hold(db_api, context, self.image_id,
                                         size):
                LOG.warning('Image %s: virtual_size %s kept being undone '
                            'by concurrent saves of the image; glance-vsize '
                            'backfill can set it', self.image_id,
                            verdict.virtual_size)
            return
        verdict.details.setdefault('declared', image.disk_format)
        db_api.image_update(context, self.image_id,
                            {'status': 'deactivated'}, from_state='active')
        LOG.error('%s; the image, added by location, is deactivated',
                  common.refusal_message(self.image_id, verdict))
