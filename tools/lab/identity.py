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

"""The lab's identities and catalog, made through Keystone's API as the
bootstrap admin, idempotently (a second start on the same data dir finds
them and only moves the endpoints to the current ports):

* project ``service``, user ``glance`` (roles admin and service): what
  Glance's keystonemiddleware authenticates as;
* project ``demo``, user ``demo`` with only the ``member`` role
  (``DIR/openrc-member``): the user the functional tests upload as;
* user ``service-user`` with the ``service`` role in ``service``
  (``DIR/openrc-service``): how Nova and Cinder call Glance;
* the ``image`` service with public and internal endpoints.

Passwords are random, kept in ``DIR/keystone/lab.json`` and the openrc
files."""

import json
import os
import secrets
from typing import Optional
import urllib.error
import urllib.request

DOMAIN = 'Default'
REGION = 'RegionOne'
#: name: (project, roles)
USERS = {
    'admin': ('admin', ('admin',)),
    'glance': ('service', ('admin', 'service')),
    'demo': ('demo', ('member',)),
    'service-user': ('service', ('service',)),
}
#: openrc file: user
OPENRC = {'openrc': 'admin', 'openrc-member': 'demo',
          'openrc-service': 'service-user'}


class Client:
    """A project-scoped token and JSON requests to Keystone's API."""

    def __init__(self, auth_url: str, user: str, password: str,
                 project: str):
        self.auth_url = auth_url
        status, _body, headers = self.call('POST', '/auth/tokens', {
            'auth': {'identity': {'methods': ['password'], 'password': {
                'user': {'name': user, 'password': password,
                         'domain': {'id': 'default'}}}},
                     'scope': {'project': {'name': project,
                                           'domain': {'id': 'default'}}}}})
        if status != 201:
            raise RuntimeError('Keystone refused %s: %s' % (user, status))
        self.token = headers['X-Subject-Token']

    def call(self, method: str, path: str, body: Optional[dict] = None):
        req = urllib.request.Request(
            self.auth_url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={'Content-Type': 'application/json'})
        if getattr(self, 'token', None):
            req.add_header('X-Auth-Token', self.token)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                data = resp.read()
                return resp.status, json.loads(data) if data else None, \
                    resp.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors='replace'), e.headers

    def ok(self, method: str, path: str, body: Optional[dict] = None):
        status, data, _headers = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError('Keystone %s %s: %s %s'
                               % (method, path, status, data))
        return data

    def find(self, collection: str, **query) -> Optional[dict]:
        qs = '&'.join('%s=%s' % kv for kv in query.items())
        found = self.ok('GET', '/%s?%s' % (collection, qs))[collection]
        return found[0] if found else None

    def ensure(self, collection: str, ref: dict, **query) -> dict:
        found = self.find(collection, **query)
        if found:
            return found
        key = collection[:-1]
        return self.ok('POST', '/' + collection, {key: ref})[key]


def passwords(kdir: str) -> tuple:
    """({user: password}, whether they were made now)."""
    path = os.path.join(kdir, 'lab.json')
    try:
        with open(path) as f:
            return json.load(f)['passwords'], False
    except FileNotFoundError:
        pass
    made = {name: secrets.token_urlsafe(16) for name in USERS}
    with open(path + '.tmp', 'w') as f:
        json.dump({'passwords': made}, f)
    os.rename(path + '.tmp', path)
    return made, True


def _endpoint(kc: Client, service_id: str, interface: str, url: str):
    ep = kc.find('endpoints', service_id=service_id, interface=interface)
    if ep is None:
        kc.ok('POST', '/endpoints', {'endpoint': {
            'service_id': service_id, 'interface': interface, 'url': url,
            'region_id': REGION}})
    elif ep['url'] != url:
        kc.ok('PATCH', '/endpoints/' + ep['id'], {'endpoint': {'url': url}})


