"""Stand-in for the get-pip.py bootstrap script ansible-test downloads.

ansible-test creates its sanity virtualenvs without pip and bootstraps pip
with a get-pip.py it fetches from a host outside the package registries. This
script does the same job with the pip wheel Debian ships beside python3-venv
(/usr/share/python-wheels): it runs that pip, which installs the pip version
ansible-test asks for, and then the pinned sanity requirements, from PyPI.
.ci/run puts it where ansible-test looks for its cached copy.
"""

import glob
import runpy
import sys

WHEELS = sorted(glob.glob('/usr/share/python-wheels/pip-*.whl'))
if not WHEELS:
    sys.exit('get-pip stand-in: no pip wheel in /usr/share/python-wheels (apt install python3-pip-whl)')
sys.path.insert(0, WHEELS[-1])
# get-pip.py takes pip's install arguments and two switches of its own.
sys.argv[1:] = ['install'] + [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
runpy.run_module('pip', run_name='__main__', alter_sys=True)
