# -*- coding: utf-8 -*-
# Copyright: Bulwark contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import annotations


class ModuleDocFragment(object):
    # Options every module of the collection shares.
    DOCUMENTATION = r'''
options:
  bulwarkctl:
    description:
      - Path or name of C(bulwarkctl) on the managed host.
    type: path
    default: bulwarkctl
  socket:
    description:
      - bulwarkd's API socket on the managed host.
      - Default is bulwarkctl's own (C(BULWARK_SOCKET), else C(/run/bulwark/bulwarkd.sock)).
    type: path
notes:
  - The module talks to bulwarkd only through C(bulwarkctl --json) on the managed host, so it needs
    the rights bulwarkctl needs there (root or group C(bulwark-admin) to change the host, group
    C(bulwark) to read), and bulwarkctl's SSH guard and local validation apply as they do to a person.
requirements:
  - bulwarkctl and a running bulwarkd on the managed host.
'''
