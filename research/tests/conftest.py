"""research/tests: the lab's tests (`pytest research/tests` from the repository root).

research/ is not installed: the repository root must be importable. pytest puts the root on
sys.path for its rootdir conftest.py; this makes it explicit, so the tests also run when pytest
is started from elsewhere with this folder as the argument.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
