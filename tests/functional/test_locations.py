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


"""Images added by location over http, from a local server on 127.0.0.1,
in a real Glance with glance_vsize: qemu-img's virtual size by ranged
reads; unsafe locations refused before Glance records them.  Both calls:
``POST /v2/images/{id}/locations`` (by the lab's service user, as Nova
and Cinder make it) and ``PATCH /v2/images/{id}`` adding ``/locations``
(where glance-api.conf sets ``show_multiple_locations = True``).
"""

import json
import os
import re
import sqlite3
import time

import pytest

from glance_vsize.glance import size_writer
from tests.functional import glance as glance_mod
from tests import helpers
from tests import rangeserver

G = 1 << 30
MiB = 1 << 20


@pytest.fixture(scope='module')
def glance(tmp_path_factory):
    api = glance_mod.Glance(tmp_path_factory.mktemp('glance-locations'))
    yield api
    api.stop()


@pytest.fixture(scope='module')
def glance_ml(tmp_path_factory):
    """A Glance whose glance-api.conf sets ``[DEFAULT]
    show_multiple_locations = True`` (deprecated, still used): the
    location PATCH calls are allowed.
    """
    api = glance_mod.Glance(
        tmp_path_factory.mktemp('glance-multiple-locations'),
        extra_args=['--iniset', 'DEFAULT', 'show_multiple_locations',
                    'True'])
    yield api
    api.stop()


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """A directory of images: name -> (disk_format, qemu-img's size)."""
    out = tmp_path_factory.mktemp('served')
    images = {}
    for name, fmt, size, opts in (
            ('big.qcow2', 'qcow2', 900 * G, ''),
            ('disk.vhd', 'vhd', 10 * G, ''),
            ('disk.vmdk', 'vmdk', 20 * G, 'subformat=streamOptimized'),
            ('disk.vhdx', 'vhdx', 5 * G, ''),
            ('base.qcow2', 'qcow2', G, '')):
        helpers.create(out / name, fmt, size, opts)
        images[name] = (fmt, helpers.qemu_info(out / name, fmt)[
            'virtual-size'])
    helpers.create(out / 'child.qcow2', 'qcow2', G,
                   'backing_file=base.qcow2,backing_fmt=qcow2')
    return out, images


def add_location(glance, image_id, url):
    """As Nova and Cinder do: the image owner's token with a service token
    of a user with the service role (``DIR/openrc-service``).
    """
    return add_location_as_service(glance, image_id, url)


def add_location_as_service(glance, image_id, url):
    service = glance.as_user('openrc-service')
    status, data = glance.request(
        'POST', '/v2/images/%s/locations' % image_id,
        json.dumps({'url': url}), {'Content-Type': 'application/json',
                                   'X-Service-Token': service.token()})
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, data.decode('utf-8', 'replace')


