"""One rule for tests that need a part a developer's machine may lack (root, a test user, a Debian
package): skipped there, never under CI, which installs and starts everything (`make test`), so a
part missing in CI fails the test instead of passing it unseen."""

from __future__ import annotations

import os

import pytest


def needs(available: bool, reason: str) -> pytest.MarkDecorator:
    """``skipif(not available)`` outside CI; under CI (``CI`` set) the test always runs."""
    return pytest.mark.skipif(not available and not os.environ.get("CI"), reason=reason)
