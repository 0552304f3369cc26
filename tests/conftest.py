"""Test set-up: 8 fake CPU devices (before any device is touched).

XLA's CPU thread pool is sized for them by `import jaxpapers`, as in a user's process: no
test-only variable (jaxpapers/_cpu_pool.py).
"""

import os
import re

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_num_cpu_devices", 8)

import pytest  # pylint: disable=g-import-not-at-top

import jaxpapers  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import


@pytest.fixture(scope="session")
def smoke_report(tmp_path_factory):
  """`smoke_report(name)`: experiment NAME's smoke reproduction, run at most once per session.

  Returns an object with `record` (report.json's record), `folder` (its report folder) and
  `overrides`. The registry-parametrized test of tests/test_house_rules.py and the tests of a
  paper's own smoke results share this one run. It runs on one device (`mesh.data=1`), as
  `jaxpapers reproduce NAME --preset smoke` does on a one-device machine.
  """
  from types import SimpleNamespace  # pylint: disable=g-import-not-at-top

  from jaxpapers.core import experiment, registry  # pylint: disable=g-import-not-at-top
  runs = {}

  def run(name: str):
    if name not in runs:
      runs[name] = None  # a failed run is not repeated by the next test that asks for it
      exp = registry.load_experiment(name)
      overrides = ["mesh.data=1"] if hasattr(exp.presets["smoke"], "mesh") else []
      out = tmp_path_factory.mktemp(f"smoke_{name}")
      record = experiment.reproduce(exp, "smoke", out, overrides=overrides)
      runs[name] = SimpleNamespace(record=record, folder=out / name, overrides=overrides)
    if runs[name] is None:
      pytest.fail(f"the smoke reproduction of {name} raised earlier in this session (see that test)")
    return runs[name]

  return run


_SMOKE_CALL = re.compile(r"""smoke_report\(\s*["'](\w+)["']""")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  """Groups tests for pytest-xdist's `--dist loadgroup` (README's command runs 2 workers).

  A test file stays on one worker, so its module-scoped fixtures (shared compiled functions)
  are built once; an experiment's smoke run (`smoke_report`) is shared by the registry-wide
  test of that experiment and the experiment's own test file, so both go to one group. Without
  xdist the marks do nothing.
  """
  sources: dict[str, list[str]] = {}
  for item in items:
    if item.get_closest_marker("xdist_group"):
      continue
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "smoke_report" in getattr(item, "fixturenames", ()) and "name" in params:
      group = f"smoke:{params['name']}"
    else:
      path = str(item.path)
      if path not in sources:
        sources[path] = sorted(set(_SMOKE_CALL.findall(item.path.read_text())))
      names = sources[path]
      group = f"smoke:{names[0]}" if len(names) == 1 else item.nodeid.split("::")[0]
    item.add_marker(pytest.mark.xdist_group(group))
