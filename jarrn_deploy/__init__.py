"""The project's one import namespace: the ``jarrn`` command and the facts every step shares (errors, exit codes), and
above them the packages ``jarrn_deploy.model``, ``.export``, ``.runtime`` and ``.benchmarks``. Imports nothing heavy.

Installed (``pip install -e .`` or a wheel), those packages are found through pyproject.toml's ``package-dir``. In a
source checkout that is not installed (a copy on a machine without a package index, Triton's Python-backend stub),
their folders sit beside this one and are added to the namespace's search path here, so ``python -m
jarrn_deploy.<folder>.<module>`` runs from the checkout's root (or with it on ``PYTHONPATH``) all the same.
"""

import os as _os

_CHECKOUT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if (_os.path.isfile(_os.path.join(_CHECKOUT, "pyproject.toml"))
        and _os.path.isfile(_os.path.join(_CHECKOUT, "runtime", "__init__.py")) and _CHECKOUT not in __path__):
    __path__.append(_CHECKOUT)
