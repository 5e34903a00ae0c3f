"""Build hook: the wheel carries the bundled model configs (top-level model_specs/) as kvplan/model_specs,
and the golden engine logs and validate reports the app's Accuracy page shows.

Everything else is in pyproject.toml. In a source checkout kvplan reads ../model_specs directly
(kvplan.registry.specs_dir), so the configs exist once in the repository.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


# Data the installed package needs from outside kvplan/: source path -> path inside the package.
# The Accuracy page shows the golden engine logs and the committed validate reports.
BUNDLED = {"model_specs": "model_specs", "tests/golden": "golden", "docs/validation": "validation"}


class BuildPyWithSpecs(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install reads the checkout's folders in place
            for src, dst in BUNDLED.items():
                shutil.copytree(ROOT / src, Path(self.build_lib) / "kvplan" / dst, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("*.png"))


setup(cmdclass={"build_py": BuildPyWithSpecs})
