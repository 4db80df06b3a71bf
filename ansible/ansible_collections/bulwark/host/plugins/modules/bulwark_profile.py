#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Bulwark contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations

DOCUMENTATION = r'''
---
module: bulwark_profile
short_description: Converge a host to a Bulwark profile, safely
description:
  - Renders a Bulwark profile on the controller (O(src), a Jinja2 template, or O(content)), validates
    it on the host, and applies it with C(bulwarkctl apply) inside a confirm window.
  - After the apply the controller reaches the host again over a B(new) connection and only then
    confirms the generation. An SSH ControlMaster is stopped first, because an existing connection
    survives a lock-out (the firewall sees it as established). A profile that cuts the controller
    off is therefore never confirmed and reverts on its own when its window closes; the task fails, so
    a rolling play stops there.
  - Reports C(changed) only when the plan was not empty. Check mode is a dry run; with C(--diff) it
    shows the plan as before and after.
version_added: 0.1.0
author:
  - Bulwark contributors (!UNKNOWN)
options:
  src:
    description:
      - A Jinja2 template of the profile on the controller, rendered there with the host's variables
        (like M(ansible.builtin.template)). Handled by the action plugin; the host only ever sees the
        rendered text.
      - Mutually exclusive with O(content).
    type: path
  content:
    description:
      - The profile's TOML text.
      - Mutually exclusive with O(src).
    type: str
  source:
    description:
      - The name bulwarkctl gives the profile in errors and in the generation.
      - Default is the file name of O(src) without C(.j2), else C(ansible).
    type: str
  confirm_timeout:
    description:
      - Seconds the change stays unconfirmed before it reverts by itself (C(bulwarkctl apply --confirm)).
        It must cover O(wait) plus the time a new connection to the host takes.
      - V(0) applies without a confirm window, and so without the reconnect check. Not recommended.
        At most V(86400) (a day).
    type: int
    default: 120
  wait:
    description:
      - After the apply, wait up to this many seconds until the host's health is not CRITICAL
        (C(bulwarkctl apply --wait)); a host that stays CRITICAL fails the task and, with a confirm
        window, is not confirmed.
      - V(0) does not wait; at most V(3600).
    type: int
    default: 60
  force:
    description:
      - Apply even when a guard refuses (C(bulwarkctl apply --force)). That is bulwarkctl's SSH guard, when
        the profile drops the SSH session the module runs in (the confirm window is then what brings the
        host back), and bulwarkd's own, such as moving to IMA enforce while files would be denied.
    type: bool
    default: false
  confirm_generation:
    description:
      - Confirm this generation and do nothing else (C(bulwarkctl confirm --generation)). The action
        plugin sets it itself, over the new connection, after an apply; set it by hand only to confirm
        a generation applied earlier.
      - Another generation awaiting confirmation is never confirmed.
    type: int
extends_documentation_fragment:
  - bulwark.host.bulwarkctl
attributes:
  check_mode:
    support: full
    description: A dry run (C(bulwarkctl apply --dry-run)); nothing changes.
  diff_mode:
    support: full
    description: The plan, as the items it removes or changes (before) and adds or changes (after).
  platform:
    support: full
    platforms: posix
    description: Linux hosts running bulwarkd.
  action:
    support: full
    description: Renders O(src) on the controller and confirms over a new connection.
seealso:
  - module: bulwark.host.bulwark_info
  - module: bulwark.host.bulwark_peer
'''

EXAMPLES = r'''
- name: Converge to the fleet profile, one host at a time
  hosts: vps
  serial: 1
  max_fail_percentage: 0
  gather_facts: false
  tasks:
    - name: Apply the rendered profile; confirmed only once the host answers a new connection
      bulwark.host.bulwark_profile:
        src: templates/vps.toml.j2
        confirm_timeout: 120
        wait: 60

- name: Dry run with the plan as a diff
  bulwark.host.bulwark_profile:
    src: templates/vps.toml.j2
  check_mode: true
  diff: true

- name: Confirm a generation applied by hand earlier
  bulwark.host.bulwark_profile:
    confirm_generation: 7
'''

RETURN = r'''
generation:
  description: The generation in force after the task (unchanged for an empty plan or a dry run).
  returned: success
  type: int
  sample: 7
digest:
  description: SHA-256 of the profile text sent (compare with C(status.digest) of M(bulwark.host.bulwark_info)).
  returned: success
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
plan:
  description: What the apply changed or, in check mode, would change; one entry per item.
  returned: success
  type: list
  elements: dict
  contains:
    module:
      description: The Bulwark module that owns the change (C(firewall), C(wireguard), C(k3s), C(profile)).
      type: str
    op:
      description: C(add), C(remove) or C(change).
      type: str
    what:
      description: What changes, in the module's own words.
      type: str
    before:
      description: The value in force, where the module has one.
      type: raw
    after:
      description: The value the change puts in force, where the module has one.
      type: raw
pending_generation:
  description: The generation the apply left awaiting confirmation, before the confirm step.
  returned: when a change was applied with a confirm window
  type: int
confirm_deadline:
  description: Unix time at which the generation reverts unless confirmed.
  returned: when a change was applied with a confirm window
  type: int
confirmed:
  description: Whether the generation was confirmed over a new connection.
  returned: when a change was applied with a confirm window
  type: bool
health:
  description: The host's health after the wait (C(OK), C(WARNING)); a CRITICAL host fails the task.
  returned: when a change was applied with O(wait)
  type: str
  sample: WARNING
kind:
  description: What failed, as bulwarkctl names it (C(invalid_profile), C(ssh_lockout), C(conflict),
    C(wait_timeout), C(unreachable), ...).
  returned: failure
  type: str
profile_errors:
  description: Every validation error of an invalid profile, each with C(file), C(path) and C(reason).
  returned: failure
  type: list
  elements: dict
'''

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bulwark.host.plugins.module_utils.bulwarkctl import (
    COMMON_ARGS,
    CONFLICT,
    Bulwarkctl,
    BulwarkctlError,
)

