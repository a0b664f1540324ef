"""mypy over start_ray and the protocol tests' fakes: the seams are
Protocols (start_ray/contracts.py), so a fake that drifts from the real
class it stands for (a missing method, another signature) fails here, not
silently in a green protocol test. The settings are setup.cfg's [mypy]."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_package_and_the_fakes_type_check_against_the_seams():
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout
