"""What the README states about the repository stays true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_bundled_model_count_matches_model_specs():
    count = len(list((ROOT / "model_specs").glob("*/config.json")))
    stated = re.search(r"`model_specs/` holds (\d+) verbatim", README)
    assert stated and int(stated.group(1)) == count


def test_every_linked_repository_file_exists():
    # Relative links and `path/...` mentions of project files must resolve inside the repository
    # (a link into ../shared/ would break for anyone who cloned only the project).
    links = re.findall(r"\]\(((?!https?:)[^)#]+)\)", README)
    assert links, "expected relative links in the README"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing
    assert "shared/reference" not in README
