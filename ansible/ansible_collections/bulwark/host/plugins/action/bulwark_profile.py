# -*- coding: utf-8 -*-
# Copyright: Bulwark contributors
# SPDX-License-Identifier: Apache-2.0

"""Controller side of bulwark.host.bulwark_profile.

Renders ``src`` here, runs the module on the host (validate, then apply
with a confirm window), and, when the apply left a generation waiting for
confirmation, drops the connection, reaches the host again over a new one
and confirms that generation there. Dropping the connection matters: an
SSH ControlMaster (Ansible's default) keeps one TCP connection open, and a
firewall that now drops new SSH connections still passes that one as
established, so confirming over it would keep a profile that locks the
controller out.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure, AnsibleError
from ansible.plugins.action import ActionBase

MODULE = 'bulwark.host.bulwark_profile'


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def _render(self, src, task_vars):
        try:
            path = self._find_needle('templates', src)
        except AnsibleError as e:
            raise AnsibleActionFail('src: %s' % e)
        lookup = self._shared_loader_obj.lookup_loader.get(
            'ansible.builtin.template', loader=self._loader, templar=self._templar)
        rendered = lookup.run([path], variables=task_vars)
        return path, rendered[0] if rendered else ''

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect

        args = dict(self._task.args)
        src = args.pop('src', None)
        if src is not None:
            if args.get('content') is not None:
                raise AnsibleActionFail('src and content are mutually exclusive')
            path, args['content'] = self._render(src, task_vars)
            if not args.get('source'):
                name = os.path.basename(path)
                args['source'] = name[:-3] if name.endswith('.j2') else name

        applied = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        result.update(applied)
        generation = applied.get('pending_generation')
        if applied.get('failed') or generation is None or self._task.check_mode:
            return result

        # A new connection, or the lock-out goes unnoticed.
        self._connection.reset()
        confirm_args = dict(confirm_generation=generation)
        for key in ('bulwarkctl', 'socket'):
            if args.get(key) is not None:
                confirm_args[key] = args[key]
        deadline = applied.get('confirm_deadline')
        try:
            confirmed = self._execute_module(module_name=MODULE, module_args=confirm_args, task_vars=task_vars)
        except AnsibleConnectionFailure as e:
            confirmed = dict(unreachable=True, msg=str(e))
        if confirmed.get('unreachable') or confirmed.get('failed') or not confirmed.get('confirmed'):
            result.update(
                failed=True,
                confirmed=False,
                msg='generation %s was applied, but it could not be confirmed over a new connection '
                    '(%s); it reverts by itself when its window closes (Unix time %s)'
                    % (generation, confirmed.get('msg', 'no answer'), deadline),
            )
            return result
        result.update(confirmed=True, generation=generation)
        return result
