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

"""``?plugin=lab_sqlite_immediate`` in a sqlite SQLAlchemy URL: every
transaction starts with ``BEGIN IMMEDIATE``, i.e. takes the write lock
when it begins, waiting for it up to the busy timeout.

oslo.db begins sqlite transactions with a plain (deferred) ``BEGIN``.  A
deferred transaction that reads and then writes (Glance's image_update
does) fails at once with "database is locked" when another connection
wrote in between: SQLite cannot let it write on its stale snapshot, and
does not wait, whatever the busy timeout (SQLITE_BUSY_SNAPSHOT in WAL
mode; the deadlock case of the rollback journal).  Taking the lock first
serialises the transactions instead of failing them.  oslo.db's own begin
listener sees the transaction begun (its ``in_transaction`` marker) and
leaves it alone.
"""

from sqlalchemy.engine import CreateEnginePlugin
from sqlalchemy import event


class ImmediateTransactions(CreateEnginePlugin):

    def update_url(self, url):
        return url     # no arguments of its own; "plugin" is removed

    def engine_created(self, engine):
        if engine.dialect.name != 'sqlite':
            return

        @event.listens_for(engine, 'begin')
        def _begin_immediate(conn):
            if 'in_transaction' not in conn.info:
                conn.exec_driver_sql('BEGIN IMMEDIATE')
                conn.info['in_transaction'] = True