def wait_for(glance, image_id, predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        image = glance.show(image_id)
        if predicate(image) or time.monotonic() > deadline:
            return image
        time.sleep(0.2)


def _ranged_bytes(server):
    return sum(length for req in server.requests if req is not None
               for length in [req[1]])


@helpers.requires_qemu_img
def test_location_over_http_gets_qemu_img_size(glance, served):
    out, images = served
    with rangeserver.RangeServer(out) as server:
        for name, (fmt, want) in images.items():
            before = _ranged_bytes(server)
            image_id = glance.create(fmt)
            status, body = add_location(glance, image_id, server.url(name))
            assert status == 202, body
            image = wait_for(glance, image_id,
                             lambda i: i['virtual_size'] is not None)
            assert (image['status'], image['virtual_size']) == (
                'active', want), name
            # Checked before Glance accepts it and read again after: two
            # inspections of at most 2 MiB each, by ranges.
            assert _ranged_bytes(server) - before <= 2 * 2 * MiB, name


@helpers.requires_qemu_img
def test_unsafe_location_is_refused_before_glance_records_it(glance,
                                                             served):
    out, _images = served
    with rangeserver.RangeServer(out) as server:
        image_id = glance.create('qcow2')
        status, body = add_location(glance, image_id,
                                    server.url('child.qcow2'))
    assert status == 400, body
    assert 'backing_file' in body['message']
    assert 'refused by glance_vsize' in body['message']
    image = glance.show(image_id)
    assert (image['status'], image['virtual_size']) == ('queued', None)
    assert 'refused by glance_vsize' in glance.log()


@helpers.requires_qemu_img
def test_server_without_ranges_is_read_as_a_stream(glance, served):
    out, images = served
    fmt, want = images['disk.vhd']
    with rangeserver.RangeServer(out, ranges=False) as server:
        image_id = glance.create(fmt)
        status, body = add_location(glance, image_id,
                                    server.url('disk.vhd'))
        assert status == 202, body
        image = wait_for(glance, image_id,
                         lambda i: i['virtual_size'] is not None)
    assert (image['status'], image['virtual_size']) == ('active', want)


@helpers.requires_qemu_img
def test_unsafe_data_read_only_after_glance_accepted_it_is_deactivated(
        glance, served):
    """A server without ranges: nothing is read before Glance accepts the
    location; read whole afterwards, the image is found unsafe.
    """
    out, _images = served
    with rangeserver.RangeServer(out, ranges=False) as server:
        image_id = glance.create('qcow2')
        status, body = add_location(glance, image_id,
                                    server.url('child.qcow2'))
        assert status == 202, body
        image = wait_for(glance, image_id,
                         lambda i: i['status'] == 'deactivated')
    assert (image['status'], image['virtual_size']) == ('deactivated', None)
    assert 'backing_file' in glance.log()
    assert 'is deactivated' in glance.log()


# PATCH /v2/images/{id} adding /locations -----------------------------------
PATCH_TYPE = 'application/openstack-images-v2.1-json-patch'


def _stale_save(glance, image_id):
    """What Glance's ``ImageRepo.save`` does for a request that loaded
    the image before glance_vsize wrote its virtual_size: the whole row
    written back, virtual_size null again.  (Glance 31 and 32 do it on
    every GET of some s3 images, any release on a PATCH at that moment;
    neither can be timed from outside, so the lab's database is written
    here as that save would.)
    """
    con = sqlite3.connect(os.path.join(glance.data_dir, 'glance.sqlite'),
                          timeout=60)
    try:
        with con:
            con.execute('UPDATE images SET virtual_size = NULL WHERE id = ?',
                        (image_id,))
    finally:
        con.close()


@helpers.requires_qemu_img
def test_virtual_size_undone_by_a_concurrent_save_is_written_again(
        glance, served):
    out, images = served
    fmt, want = images['disk.vhd']
    with rangeserver.RangeServer(out) as server:
        image_id = glance.create(fmt)
        status, body = add_location(glance, image_id, server.url('disk.vhd'))
        assert status == 202, body
        image = wait_for(glance, image_id,
                         lambda i: i['virtual_size'] is not None)
        assert image['virtual_size'] == want
        _stale_save(glance, image_id)
        assert glance.show(image_id)['virtual_size'] is None
        image = wait_for(glance, image_id,
                         lambda i: i['virtual_size'] is not None,
                         timeout=sum(size_writer.CHECKS) + 5)
    assert (image['status'], image['virtual_size']) == ('active', want)
    assert re.search(r'Image %s: virtual_size %d was undone by a concurrent '
                     r'save of the image; writing it again'
                     % (image_id, want), glance.log())


def patch_add_location(glance, image_id, url, path='/locations/-'):
    """PATCH add of one location, as the image's owner (the member):
    Glance's ``set_image_location`` policy is admin or project member on
    every supported release (2025.1 to master), so no admin and no
    service token are needed.
    """
    status, data = glance.request(
        'PATCH', '/v2/images/%s' % image_id,
        json.dumps([{'op': 'add', 'path': path,
                     'value': {'url': url, 'metadata': {}}}]),
        {'Content-Type': PATCH_TYPE})
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, data.decode('utf-8', 'replace')


@helpers.requires_qemu_img
def test_patch_added_location_gets_qemu_img_size(glance_ml, served):
    out, images = served
    with rangeserver.RangeServer(out) as server:
        for (name, path) in (('big.qcow2', '/locations/-'),
                             ('disk.vhdx', '/locations/0')):
            fmt, want = images[name]
            before = _ranged_bytes(server)
            image_id = glance_ml.create(fmt)
            status, body = patch_add_location(glance_ml, image_id,
                                              server.url(name), path)
            # Glance makes the image active within the PATCH (no task).
            assert status == 200, body
            assert body['status'] == 'active'
            image = wait_for(glance_ml, image_id,
                             lambda i: i['virtual_size'] is not None)
            assert (image['status'], image['virtual_size']) == (
                'active', want), name
            assert [loc['url'] for loc in image['locations']] == [
                server.url(name)]
            assert _ranged_bytes(server) - before <= 2 * 2 * MiB, name


@helpers.requires_qemu_img
def test_unsafe_location_added_by_patch_is_refused(glance_ml, served):
    """As the POST: refused before Glance records the location."""
    out, _images = served
    with rangeserver.RangeServer(out) as server:
        image_id = glance_ml.create('qcow2')
        status, body = patch_add_location(glance_ml, image_id,
                                          server.url('child.qcow2'))
    assert status == 400, body
    assert 'backing_file' in body['message']
    assert 'refused by glance_vsize' in body['message']
    image = glance_ml.show(image_id)
    assert (image['status'], image['virtual_size'], image['locations']) \
        == ('queued', None, [])
    assert 'refused by glance_vsize' in glance_ml.log()


@helpers.requires_qemu_img
def test_unsafe_data_added_by_patch_without_ranges_is_deactivated(
        glance_ml, served):
    """A server without ranges: Glance accepts the location within the
    PATCH; read whole afterwards, the image is deactivated, as after a
    POST.
    """
    out, _images = served
    with rangeserver.RangeServer(out, ranges=False) as server:
        image_id = glance_ml.create('qcow2')
        status, body = patch_add_location(glance_ml, image_id,
                                          server.url('child.qcow2'))
        assert status == 200, body
        image = wait_for(glance_ml, image_id,
                         lambda i: i['status'] == 'deactivated')
    assert (image['status'], image['virtual_size']) == ('deactivated', None)
    assert 'is deactivated' in glance_ml.log()


def test_patch_locations_without_show_multiple_locations_is_glances_403(
        glance, served):
    """Where the deployment does not enable it, Glance refuses the PATCH
    (403) and nothing is read from the location.
    """
    out, _images = served
    with rangeserver.RangeServer(out) as server:
        image_id = glance.create('qcow2')
        status, body = patch_add_location(glance, image_id,
                                          server.url('big.qcow2'))
        assert status == 403, body
        assert server.requests == []
    assert glance.show(image_id)['status'] == 'queued'
