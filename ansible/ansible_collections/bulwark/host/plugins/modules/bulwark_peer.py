#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Bulwark contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r'''
---
module: bulwark_peer
short_description: Add or remove a WireGuard peer of a Bulwark host
description:
  - Makes sure an admin's WireGuard peer is present on, or absent from, the VPN that the host's
    Bulwark profile manages (C(bulwarkctl add-peer) and C(remove-peer)). Peers are added live,
    without restarting the interface.
  - A peer is known by its O(name) and, when given, its O(public_key). A peer of that name with
    another key is replaced.
  - When the module adds a peer it returns the client configuration, once. Bulwark does not keep it
    (with a generated key pair it holds the admin's private key), so the result is marked no_log and
    must be stored straight away; see the examples.
version_added: 0.1.0
author:
  - Bulwark contributors (!UNKNOWN)
options:
  name:
    description:
      - The peer's unique name (1-32 of C(a-z A-Z 0-9 . _ -), starting with a letter or digit).
    type: str
    required: true
  state:
    description:
      - Whether the peer should be there.
    type: str
    choices: [present, absent]
    default: present
  public_key:
    description:
      - The admin's own WireGuard public key (base64). Without it Bulwark generates a key pair and the
        client configuration holds the private key.
    type: str
  address:
    description:
      - A specific VPN address for a new peer; the next free one by default.
    type: str
  expires:
    description:
      - Lifetime of a new peer, such as C(30d) or C(12h); the profile's C(peer_expiry) by default.
    type: str
extends_documentation_fragment:
  - bulwark.host.bulwarkctl
attributes:
  check_mode:
    support: full
    description: Says whether the peer would be added, replaced or removed; changes nothing.
  diff_mode:
    support: none
    description: Nothing to show as a diff.
  platform:
    support: full
    platforms: posix
    description: Linux hosts running bulwarkd.
  action:
    support: full
    description: Marks a result that holds a client configuration no_log.
seealso:
  - module: bulwark.host.bulwark_profile
'''

EXAMPLES = r'''
- name: Onboard alice with her own key
  bulwark.host.bulwark_peer:
    name: alice
    public_key: hJ7kX0ZQ0y2c2JmYp4tY1aDgk3y8T0c2n0m0rX1V3kE=
    expires: 90d
  register: alice

- name: Keep the client config (shown once) on the controller, readable by you only
  ansible.builtin.copy:
    content: "{{ alice.client_config }}"
    dest: "secrets/{{ inventory_hostname }}-alice.conf"
    mode: "0600"
  delegate_to: localhost
  no_log: true
  when: alice.client_config is defined

- name: Offboard bob
  bulwark.host.bulwark_peer:
    name: bob
    state: absent
'''

RETURN = r'''
peer:
  description: The peer as bulwarkd lists it (C(name), C(address), C(public_key), C(created), C(expires), ...).
  returned: when the peer is present, or was removed
  type: dict
client_config:
  description:
    - The wg-quick configuration for the admin. Returned only by the run that adds the peer; the
      whole result is then marked no_log.
  returned: when the peer was added
  type: str
action:
  description: What was done, or would be in check mode (C(added), C(replaced), C(removed), C(none)).
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bulwark.host.plugins.module_utils.bulwarkctl import (
    COMMON_ARGS,
    Bulwarkctl,
    BulwarkctlError,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            public_key=dict(type='str', no_log=False),
            address=dict(type='str'),
            expires=dict(type='str'),
            **COMMON_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params
    ctl = Bulwarkctl(module)
    try:
        peers = ctl.call('peers')
        found = next((peer for peer in peers if peer.get('name') == p['name']), None)
        if p['state'] == 'absent':
            if found is None:
                module.exit_json(changed=False, action='none')
            if not module.check_mode:
                found = ctl.call('remove-peer', p['name'], '--yes')
            module.exit_json(changed=True, action='removed', peer=found)

        key = p['public_key']
        if found is not None and (key is None or found.get('public_key') == key):
            module.exit_json(changed=False, action='none', peer=found)
        action = 'added' if found is None else 'replaced'
        if module.check_mode:
            module.exit_json(changed=True, action=action, peer=found)
        if found is not None:
            ctl.call('remove-peer', p['name'], '--yes')
        args = ['add-peer', p['name']]
        for option in ('public_key', 'address', 'expires'):
            if p[option] is not None:
                args += ['--' + option.replace('_', '-'), p[option]]
        added = ctl.call(*args)
    except BulwarkctlError as e:
        module.fail_json(**e.fail_args())
    # The config is the only copy there will ever be; the action plugin
    # keeps it out of every display, only the registered result has it.
    module.exit_json(changed=True, action=action, peer=added.get('peer'), client_config=added.get('client_config'))


if __name__ == '__main__':
    main()