def setup(auth_url: str, glance_url: str, kdir: str,
          template_password: Optional[str]) -> dict:
    """Make or update everything; return {user: password}."""
    pw, fresh = passwords(kdir)
    kc = Client(auth_url, 'admin', template_password or pw['admin'],
                'admin')
    for interface in ('public', 'internal'):
        service = kc.find('services', type='identity')
        _endpoint(kc, service['id'], interface, auth_url)
    image = kc.ensure('services', {'type': 'image', 'name': 'glance',
                                   'description': 'Glance (lab)'},
                      type='image')
    for interface in ('public', 'internal'):
        _endpoint(kc, image['id'], interface, glance_url)
    roles = {}
    for name in ('admin', 'member', 'reader', 'service'):
        roles[name] = kc.ensure('roles', {'name': name}, name=name)['id']
    projects = {}
    for name in sorted({p for p, _ in USERS.values()}):
        projects[name] = kc.ensure('projects', {
            'name': name, 'domain_id': 'default',
            'description': 'lab project %s' % name}, name=name)['id']
    for name, (project, user_roles) in USERS.items():
        if name == 'admin':
            continue
        user = kc.find('users', name=name)
        if user is None:
            user = kc.ok('POST', '/users', {'user': {
                'name': name, 'password': pw[name], 'domain_id': 'default',
                'default_project_id': projects[project]}})['user']
        elif fresh:   # made before a start that did not finish
            kc.ok('PATCH', '/users/' + user['id'],
                  {'user': {'password': pw[name]}})
        for role in user_roles:
            kc.ok('PUT', '/projects/%s/users/%s/roles/%s'
                  % (projects[project], user['id'], roles[role]))
    # Each user signs in once now.  Keystone records the day of a
    # user's first password sign-in (user.last_active_at: a read, then
    # an UPDATE); when two Glance workers first sign in as ``glance`` at
    # the same moment, Keystone 27-29 on sqlite (deferred transactions,
    # see releases.Release.keystone_sqlite_immediate) fails one with
    # "database is locked" and Glance answers 401.  Later sign-ins that
    # day find the date set and write nothing.
    for name, (project, _roles) in USERS.items():
        if name != 'admin':
            Client(auth_url, name, pw[name], project)
    if template_password:
        # Last: Keystone revokes the admin's tokens, this one included.
        admin = kc.find('users', name='admin')
        kc.ok('PATCH', '/users/' + admin['id'],
              {'user': {'password': pw['admin']}})
    return pw


def write_openrc(data_dir: str, auth_url: str, pw: dict) -> None:
    for filename, user in OPENRC.items():
        project = USERS[user][0]
        text = '''\
# Written by tools/run-glance: . this file, then use .venv/bin/openstack.
# User %(user)s, project %(project)s, roles: %(roles)s.
unset OS_CLOUD OS_TOKEN OS_ENDPOINT OS_AUTH_TYPE OS_PROJECT_ID
export OS_AUTH_URL=%(url)s
export OS_IDENTITY_API_VERSION=3
export OS_USERNAME=%(user)s
export OS_PASSWORD=%(password)s
export OS_PROJECT_NAME=%(project)s
export OS_USER_DOMAIN_NAME=%(domain)s
export OS_PROJECT_DOMAIN_NAME=%(domain)s
export OS_REGION_NAME=%(region)s
export OS_INTERFACE=public
export OS_IMAGE_API_VERSION=2
''' % {'user': user, 'project': project, 'url': auth_url,
            'roles': ', '.join(USERS[user][1]), 'password': pw[user],
            'domain': DOMAIN, 'region': REGION}
        path = os.path.join(data_dir, filename)
        with open(path + '.tmp', 'w') as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
        os.rename(path + '.tmp', path)


def read_openrc(path: str) -> dict:
    """The OS_* variables an openrc file exports."""
    env = {}
    with open(path) as f:
        for line in f:
            if line.startswith('export ') and '=' in line:
                key, value = line[len('export '):].strip().split('=', 1)
                env[key] = value
    return env
