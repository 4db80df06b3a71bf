#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Bulwark contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r'''
---
module: bulwark_info
short_description: Gather facts about a Bulwark host
description:
  - Reads what bulwarkd enforces and how the host is doing (C(bulwarkctl status), C(health),
    C(generations), C(peers) and C(--version)) and returns it as the fact C(bulwark).
  - Changes nothing. Needs group C(bulwark) (or root) on the host.
version_added: 0.1.0
author:
  - Bulwark contributors (!UNKNOWN)
extends_documentation_fragment:
  - bulwark.host.bulwarkctl
attributes:
  check_mode:
    support: full
    description: Reads only, so it runs in check mode too.
  diff_mode:
    support: none
    description: Nothing to show as a diff.
  facts:
    support: full
    description: Sets the fact C(bulwark).
  platform:
    support: full
    platforms: posix
    description: Linux hosts running bulwarkd.
seealso:
  - module: bulwark.host.bulwark_profile
'''

EXAMPLES = r'''
- name: Read the host's Bulwark state
  bulwark.host.bulwark_info:

- name: Hosts whose boot profile differs from what is in force, or that drifted
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }}: {{ bulwark.status.boot_profile.reason }}"
  when: (bulwark.status.boot_profile.differs | default(false)) or bulwark.health.level != 'OK'
'''

RETURN = r'''
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: dict
  contains:
    bulwark:
      description: The host's Bulwark state.
      returned: always
      type: dict
      contains:
        version:
          description: Versions of bulwarkctl on the host (C(ctl)) and of the running bulwarkd (C(daemon)).
          type: dict
          sample: {ctl: 0.1.0, daemon: 0.1.0}
        status:
          description: C(bulwarkctl status --json) (generation, C(digest) of the profile in force, drift,
            C(pending_confirm), C(boot_profile), modules, ...).
          type: dict
        health:
          description: C(bulwarkctl health --json); C(level) is C(OK), C(WARNING) or C(CRITICAL).
          type: dict
        generations:
          description: C(bulwarkctl generations --json), oldest first, each with its C(digest).
          type: list
          elements: dict
        peers:
          description: C(bulwarkctl peers --json) (empty without a VPN).
          type: list
          elements: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bulwark.host.plugins.module_utils.bulwarkctl import (
    COMMON_ARGS,
    Bulwarkctl,
    BulwarkctlError,
)


def main():
    module = AnsibleModule(argument_spec=dict(**COMMON_ARGS), supports_check_mode=True)
    ctl = Bulwarkctl(module)
    try:
        status = ctl.call('status')
        facts = dict(
            version=dict(ctl=ctl.version(), daemon=status.get('version')),
            status=status,
            # health exits with its level (1 WARNING, 2 CRITICAL): an answer, not a failure.
            health=ctl.run(['health'], ok_codes=(0, 1, 2))[1],
            generations=ctl.call('generations'),
            peers=ctl.call('peers'),
        )
    except BulwarkctlError as e:
        module.fail_json(**e.fail_args())
    module.exit_json(changed=False, ansible_facts=dict(bulwark=facts))


if __name__ == '__main__':
    main()
