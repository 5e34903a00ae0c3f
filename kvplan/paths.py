"""Where data from outside the package lives: in the checkout, or copied into an installed wheel.

setup.py copies model_specs/, tests/golden/ and docs/validation/ into the wheel as kvplan/model_specs,
kvplan/golden and kvplan/validation; a source checkout (or an editable install) reads them in place.
"""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def bundled(name: str, repo_path: str) -> Path:
    """kvplan/<name> when an installed wheel carries it, else <checkout>/<repo_path>."""
    packaged = PACKAGE / name
    return packaged if packaged.is_dir() else PACKAGE.parent / repo_path
