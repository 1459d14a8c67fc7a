"""Where things are: the repository, the recorded Salesforce responses, the test artifacts."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "salesforce"
RESPONSES = FIXTURES / "responses"
ARTIFACTS = REPO / "test-artifacts"
