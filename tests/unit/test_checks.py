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

"""Every check the engine can fail is declared, and the option that names
checks accepts exactly the declared ones.
"""

import ast
import pathlib
import re
import subprocess
import sys

from oslo_config import cfg
import pytest

from glance_vsize import checks
from glance_vsize import conf as vsize_conf
from glance_vsize import containers
from glance_vsize import registry

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / 'glance_vsize'

#: Who answers for the checks a module raises: the modules of one format
#: or container, and the engine's arbitration.
OWNERS = {
    'engine.py': ['engine'],
    'containers/base.py': ['engine'],
    'formats/qcow2.py': ['qcow2'],
    'formats/qcow2_extensions.py': ['qcow2'],
    'formats/qed.py': ['qed'],
    'formats/vmdk.py': ['vmdk'],
    'formats/vmdk_descriptor.py': ['vmdk'],
    'formats/vhd.py': ['vhd'],
    'formats/vhdx.py': ['vhdx'],
    'formats/vhdx_bat.py': ['vhdx'],
    'formats/vhdx_log.py': ['vhdx'],
    'formats/vdi.py': ['vdi'],
    'formats/ploop.py': ['ploop'],
    'formats/luks.py': ['luks'],
    'formats/iso.py': ['iso'],
    'formats/gpt.py': ['gpt', 'mbr'],
    'containers/compressed.py': ['compressed', 'ova'],
    'containers/decoders.py': ['compressed', 'ova'],
    'containers/zstd.py': ['compressed'],
    'containers/ova.py': ['ova'],
    'containers/ovf.py': ['ova'],
    'containers/tar.py': ['ova'],
}

#: Calls whose first string argument (for ``add``/``_abort``: second) is a
#: check name.
CHECK_CALLS = {'fail': 0, 'FormatError': 0, 'ContainerError': 0,
               '_error': 0, '_abort': 1, 'add': 1, 'record': 0}

#: Where a check name is passed on in a variable rather than spelled out:
#: (module, source of the call).  Each forwards a name raised elsewhere.
FORWARDERS = {
    ('containers/base.py', 'self.failures.setdefault(check, reason)'),
    ('containers/base.py',
     "result.failures.setdefault(check, '%s: %s' % (where, reason))"),
    ('containers/base.py',
     "result.warnings.setdefault(check, '%s: %s' % (where, reason))"),
    ('containers/base.py', 'self.add(result, check, reason)'),
    ('containers/base.py', 'result.record(check, reason, self.policy)'),
    ('containers/base.py', 'self.failures.setdefault(exc.check, exc.reason)'),
    ('containers/ova.py', 'self.fail(check, reason)'),
    ('containers/ova.py', 'self.fail(exc.check, exc.reason)'),
    ('engine.py', 'probe.fail(check, reason)'),
    ('engine.py', 'probe.fail(exc.check, exc.reason)'),
    ('engine.py', 'result.record(check, reason, policy)'),
    # The warning of a format accepted as raw is named after its inspector.
    ('engine.py', 'result.warnings[as_raw.name]'),
    ('formats/base.py', 'self.failures.setdefault(check, reason)'),
    ('formats/qcow2_extensions.py', 'header.fail(exc.check, exc.reason)'),
    ('formats/vhdx.py', 'base.FormatError(check, reason % args)'),
}


def _failures_target(node):
    text = ast.unparse(node)
    return 'failures' in text or 'warnings' in text


def raised(module):
    """``(literal check names, forwarding call sources)`` of a module (or
    of source text).
    """
    names, forwarded = set(), set()
    if module.endswith('.py'):
        module = (PACKAGE / module).read_text()
    tree = ast.parse(module)
    for node in ast.walk(tree):
        arg = None
        if isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, 'attr', getattr(func, 'id', None))
            if name == 'setdefault' and _failures_target(func.value):
                index = 0
            elif name in CHECK_CALLS and not (
                    name == 'add' and len(node.args) != 3):
                index = CHECK_CALLS[name]
            else:
                continue
            if len(node.args) <= index:
                continue
            arg = node.args[index]
        elif isinstance(node, ast.Subscript) and isinstance(
                node.ctx, ast.Store) and _failures_target(node.value):
            arg = node.slice
        else:
            continue
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names.add(arg.value)
        else:
            forwarded.add(ast.unparse(node))
    return names, forwarded


#: The helpers of formats/base.py that fail checks for a format.
BASE_HELPERS = ('read_exact', 'Reader')


