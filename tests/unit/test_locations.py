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


"""Which calls add a location, and what the filter keeps for Glance."""

import json
import types

import pytest
import webob

from glance_vsize.cmd import cli
from glance_vsize.glance import backfill
from glance_vsize.glance import locations


def _request(method, path, body):
    request = webob.Request.blank(path, method=method,
                                  body=json.dumps(body).encode())
    return request


@pytest.mark.parametrize('method,body,urls', [
    ('POST', {'url': 'http://h/a.qcow2'}, ['http://h/a.qcow2']),
    ('POST', {'url': 'http://h/a', 'validation_data': {}}, ['http://h/a']),
    ('POST', {'nourl': 1}, []),
    ('POST', ['x'], []),
    ('PATCH', [{'op': 'add', 'path': '/locations/-',
                'value': {'url': 'rbd://f/p/i/s', 'metadata': {}}}],
     ['rbd://f/p/i/s']),
    ('PATCH', [{'op': 'add', 'path': '/locations/0',
                'value': {'url': 'http://h/b', 'metadata': {}}},
               {'op': 'replace', 'path': '/name', 'value': 'x'}],
     ['http://h/b']),
    ('PATCH', [{'op': 'replace', 'path': '/locations',
                'value': [{'url': 'http://h/c', 'metadata': {}}]}],
     ['http://h/c']),
    ('PATCH', [{'op': 'remove', 'path': '/locations/0'}], []),
    # Shapes Glance refuses before it reads a location: not read either.
    ('PATCH', [{'op': 'add', 'path': '/locations',
                'value': [{'url': 'http://h/d', 'metadata': {}}]}], []),
    ('PATCH', [{'op': 'add', 'path': '/locations/-',
                'value': [{'url': 'http://h/e', 'metadata': {}}]}], []),
    ('PATCH', [{'op': 'replace', 'path': '/locations/0',
                'value': {'url': 'http://h/f', 'metadata': {}}}], []),
    ('PATCH', [{'op': 'add', 'path': '/locationsx', 'value': {'url': 'u'}}],
     []),
])
def test_new_locations(method, body, urls):
    request = _request(method, '/v2/images/abc', body)
    assert locations._new_locations(request, method) == urls
    # The body is still there for Glance.
    assert json.loads(request.body) == body


def test_other_requests_are_not_dispatched():
    def app(environ, start_response):
        raise AssertionError('not called')
    for method, path in (('GET', '/v2/images/abc/locations'),
                         ('POST', '/v2/images/abc/import'),
                         ('PUT', '/v2/images/abc/file'),
                         ('PATCH', '/v2/images/abc/members')):
        environ = _request(method, path, {'url': 'http://h/x'}).environ
        assert locations.dispatch(environ, None, app, None) is None


def test_redact_drops_credentials():
    assert locations._redact('swift+https://user:key@host/c/o') == \
        'swift+https://host/c/o'
    assert locations._redact('http://host/a@b') == 'http://host/a@b'


@pytest.mark.parametrize('argv', [
    ['backfill'],
    ['backfill', '--config-dir', '/nonexistent', '--concurrency', '0'],
    ['backfill', '--config-dir', '/nonexistent'],
])
def test_backfill_usage_and_configuration_errors_exit_2(argv, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    assert capsys.readouterr().err


def _image(**changes):
    image = dict(status='active', size=10, checksum='c', os_hash_value='h',
                 disk_format='qcow2', container_format='bare',
                 virtual_size=None, locations=[
                     {'url': 'swift+https://user:key@host/c/o'}])
    image.update(changes)
    return types.SimpleNamespace(**image)


def test_backfill_names_what_changed_while_an_image_was_inspected():
    before = backfill._fingerprint(_image())
    assert backfill._changes(before, backfill._fingerprint(_image())) == []
    assert backfill._changes(before, backfill._fingerprint(_image(
        status='deactivated', virtual_size=42))) == [
            'status active -> deactivated', 'virtual_size None -> 42']
    moved = backfill._changes(before, backfill._fingerprint(_image(
        locations=[{'url': 'http://other/o'}])))
    # Credentials in a location never reach the report.
    assert moved == ["locations ['swift+https://host/c/o'] -> "
                     "['http://other/o']"]
