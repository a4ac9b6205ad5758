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

"""A virtual size written while another request saves the image as it
loaded it before (Glance's ``ImageRepo.save`` writes every column) is
written again: :mod:`glance_vsize.glance.size_writer`, used by the
location watcher and by backfill.  The database here keeps Glance's
contract of ``image_update(..., from_state=)`` and ``image_get``; the
real race, on Glance 31 with an s3 store, is in test_rgw.
"""

import threading

from glance.common import exception
import pytest

from glance_vsize.glance import backfill
from glance_vsize.glance import size_writer

IMAGE = 'c0ffee00-0000-4000-8000-000000000001'
SIZE = 21474836480


class Database:
    """One image row; ``stale`` is the row another request loaded."""

    def __init__(self, status='active', virtual_size=None):
        self.row = {'id': IMAGE, 'status': status,
                    'virtual_size': virtual_size}
        self.stale = dict(self.row)
        self.writes = []

    def image_update(self, context, image_id, values, from_state=None):
        if from_state is not None and self.row['status'] != from_state:
            raise exception.Conflict('status is %s' % self.row['status'])
        self.writes.append(dict(values))
        self.row.update(values)

    def image_get(self, context, image_id):
        return dict(self.row)

    def save_stale(self):
        """What ImageRepo.save of the other request does."""
        self.row.update(self.stale)


def _sleeps(db, undo):
    """A sleep that, at each pause, undoes the write when ``undo``
    says so (its argument: the pause's index).
    """
    count = iter(range(100))

    def sleep(_seconds):
        if undo(next(count)):
            db.save_stale()
    return sleep


def test_a_write_undone_once_is_written_again_and_holds():
    db = Database()
    assert size_writer.hold(db, None, IMAGE, SIZE,
                            sleep=_sleeps(db, lambda i: i == 0))
    assert db.row['virtual_size'] == SIZE
    assert db.writes == [{'virtual_size': SIZE}] * 2


def test_a_write_never_undone_is_written_once():
    db = Database()
    assert size_writer.hold(db, None, IMAGE, SIZE,
                            sleep=_sleeps(db, lambda i: False))
    assert db.writes == [{'virtual_size': SIZE}]


def test_a_write_undone_at_every_look_is_reported():
    db = Database()
    held = size_writer.hold(db, None, IMAGE, SIZE, checks=(0, 0, 0),
                            sleep=_sleeps(db, lambda i: True))
    assert not held
    assert len(db.writes) == 3     # the write, then at each look but the last


def test_an_image_no_longer_active_is_left_alone():
    db = Database()

    def deactivate(_seconds):
        db.row['status'] = 'deactivated'
    assert size_writer.hold(db, None, IMAGE, SIZE, sleep=deactivate)
    assert db.writes == [{'virtual_size': SIZE}]


def test_a_write_refused_when_not_active():
    db = Database(status='deactivated')
    with pytest.raises(exception.Conflict):
        size_writer.hold(db, None, IMAGE, SIZE, sleep=lambda s: None)
    assert db.writes == []


def _catalogue(db):
    catalogue = backfill.Catalogue.__new__(backfill.Catalogue)
    catalogue.db_api, catalogue.context = db, None
    catalogue._write_lock = threading.Lock()
    catalogue.written = {}
    catalogue.last_write = 0.0
    return catalogue


def test_backfill_writes_again_what_was_undone(monkeypatch):
    monkeypatch.setattr(backfill.time, 'sleep', lambda s: None)
    db = Database()
    catalogue = _catalogue(db)
    catalogue.set_virtual_size(IMAGE, SIZE)
    db.save_stale()
    assert catalogue.undone() == []
    assert db.row['virtual_size'] == SIZE
    assert db.writes == [{'virtual_size': SIZE}] * 2
    # Looked at once: a second call has nothing left to look at.
    assert catalogue.undone() == []


def test_backfill_names_an_image_undone_twice(monkeypatch):
    db = Database()
    monkeypatch.setattr(backfill.time, 'sleep',
                        lambda s: db.save_stale())
    catalogue = _catalogue(db)
    catalogue.set_virtual_size(IMAGE, SIZE)
    assert catalogue.undone() == [IMAGE]
