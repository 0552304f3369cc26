"""Package layout: the repository's `experiments/` folder installs as `jaxpapers.experiments`.

Every paper folder is found here, so adding a paper is adding a folder; the rest of the
metadata is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=(find_packages(include=["jaxpapers", "jaxpapers.*", "kernels_pallas", "kernels_pallas.*"])
              + ["jaxpapers.experiments"]
              + [f"jaxpapers.experiments.{p}" for p in find_packages("experiments")]),
    package_dir={"jaxpapers.experiments": "experiments"},
)
