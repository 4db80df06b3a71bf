# -*- coding: utf-8 -*-
# Copyright: Bulwark contributors
# SPDX-License-Identifier: Apache-2.0

"""Controller side of bulwark.host.bulwark_peer: a result that carries a
client config (a private key, a preshared key) is marked no_log, so no
callback, however verbose, shows it; the registered result keeps it."""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        result.update(self._execute_module(module_name='bulwark.host.bulwark_peer', task_vars=task_vars))
        if result.get('client_config') is not None:
            result['_ansible_no_log'] = True
        return result
