"""Test-wide settings.

Hypothesis draws its examples from a fixed seed by default (profile ``reproducible``): a test's outcome is
then a function of the code, so a CI run that passes on a commit passes again on it, and a failure seen
once is seen every time. To search new examples (what a developer does when changing a property's code),
run with ``HYPOTHESIS_PROFILE=explore``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))