SIGNS = {'add': '+', 'remove': '-', 'change': '~'}


def show(value):
    """A plan value as bulwarkctl prints it: strings bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return '(none)'
    return json.dumps(value, sort_keys=True, separators=(',', ':'))


def plan_diff(plan, before_header, after_header):
    """The plan as Ansible's before/after diff: every removed or changed
    item on the before side, every added or changed one on the after side."""
    before, after = [], []
    for c in plan:
        what = '%s: %s' % (c.get('module', '?'), c.get('what', ''))
        op = c.get('op')
        has_before, has_after = 'before' in c, 'after' in c
        if op == 'remove':
            before.append('%s: %s' % (what, show(c['before'])) if has_before else what)
        elif op == 'add':
            after.append('%s: %s' % (what, show(c['after'])) if has_after else what)
        elif c.get('before') is not None or c.get('after') is not None:
            # A value that appears or goes shows on one side only.
            if c.get('before') is not None:
                before.append('%s: %s' % (what, show(c['before'])))
            if c.get('after') is not None:
                after.append('%s: %s' % (what, show(c['after'])))
        else:
            after.append('~ %s' % what)
    return dict(
        before=''.join(line + '\n' for line in before),
        after=''.join(line + '\n' for line in after),
        before_header=before_header,
        after_header=after_header,
    )


def confirm(module, ctl, generation):
    try:
        answer = ctl.call('confirm', '--generation', str(generation))
    except BulwarkctlError as e:
        if e.rc == CONFLICT:
            # A retried confirm after one that went through but whose answer was lost.
            status = ctl.call('status')
            if status.get('generation') == generation and not status.get('pending_confirm'):
                module.exit_json(changed=False, generation=generation, confirmed=True, digest=status.get('digest'))
        module.fail_json(generation=generation, confirmed=False, **e.fail_args())
    module.exit_json(changed=True, generation=generation, confirmed=True, digest=answer.get('digest'))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            content=dict(type='str'),
            source=dict(type='str'),
            confirm_timeout=dict(type='int', default=120),
            wait=dict(type='int', default=60),
            force=dict(type='bool', default=False),
            confirm_generation=dict(type='int'),
            **COMMON_ARGS
        ),
        mutually_exclusive=[('src', 'content'), ('content', 'confirm_generation'), ('src', 'confirm_generation')],
        required_one_of=[('content', 'confirm_generation', 'src')],
        supports_check_mode=True,
    )
    p = module.params
    if p['src'] is not None:
        module.fail_json(msg='src is rendered by the bulwark.host.bulwark_profile action plugin; '
                             'call the module through it (the fully qualified name does), or pass content')
    # bulwarkctl's own bounds: a confirm window of at most a day, a wait of at most an hour.
    for name, most in (('confirm_timeout', 86400), ('wait', 3600)):
        if not 0 <= p[name] <= most:
            module.fail_json(msg='%s must be between 0 and %d seconds, not %d' % (name, most, p[name]))
    ctl = Bulwarkctl(module)
    if p['confirm_generation'] is not None:
        if module.check_mode:
            module.exit_json(changed=False, generation=p['confirm_generation'], confirmed=False)
        confirm(module, ctl, p['confirm_generation'])

    source = p['source'] or 'ansible'
    data = p['content'].encode('utf-8')
    apply_args = ['apply', '-', '--source', source]
    try:
        # Validation on the host first: its errors are the clearest failure.
        ctl.call('validate', '-', '--source', source, data=data)
        if module.check_mode:
            answer = ctl.call(*(apply_args + ['--dry-run']), data=data)
        else:
            if p['confirm_timeout']:
                apply_args += ['--confirm', str(p['confirm_timeout'])]
            if p['wait']:
                apply_args.append('--wait=%d' % p['wait'])
            if p['force']:
                apply_args.append('--force')
            answer = ctl.call(*apply_args, data=data)
    except BulwarkctlError as e:
        extra = {}
        applied = e.body.get('apply')
        if isinstance(applied, dict):
            # --wait ran out: the change is in force (and pending, with a window).
            extra = dict(generation=applied.get('generation'), plan=applied.get('plan', {}).get('changes', []),
                         confirm_deadline=applied.get('confirm_deadline'), changed=bool(applied.get('changed')),
                         health=(e.body.get('health') or {}).get('level'))
        module.fail_json(**dict(e.fail_args(), **extra))

    plan = answer.get('plan', {}).get('changes', [])
    result = dict(
        changed=bool(plan) if module.check_mode else bool(answer.get('changed')),
        generation=answer.get('generation'),
        digest=answer.get('digest'),
        plan=plan,
    )
    if answer.get('confirm_deadline'):
        result.update(pending_generation=answer.get('generation'), confirm_deadline=answer['confirm_deadline'])
    if 'health' in answer:
        result['health'] = answer['health'].get('level')
    if module._diff:
        if result['changed'] and not module.check_mode:
            in_force = 'in force before generation %s' % answer.get('generation')
        else:
            in_force = 'generation %s, in force' % answer.get('generation')
        sent = '%s (sha256 %s)' % (source, (answer.get('digest') or '')[:12])
        result['diff'] = plan_diff(plan, in_force, sent)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
