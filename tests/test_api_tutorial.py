"""examples/tutorial.py runs start to finish as a new user would run it, and says what it did."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_tutorial_runs_in_well_under_a_minute(tmp_path: Path) -> None:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "tutorial.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for step in range(1, 6):
        assert re.search(rf"^{step}\. ", out, re.MULTILINE), f"step {step} missing:\n{out}"
    accuracies = [float(a) for a in re.findall(r"accuracy (0\.\d+|1\.000)", out)]
    assert len(accuracies) >= 3 and min(accuracies[:3]) > 0.85  # breast cancer is easy
    assert "refused as expected: bottom_models[0]: key_holder = 'active'" in out
    assert "classes ('benign', 'malignant')" in out
    assert seconds < 60, f"the tutorial took {seconds:.0f} s"
