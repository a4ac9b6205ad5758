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


"""DEVELOPMENT / TESTING ONLY: a fixed identity for Glance without keystone.

NEVER PUT THIS FILTER IN A REAL DEPLOYMENT.  It authenticates NOTHING:
every request that reaches it, from anyone, becomes an ADMIN of a fixed
project.  It exists only so that ``tools/run-glance`` can run a real Glance
API on 127.0.0.1 for glance_vsize's development and tests.

Why it exists: without keystone, Glance's default paste pipeline uses the
``unauthenticated-context`` filter, which builds a context with no project
and no roles.  Under the current RBAC defaults most calls are then refused,
and interoperable image import cannot work at all (creating the import task
inserts ``tasks.owner = NULL``, which the database refuses).

This filter stands in for keystonemiddleware's ``authtoken``: it overwrites
the identity headers that ``authtoken`` would set for a validated token
(``X-Identity-Status: Confirmed``, ``X-Project-Id``, ``X-User-Id``,
``X-Roles``, ...), so that Glance's standard ``context`` filter, placed right
after it, builds a project-scoped admin ``RequestContext``.  Any identity
headers sent by the client are replaced, never trusted.

Paste wiring (``tools/run-glance`` does this in its generated
glance-api-paste.ini)::

    [filter:vsize-dev-identity]
    paste.filter_factory = glance_vsize.glance.devauth:filter_factory
    # optional overrides:
    # project_id = ...
    # user_id = ...
    # roles = admin,member,reader

    [composite:api]
    default = cors ... osprofiler vsize-dev-identity context rootapp

A WARNING is logged every time the filter is loaded.
"""

import logging

LOG = logging.getLogger(__name__)

#: Fixed identity stamped on every request (overridable in the paste section).
DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"
DEFAULT_PROJECT_NAME = "vsize-dev"
DEFAULT_USER_ID = "fedcba9876543210fedcba9876543210"
DEFAULT_USER_NAME = "vsize-dev-admin"
DEFAULT_DOMAIN_ID = "default"
DEFAULT_ROLES = "admin,member,reader"

# Headers (in WSGI environ form) that carry identity from keystonemiddleware.
# Everything in here is removed from the incoming request before the fixed
# identity is stamped, so a client can never inject its own.
_IDENTITY_PREFIXES = (
    "HTTP_X_IDENTITY_STATUS",
    "HTTP_X_SERVICE_",
    "HTTP_X_PROJECT_",
    "HTTP_X_TENANT",
    "HTTP_X_USER",
    "HTTP_X_ROLE",
    "HTTP_X_DOMAIN_",
    "HTTP_X_SYSTEM_SCOPE",
    "HTTP_X_IS_ADMIN_PROJECT",
    "HTTP_X_AUTH_",
    "HTTP_X_APPLICATION_CREDENTIAL_",
    "HTTP_OPENSTACK_SYSTEM_SCOPE",
)


class DevIdentityMiddleware(object):
    """WSGI middleware stamping one fixed, project-scoped admin identity.

    DEVELOPMENT / TESTING ONLY -- see the module docstring.
    """

    def __init__(self, app, project_id=DEFAULT_PROJECT_ID,
                 project_name=DEFAULT_PROJECT_NAME, user_id=DEFAULT_USER_ID,
                 user_name=DEFAULT_USER_NAME, domain_id=DEFAULT_DOMAIN_ID,
                 roles=DEFAULT_ROLES):
        self.app = app
        roles = ",".join(r.strip() for r in roles.split(",") if r.strip())
        self._identity = {
            "HTTP_X_IDENTITY_STATUS": "Confirmed",
            "HTTP_X_PROJECT_ID": project_id,
            "HTTP_X_TENANT_ID": project_id,
            "HTTP_X_PROJECT_NAME": project_name,
            "HTTP_X_PROJECT_DOMAIN_ID": domain_id,
            "HTTP_X_USER_ID": user_id,
            "HTTP_X_USER_NAME": user_name,
            "HTTP_X_USER_DOMAIN_ID": domain_id,
            "HTTP_X_ROLES": roles,
        }

    def __call__(self, environ, start_response):
        for key in [k for k in environ if k.startswith(_IDENTITY_PREFIXES)]:
            del environ[key]
        environ.update(self._identity)
        return self.app(environ, start_response)


def filter_factory(global_conf, **local_conf):
    """Paste ``filter_factory`` for :class:`DevIdentityMiddleware`.

    DEVELOPMENT / TESTING ONLY.  Optional ``local_conf`` keys: ``project_id``,
    ``project_name``, ``user_id``, ``user_name``, ``domain_id``, ``roles``.
    """
    allowed = ("project_id", "project_name", "user_id", "user_name",
               "domain_id", "roles")
    unknown = sorted(set(local_conf) - set(allowed))
    if unknown:
        raise ValueError("vsize-dev-identity: unknown option(s): %s"
                         % ", ".join(unknown))
    kwargs = {k: v for k, v in local_conf.items() if k in allowed}

    LOG.warning(
        "glance_vsize.glance.devauth is loaded: EVERY request to this Glance "
        "API is treated as an authenticated ADMIN of project %s, with no "
        "authentication at all. This filter is for development and testing "
        "only; never use it in a real deployment.",
        kwargs.get("project_id", DEFAULT_PROJECT_ID))

    def _filter(app):
        return DevIdentityMiddleware(app, **kwargs)
    return _filter
