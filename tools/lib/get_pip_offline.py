# ec2fleet: offline get-pip for ansible-test (written by tools/sanity)
"""Does get-pip.py's job for ansible-test's sanity virtualenvs without ci-files.testing.ansible.com.

ansible-test creates each sanity virtualenv without pip, then runs
`python get_pip_<version>.py <pip install args>` with a get-pip.py it downloads from
ci-files.testing.ansible.com and caches under ~/.ansible/test/cache/ (its error message says to
put the script there by hand when the download cannot work). That host is not reachable here;
PyPI is. This script is what tools/sanity puts there instead: it copies the pip package that
tools/bootstrap installed from PyPI into a temporary directory (the package only, no metadata, so
the new virtualenv does not see a pip as installed) and runs it with the same arguments, so the
virtualenv gets exactly the pip version ansible-test asks for, from PyPI.

The controller's pip directory is filled in by tools/sanity when it writes this file.
"""

import os
import shutil
import sys
import tempfile

PIP_PACKAGE = "@PIP_PACKAGE@"
# get-pip.py's own switches: it adds setuptools and wheel unless told not to; this script never does.
GET_PIP_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main():
    with tempfile.TemporaryDirectory(prefix="get-pip-offline.") as work:
        shutil.copytree(PIP_PACKAGE, os.path.join(work, "pip"))
        sys.path.insert(0, work)
        from pip._internal.cli.main import main as pip_main

        return pip_main(["install", *(a for a in sys.argv[1:] if a not in GET_PIP_OPTIONS)])


if __name__ == "__main__":
    sys.exit(main())
