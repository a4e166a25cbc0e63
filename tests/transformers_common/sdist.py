"""The common test files of the installed transformers release, taken from its sdist at test time.

transformers' wheels carry no tests; its sdist carries `tests/*.py` (the common testers, among them
`test_modeling_common.py` and `test_configuration_common.py`), but none of the sub-folders. The sdist of exactly the
installed version is downloaded once with pip into `~/.cache/qface/transformers-tests/<version>/` (under
`$XDG_CACHE_HOME` when set) and reused from there; its top-level `tests/*.py` are extracted into a package,
`transformers_common_tests`, next to the stand-ins for the three modules those two files import from sub-folders
the sdist lacks (see `write_stand_ins`). Nothing of it is copied into this repository.

Any failure (no network, no sdist for this version, an import error) raises `CommonTestsUnavailable`, which the test
module turns into a failing test: the common suite must always run in CI, never be skipped.
"""

from __future__ import annotations

import importlib
import os
import pprint
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import transformers

PACKAGE = "transformers_common_tests"
DOWNLOAD_TIMEOUT_S = 600
_COMPLETE = ".complete"


class CommonTestsUnavailable(RuntimeError):
    """transformers' common test files could not be fetched, extracted or imported."""


def cache_dir(version: str = transformers.__version__) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qface" / "transformers-tests" / version


def download_sdist(version: str, directory: Path) -> Path:
    """`transformers-<version>.tar.gz` in `directory`, downloaded with pip unless it is already there."""
    target = directory / f"transformers-{version}.tar.gz"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        f"transformers=={version}",
        "--dest",
    ]
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as tmp:
        try:
            result = subprocess.run([*command, tmp], capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise CommonTestsUnavailable(f"`{' '.join(command)} {tmp}` did not finish: {error}") from error
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise CommonTestsUnavailable(
                f"`{' '.join(command)} {tmp}` failed (exit {result.returncode}); its last lines:\n"
                + "\n".join(output[-15:])
            )
        found = sorted(Path(tmp).glob("transformers-*.tar.gz"))
        if len(found) != 1:
            raise CommonTestsUnavailable(f"pip download of transformers=={version} left {[p.name for p in found]}")
        os.replace(found[0], target)  # atomic: a concurrent run sees the whole file or none
    return target


def extract_tests(sdist: Path, version: str, directory: Path) -> Path:
    """Extracts the sdist's top-level `tests/*.py` into `directory/PACKAGE` (once) and returns that folder."""
    package = directory / PACKAGE
    if (package / _COMPLETE).is_file():
        return package
    prefix = f"transformers-{version}/tests/"
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".extract-"))
    try:
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                rest = name[len(prefix) :] if name.startswith(prefix) else ""
                # Only top-level test files, written by name: no sub-folders, no paths taken from the archive.
                if member.isfile() and rest.endswith(".py") and "/" not in rest:
                    source = tar.extractfile(member)
                    (staging / rest).write_bytes(source.read())
        needed = ("test_modeling_common.py", "test_configuration_common.py")
        missing = [name for name in needed if not (staging / name).is_file()]
        if missing:
            raise CommonTestsUnavailable(f"{sdist} has no tests/{' or tests/'.join(missing)}")
        (staging / _COMPLETE).write_text(f"transformers {version} tests/*.py from {sdist.name}\n")
        shutil.rmtree(package, ignore_errors=True)  # a partial extraction
        try:
            os.replace(staging, package)
        except OSError:
            if not (package / _COMPLETE).is_file():  # else a concurrent run has just put it there
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return package


def write_stand_ins(package: Path, config_common_kwargs: dict) -> None:
    """Minimal stand-ins for the modules the common test files import from sub-folders the sdist does not ship.

    - `__init__.py`: the sdist has no `tests/__init__.py`, but the common files use relative imports, and
      `test_configuration_common.py` executes this file (`direct_transformers_import(Path(__file__).parent)`, which
      then returns the real `transformers`). It stays empty.
    - `exporters/test_export.py`: `test_modeling_common.py` imports `ExportTesterMixin` from it as the base class of
      `ModelTesterMixin`. An empty mixin: the export tests (torch.export / ONNX / ExecuTorch / OpenVINO / TensorRT
      back ends) are not in the sdist, so they do not run.
    - `generation/test_utils.py`: `test_modeling_common.py` imports `GenerationTesterMixin` only to check (in
      `test_generation_tester_mixin_inheritance`) that testers of models that can generate inherit it. Q-Face
      cannot generate and its test must not inherit it, so an empty class keeps that check meaningful.
    - `utils/test_configuration_utils.py`: `test_configuration_common.py` imports `config_common_kwargs` from it
      (used by `ConfigTester.check_config_arguments_init`); written from the constant given (the real dict, kept in
      `qface_tester.py`).
    """
    header = f'"""Stand-in written by Q-Face\'s tests ({Path(__file__).name}): the sdist lacks tests/{{}}/."""\n\n'
    files = {
        "__init__.py": "",
        "exporters/__init__.py": "",
        "exporters/test_export.py": header.format("exporters") + "\nclass ExportTesterMixin:\n    pass\n",
        "generation/__init__.py": "",
        "generation/test_utils.py": header.format("generation") + "\nclass GenerationTesterMixin:\n    pass\n",
        "utils/__init__.py": "",
        "utils/test_configuration_utils.py": (
            header.format("utils") + f"config_common_kwargs = {pprint.pformat(config_common_kwargs, sort_dicts=False)}"
            "\n"
        ),
    }
    for relative, text in files.items():
        path = package / relative
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def load_common_test_modules(config_common_kwargs: dict) -> tuple[ModuleType, ModuleType]:
    """`test_modeling_common` and `test_configuration_common` of the installed transformers release."""
    version = transformers.__version__
    directory = cache_dir(version)
    sdist = download_sdist(version, directory)
    package = extract_tests(sdist, version, directory)
    write_stand_ins(package, config_common_kwargs)
    if str(directory) not in sys.path:
        sys.path.append(str(directory))
    try:
        modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
        configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    except Exception as error:  # noqa: BLE001 - any import failure must fail the suite with its cause
        raise CommonTestsUnavailable(
            f"importing transformers {version}'s common tests from {package} failed: {type(error).__name__}: {error}"
        ) from error
    return modeling, configuration
