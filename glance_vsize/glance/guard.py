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


"""Keep the virtual_size glance_vsize decided through Glance's own upload.

On the import path Glance runs import plugins *before* its own store upload
(``_ImportToStore``), and that upload inspects the data again with
oslo.utils and overwrites ``virtual_size`` whenever it computes a non-zero
value, wrong ones included (the VHD footer's Original Size, an ISO's volume
size instead of its length).  Nothing in Glance's configuration runs after
it, except the notifier: every image save is followed, synchronously and in
the same thread, by an ``image.update`` notification.

This module is an oslo.messaging notification driver (entry point
``oslo.messaging.notify.drivers``: ``glance_vsize``).  The import task (and
the paste filter, for copy-image) register the value they decided for an
image; when a notification shows that image saved with another value, the
driver writes the decided one back through Glance's database API before the
saving thread goes on.  Enable it beside any real notification driver::

    [oslo_messaging_notifications]
    driver = glance_vsize

It never sends anything anywhere, and it acts only on images registered in
this process within the last :data:`TTL` seconds.
"""

import logging
import threading
import time

from oslo_messaging.notify import notifier

LOG = logging.getLogger(__name__)

#: How long a decided value is defended, in seconds: longer than any import.
TTL = 24 * 3600

_LOCK = threading.Lock()
_EXPECTED = {}


def expect(image_id, virtual_size):
    """Register the virtual size decided for ``image_id``."""
    with _LOCK:
        now = time.monotonic()
        for key in [k for k, (_v, t) in _EXPECTED.items() if now - t > TTL]:
            del _EXPECTED[key]
        _EXPECTED[image_id] = (virtual_size, now)


def forget(image_id):
    with _LOCK:
        _EXPECTED.pop(image_id, None)


def expected(image_id):
    with _LOCK:
        entry = _EXPECTED.get(image_id)
    if entry is None or time.monotonic() - entry[1] > TTL:
        return None
    return entry[0]


def _restore(image_id, virtual_size):
    from glance import context
    from glance import db
    db.get_api().image_update(context.get_admin_context(), image_id,
                              {'virtual_size': virtual_size})


class VirtualSizeGuard(notifier.Driver):
    """Notification driver; see the module docstring."""

    def notify(self, ctxt, msg, priority, retry):
        if msg.get('event_type') not in ('image.update', 'image.upload'):
            return
        payload = msg.get('payload')
        if not isinstance(payload, dict):
            return      # error notifications carry a message string
        image_id = payload.get('id')
        want = expected(image_id) if image_id else None
        if want is None or payload.get('virtual_size') == want:
            return
        LOG.info('Image %s saved with virtual_size %s; restoring %s, the '
                 'size glance_vsize decided', image_id,
                 payload.get('virtual_size'), want)
        try:
            _restore(image_id, want)
        except Exception:
            LOG.exception('Could not restore virtual_size of image %s',
                          image_id)
