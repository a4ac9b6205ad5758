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


"""The etc/*.patch files are exact edits to the files the glance wheel
ships: each applies with ``patch`` to the wheel's own file, and the result
loads with paste.deploy (the paste file) and oslo.config (glance-api.conf).

The loading runs in a child Python so that Glance's global configuration
stays out of the other tests.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
ETC = os.path.join(REPO, 'etc')

metadata = pytest.importorskip('importlib.metadata')


def _wheel_file(name):
    """Path of etc/glance/NAME as the installed glance wheel ships it."""
    try:
        dist = metadata.distribution('glance')
    except metadata.PackageNotFoundError:
        pytest.skip('glance is not installed (tools/setup-venv installs it)')
    for f in dist.files or ():
        if str(f).endswith('etc/glance/' + name):
            return str(f.locate())
    pytest.fail('the glance wheel ships no etc/glance/%s' % name)


def _patched(tmp_path, name):
    """Apply etc/NAME.patch to the wheel's NAME in tmp_path; return it."""
    if shutil.which('patch') is None:
        pytest.skip('patch (Debian package patch) is not installed')
    shutil.copy(_wheel_file(name), tmp_path / name)
    with open(os.path.join(ETC, name + '.patch'), 'rb') as patch:
        proc = subprocess.run(['patch', '-p1', '--forward', '--batch',
                               '-d', str(tmp_path)], stdin=patch,
                              capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'fuzz' not in proc.stdout and 'offset' not in proc.stdout, \
        'the patch does not fit the wheel exactly: ' + proc.stdout
    return str(tmp_path / name)


def _child(script, *args):
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(script)] +
                          list(args), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


_LOAD_PASTE = '''
    import json, sys
    from glance.common import config
    from glance.common import wsgi_app  # noqa: F401 (Glance's CLI options)
    from oslo_config import cfg
    from paste import deploy
    from paste.deploy import loadwsgi
    paste, conf, cache = sys.argv[1:]
    config.parse_args(args=['--config-file', conf])
    cfg.CONF.set_override('image_cache_dir', cache)  # the caching flavors
    uri = 'config:' + paste
    pipelines = loadwsgi.loadcontext(loadwsgi.APP, uri, name='api').config()
    chains = {}
    for flavor in ('keystone', 'keystone+caching',
                   'keystone+cachemanagement'):
        cfg.CONF.set_override('flavor', flavor, group='paste_deploy')
        # The composite Glance serves: /healthcheck and / (the pipeline).
        deploy.loadapp(uri, name='glance-api-' + flavor)
        app, chain = deploy.loadapp(uri, name='api'), []
        while app is not None and len(chain) < 30:
            chain.append(type(app).__name__)
            app = next((getattr(app, a) for a in ('application', 'app',
                        '_app') if getattr(app, a, None) is not None), None)
        chains[flavor] = chain
    print(json.dumps({'pipelines': {k: v for k, v in pipelines.items()
                                    if isinstance(v, str)},
                      'chains': chains}))
'''


def test_paste_patch_puts_vsize_right_after_context(tmp_path):
    paste = _patched(tmp_path, 'glance-api-paste.ini')
    conf = _wheel_file('glance-api.conf')
    got = _child(_LOAD_PASTE, paste, conf, str(tmp_path / 'cache'))
    keystone = {k: v.split() for k, v in got['pipelines'].items()
                if k.startswith('keystone')}
    assert set(keystone) == {'keystone', 'keystone+caching',
                             'keystone+cachemanagement'}
    for name, pipeline in keystone.items():
        assert pipeline.count('vsize') == 1, (name, pipeline)
        assert pipeline[pipeline.index('context') + 1] == 'vsize', name
    # The flavors without keystone have no request identity to look the
    # image up with: the patch leaves them alone.
    for name in ('default', 'caching', 'cachemanagement'):
        assert 'vsize' not in got['pipelines'][name].split()
    # What paste.deploy really built: the filter's middleware wraps what
    # comes after Glance's context middleware.
    for flavor, chain in got['chains'].items():
        assert 'VirtualSizeMiddleware' in chain, (flavor, chain)
        i = chain.index('VirtualSizeMiddleware')
        assert chain[i - 1] == 'ContextMiddleware', (flavor, chain)


_LOAD_CONF = '''
    import json, sys
    import oslo_messaging.opts
    from glance.common import config
    from glance.common import wsgi_app  # noqa: F401 (Glance's CLI options)
    from oslo_config import cfg
    config.parse_args(args=['--config-file', sys.argv[1]])
    for group, opts in oslo_messaging.opts.list_opts():
        cfg.CONF.register_opts(opts, group=group)
    print(json.dumps({
        'require_image_format_match':
            cfg.CONF.image_format.require_image_format_match,
        'driver': cfg.CONF.oslo_messaging_notifications.driver,
        'flavor': cfg.CONF.paste_deploy.flavor}))
'''


def test_glance_api_conf_needs_no_edit(tmp_path):
    """glance_vsize needs Glance's own defaults in glance-api.conf: its
    format check on, no notification driver of glance_vsize's.
    """
    assert not os.path.exists(os.path.join(REPO, 'etc',
                                           'glance-api.conf.patch'))
    got = _child(_LOAD_CONF, _wheel_file('glance-api.conf'))
    assert got['require_image_format_match'] is True
    assert 'glance_vsize' not in got['driver']


def test_patches_touch_nothing_else(tmp_path):
    """Every hunk of the patches is one of glance_vsize's edits: the
    result differs from the wheel's file only in lines naming vsize or
    commenting on them.
    """
    for name in ('glance-api-paste.ini',):
        with open(_wheel_file(name)) as f:
            before = f.read().splitlines()
        with open(_patched(tmp_path, name)) as f:
            after = f.read().splitlines()
        added = [line for line in after if line not in before]
        assert added, name
        removed = [line for line in before if line not in after]
        for line in removed:
            assert line.startswith('keystone'), (name, line)
        code = [line for line in added
                if line.strip() and not line.startswith('#')]
        assert all('vsize' in line for line in code), (name, code)
