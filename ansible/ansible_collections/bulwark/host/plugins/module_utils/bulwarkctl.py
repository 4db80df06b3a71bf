# -*- coding: utf-8 -*-
# Copyright: Bulwark contributors
# SPDX-License-Identifier: Apache-2.0

"""Run ``bulwarkctl --json`` on the managed host and read its answer.

Every module of the collection talks to bulwarkd only through bulwarkctl,
the same client an operator uses, so the SSH guard, local validation and
the exit-code classes apply to Ansible exactly as to a person. With
``--json`` every answer, and every failure, is one JSON document on stdout;
failures carry a ``kind`` (``invalid_profile``, ``conflict``, ...) and exit
with the code of their class (see ``bulwarkctl --help``).
"""

from __future__ import annotations

import json

# Exit codes of bulwarkctl (README.md, "Exit codes").
OK = 0
UNREACHABLE = 3
CONFLICT = 6
LOCKOUT = 8
WAIT_TIMEOUT = 10

COMMON_ARGS = dict(
    bulwarkctl=dict(type='path', default='bulwarkctl'),
    socket=dict(type='path'),
)


class BulwarkctlError(Exception):
    """A failure bulwarkctl reported: its exit code, JSON body and stderr."""

    def __init__(self, args, rc, body, stderr):
        self.args_run = args
        self.rc = rc
        self.body = body if isinstance(body, dict) else {}
        self.stderr = stderr
        self.kind = self.body.get('kind', 'error')
        message = self.body.get('error') or stderr.strip() or 'exit code %d' % rc
        super(BulwarkctlError, self).__init__(message)

    def fail_args(self):
        """What a module reports when it fails because of this error."""
        return dict(
            msg='bulwarkctl %s: %s' % (' '.join(self.args_run), self),
            kind=self.kind,
            rc=self.rc,
            profile_errors=self.body.get('profile_errors', []),
            stderr=self.stderr,
        )


class Bulwarkctl(object):
    """bulwarkctl on the managed host, as the module's parameters name it."""

    def __init__(self, module):
        self.module = module
        self.path = module.get_bin_path(module.params['bulwarkctl'], required=True)
        self.socket = module.params.get('socket')

    def _argv(self, args):
        argv = [self.path, '--json']
        if self.socket:
            argv += ['--socket', self.socket]
        return argv + list(args)

    def run(self, args, data=None, ok_codes=(OK,)):
        """Run ``bulwarkctl --json ARGS`` (``data`` on stdin, byte for byte)
        and return ``(rc, answer)``. An exit code outside ``ok_codes``
        raises BulwarkctlError with the JSON error body."""
        rc, out, err = self.module.run_command(
            self._argv(args),
            data=data,
            binary_data=True,
            check_rc=False,
            expand_user_and_vars=False,
        )
        try:
            body = json.loads(out) if out.strip() else None
        except ValueError:
            body = None
        if rc not in ok_codes:
            raise BulwarkctlError(args, rc, body, err)
        if body is None:
            raise BulwarkctlError(args, rc, {'kind': 'bad_response', 'error': 'no JSON on stdout'}, err)
        return rc, body

    def call(self, *args, **kwargs):
        """Like run(), returning only the answer."""
        return self.run(args, **kwargs)[1]

    def version(self):
        rc, out, err = self.module.run_command([self.path, '--version'], check_rc=False)
        if rc != 0:
            raise BulwarkctlError(['--version'], rc, None, err)
        return out.strip().split()[-1] if out.strip() else ''
