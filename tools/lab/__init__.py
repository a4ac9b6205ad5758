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

"""``tools/run-glance``'s lab: a real Glance beside a real Keystone.

One module a job: :mod:`cli` parses the options and runs the rest;
:mod:`ini` edits ini files in place (devstack's iniset); :mod:`glance_etc`
builds Glance's config dir from the wheel's files and the project's
``etc/*.patch``; :mod:`sqlite` makes the embedded databases hold under
concurrency and caches the synced ones; :mod:`keystone` sets up and serves
Keystone; :mod:`identity` creates the lab's projects, users and catalog
through Keystone's API; :mod:`server` runs gunicorn.

Only the standard library is imported at module level, so ``--help``
works before the virtualenv exists.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
