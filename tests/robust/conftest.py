"""Fixtures and path setup of the robustness tests (bad-input corpus, fault injection).

The helper modules (:mod:`faultsim`, :mod:`corpus`) live next to the tests; this folder is not a
package, so it is appended to ``sys.path`` for ``import faultsim``.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)
