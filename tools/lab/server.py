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

"""gunicorn processes: start one on 127.0.0.1, wait until it answers,
stop it.
"""

from importlib import metadata
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from . import releases


def answers(port: int, path: str = '/') -> bool:
    """Something answers HTTP on the port (any status)."""
    try:
        urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path),
                               timeout=2)
    except urllib.error.HTTPError:
        return True     # e.g. Glance's "300 Multiple Choices"
    except Exception:
        return False
    return True


def gunicorn(bin_dir: str, app: str, port: int, error_log: str,
             access_log: str, pidfile: str, env: dict, workers: int = 1,
             extra: tuple = ()) -> subprocess.Popen:
    """Start gunicorn serving ``app`` (module:variable).

    Version-dependent flags (--no-control-socket from gunicorn 27): see
    :func:`releases.gunicorn_flags`.  gthread workers: Glance runs an
    import task in a thread pool of the worker that received the call.
    """
    cmd = [os.path.join(bin_dir, 'gunicorn'),
           '--bind', '127.0.0.1:%d' % port, '--workers', str(workers),
           '--worker-class', 'gthread', '--threads', '4',
           '--timeout', '600', '--graceful-timeout', '30',
           '--error-logfile', error_log, '--access-logfile', access_log,
           '--pid', pidfile,
           *releases.gunicorn_flags(metadata.version('gunicorn')), *extra,
           app]
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)


def wait_ready(proc: subprocess.Popen, port: int, what: str,
               timeout: float, logs=()) -> float:
    """Seconds until ``proc`` answers on ``port``; raises if it exits or
    does not answer within ``timeout``, showing the end of ``logs``.
    """
    t0 = time.monotonic()
    while not answers(port):
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            for log in logs:
                try:
                    with open(log, errors='replace') as f:
                        tail = f.readlines()[-30:]
                except OSError:
                    continue
                sys.stderr.write('==> %s <==\n%s' % (log, ''.join(tail)))
            if proc.poll() is not None:
                raise RuntimeError('%s exited (%s) before it answered'
                                   % (what, proc.returncode))
            raise RuntimeError('%s did not answer within %d s'
                               % (what, timeout))
        time.sleep(0.1)
    return time.monotonic() - t0


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
