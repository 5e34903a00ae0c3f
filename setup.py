"""Build hook: the wheel carries the bundled model configs (top-level model_specs/) as kvplan/model_specs.

Everything else is in pyproject.toml. In a source checkout kvplan reads ../model_specs directly
(kvplan.registry.specs_dir), so the configs exist once in the repository.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithSpecs(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install reads the checkout's model_specs/ in place
            shutil.copytree(ROOT / "model_specs", Path(self.build_lib) / "kvplan" / "model_specs",
                            dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithSpecs})