def test_base_helpers_checks_are_declared_by_their_users():
    """A format that reads through a helper of formats/base.py declares
    the checks the helper can fail.
    """
    source = (PACKAGE / 'formats/base.py').read_text()
    catalogue = checks.catalogue()
    for node in ast.parse(source).body:
        if getattr(node, 'name', None) not in BASE_HELPERS:
            continue
        names, forwarded = raised(ast.unparse(node))
        assert names and not forwarded, node.name
        users = {owner for module, owners in OWNERS.items()
                 if re.search(r'\bbase\.%s\b' % node.name,
                              (PACKAGE / module).read_text())
                 for owner in owners}
        for owner in users:
            missing = names - set(catalogue[owner]) - set(
                checks.ENGINE_CHECKS)
            assert not missing, '%s uses base.%s, which can fail %s' % (
                owner, node.name, sorted(missing))


def test_every_engine_module_has_an_owner():
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob('*.py')
               if p.parent.name not in ('glance', 'cmd')
               and p.name != '__init__.py'}
    modules -= {'checks.py', 'conf.py', 'inspection.py', 'registry.py',
                'seekable.py', 'stream.py', 'push.py', 'ranged.py',
                'formats/base.py',
                'formats/crc32c.py'}
    assert modules == set(OWNERS)


@pytest.mark.parametrize('module', sorted(OWNERS))
def test_raised_checks_are_declared_by_their_owner(module):
    catalogue = checks.catalogue()
    names, forwarded = raised(module)
    for owner in OWNERS[module]:
        declared = set(catalogue[owner])
        if owner != 'engine':
            declared |= set(checks.ENGINE_CHECKS)
        missing = names - declared
        assert not missing, '%s raises %s, which %s does not declare' % (
            module, sorted(missing), owner)
    unexpected = {(module, src) for src in forwarded} - FORWARDERS
    assert not unexpected, 'check names passed in variables: %s' % sorted(
        unexpected)


def test_raised_checks_found():
    """The scan sees the calls (a scan that finds nothing proves nothing)."""
    names, _ = raised('formats/qcow2.py')
    assert {'backing_file', 'data_file', 'truncated'} <= names
    names, _ = raised('containers/tar.py')
    assert {'tar_header', 'unsafe_member'} <= names


def test_declared_checks_are_raised_somewhere():
    """A declaration names a check some module can fail."""
    every = set()
    for module in OWNERS:
        every |= raised(module)[0]
    # engine.decide's warning for a format accepted as raw.
    every |= {i.name for i in registry.inspectors() if i.raw_when_declared}
    assert set(checks.names()) <= every


def test_declarations_are_well_formed():
    catalogue = checks.catalogue()
    assert {i.name for i in registry.inspectors()} <= set(catalogue)
    assert set(containers.INSPECTORS) <= set(catalogue)
    for owner, declared in catalogue.items():
        for name, meaning in declared.items():
            assert re.fullmatch(r'[a-z][a-z0-9_]*', name), (owner, name)
            assert meaning and '\n' not in meaning, (owner, name)


def _conf(tmp_path, line):
    path = tmp_path / 'vsize.conf'
    path.write_text('[glance_vsize]\n%s\n' % line)
    conf = cfg.ConfigOpts()
    conf([], project='glance', default_config_files=[str(path)])
    return conf


def test_unknown_nonfatal_check_is_refused_at_load(tmp_path):
    conf = _conf(tmp_path, 'nonfatal_checks = backing_file,backing_files')
    with pytest.raises(ValueError) as exc:
        vsize_conf.register_opts(conf)
    message = str(exc.value)
    assert 'nonfatal_checks' in message
    assert 'unknown check backing_files;' in message
    for name in checks.names():
        assert name in message


def test_known_nonfatal_checks_load(tmp_path):
    conf = _conf(tmp_path, 'nonfatal_checks = backing_file,tar_header')
    policy = vsize_conf.policy(conf)
    assert policy.nonfatal_checks == {'backing_file', 'tar_header'}
    assert not policy.is_fatal('backing_file')


def test_option_help_lists_the_declared_checks():
    opt, = [o for o in vsize_conf.OPTS if o.name == 'nonfatal_checks']
    help_words = set(re.findall(r'[a-z0-9_]+', opt.help))
    assert set(checks.names()) <= help_words


def test_sample_config_is_generated():
    """etc/glance-vsize.conf.sample is what oslo-config-generator writes
    from the options (regenerate it with ``tox -e genconfig``).
    """
    root = PACKAGE.parent
    out = subprocess.run(
        [sys.executable, '-m', 'oslo_config.generator', '--config-file',
         str(root / 'etc/oslo-config-generator/glance-vsize.conf'),
         '--output-file', '/dev/stdout'],
        capture_output=True, text=True, check=True, cwd=root).stdout
    assert out == (root / 'etc/glance-vsize.conf.sample').read_text()
