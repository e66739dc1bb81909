"""The test suite on every CPython from 3.10 on that this machine has: ``make test-all``.

Interpreters are found on PATH (``python3.10`` ... ``python3.14``) and in pyenv's versions
directory, which is put on PATH here (these machines ship 3.10-3.13 as pyenv interpreters
without activating them). Each session installs brace with its ``test`` extra in its own
virtualenv and runs the suite as ``make test`` does: without the tests marked ``slow`` (the
fault matrix's promised outages; ``pytest -m slow`` and ``make faults`` run them); the
real-server integration tests
(PostgreSQL, redis-server, the fault server) run on every interpreter. The classifiers in
pyproject.toml list exactly these versions.

    nox                      # every interpreter found
    nox -s tests-3.13        # one
    nox -- -k database       # arguments after -- go to pytest
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

SUPPORTED = ("3.10", "3.11", "3.12", "3.13", "3.14")
"""CPython versions brace supports (requires-python >= 3.10), newest last."""

nox.options.error_on_missing_interpreters = False
nox.options.default_venv_backend = "venv"  # stdlib: nothing more to install per interpreter


def _with_pyenv_on_path() -> None:
    """Append pyenv's interpreters to PATH so nox finds ``python3.X`` there too."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not root.is_dir():
        return
    bins = [str(path / "bin") for path in sorted(root.iterdir()) if (path / "bin").is_dir()]
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *bins])


_with_pyenv_on_path()
PYTHONS = [version for version in SUPPORTED if shutil.which(f"python{version}")]
if os.environ.get("BRACE_NOX_SKIP") in PYTHONS:
    # CI runs `make test` on its own interpreter first: the matrix adds the others.
    PYTHONS.remove(os.environ["BRACE_NOX_SKIP"])


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The suite on one interpreter, slow-marked tests excepted, integration included."""
    session.install("-e", ".[test]")
    args = session.posargs or ["-q", "-p", "no:randomly"]  # pyproject deselects slow tests
    session.run("python", "-m", "pytest", *args, env={"PYTHONDONTWRITEBYTECODE": "1"})
