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

"""Writing ``virtual_size`` with Glance's database API, so that it stays.

Only the ``virtual_size`` column is written (``image_update``, only while
the image is ``active``).  But Glance saves an image as a whole:
``ImageRepo.save`` writes every column of the image its request loaded.
A request that loaded the image before glance_vsize wrote, and saves it
after, puts the old value back.  Glance 31 and 32 (2025.2, 2026.1) make
that frequent for s3 images: every ``GET`` of an image whose s3 location
differs from the URL Glance would build from ``s3_store_host`` (for
instance when it is given with its ``http://``) saves the image
(``glance.common.store_utils.update_store_in_locations``), so a client
polling the image undoes a write made meanwhile.  A write is therefore
looked at again (:func:`hold`, :func:`undone`) and made again when it
was undone.
"""

import contextlib
import logging
import threading
import time
import typing

LOG = logging.getLogger(__name__)

#: Attempts at a write the database is too busy for.
WRITE_ATTEMPTS = 6
#: Pauses, in seconds, before each look at a value :func:`hold` wrote: a
#: request that loaded the image before the write saves it within them.
CHECKS = (0.5, 1.0, 2.0, 4.0, 8.0)


def _busy(exc: Exception) -> bool:
    """A transient database error: retrying the same write may work."""
    from oslo_db import exception as db_exc
    return isinstance(exc, db_exc.DBDeadlock) or \
        'database is locked' in str(exc)


def write(db_api, context, image_id: str, value: int,
          lock: typing.Optional[threading.Lock] = None) -> None:
    """Set ``virtual_size`` only; Glance's Conflict unless the image is
    still active, NotFound when it is gone.  A busy database (sqlite's
    "database is locked" while Glance writes, a deadlock) is retried.
    """
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with lock or contextlib.nullcontext():
                db_api.image_update(context, image_id,
                                    {'virtual_size': value},
                                    from_state='active')
            return
        except Exception as exc:
            if attempt + 1 == WRITE_ATTEMPTS or not _busy(exc):
                raise
            time.sleep(0.1 * 2 ** attempt)


def write_again(db_api, context, image_id: str, value: int) -> bool:
    """:func:`write` a value that was undone, saying so; False when the
    image is no longer active (nothing to hold).
    """
    from glance.common import exception
    LOG.warning('Image %s: virtual_size %s was undone by a concurrent '
                'save of the image; writing it again', image_id, value)
    try:
        write(db_api, context, image_id, value)
    except (exception.Conflict, exception.NotFound):
        return False
    return True


def undone(db_api, context, image_id: str, value: int) -> bool:
    """The image is still active and its virtual_size is not ``value``
    (a deleted or deactivated image has nothing to hold).
    """
    try:
        image = db_api.image_get(context, image_id)
    except Exception:
        return False
    return image['status'] == 'active' and image['virtual_size'] != value


def hold(db_api, context, image_id: str, value: int,
         checks: typing.Sequence[float] = CHECKS,
         sleep: typing.Callable[[float], None] = time.sleep) -> bool:
    """Write ``value``, look again after each pause of ``checks`` and
    write it again when it was undone, but at the last look.  False when
    it was undone at the last look.
    """
    write(db_api, context, image_id, value)
    for look, pause in enumerate(checks, 1):
        sleep(pause)
        if not undone(db_api, context, image_id, value):
            continue
        if look == len(checks):
            return False
        if not write_again(db_api, context, image_id, value):
            return True
    return True
