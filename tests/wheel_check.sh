#!/usr/bin/env bash
# The model card and push tests against the package installed from a built wheel (not the source tree), so that
# package data such as modeling_qface/model_card.md can never go missing again (issue 9).
#
#   bash tests/wheel_check.sh [PYTHON]      # PYTHON: the interpreter whose packages the check reuses (default: python)
#
# Builds the wheel (no dependencies), installs it into a fresh virtual environment that sees PYTHON's installed
# packages (--system-site-packages; nothing is downloaded), and runs tests/test_push_to_hub.py and
# tests/test_hub_http.py from a copy of the tests outside the source tree, checking that `modeling_qface` is the
# wheel's copy. About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip wheel --no-deps --no-build-isolation -q -w "$work/dist" .
# A venv on top of PYTHON's environment: the dependencies come from there, the qface package from the wheel. Where
# PYTHON is itself a venv, its site-packages are added through a .pth file (--system-site-packages only reaches the
# base interpreter's).
base="$("$PYTHON" -c 'import sys; print(sys.base_prefix)')"
"$base/bin/python3" -m venv --system-site-packages "$work/venv"
site="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
venv_site="$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$site" > "$venv_site/zz-reuse-deps.pth"
# The editable install of the source tree must not shadow the wheel: its finder/.pth files are not on this venv's
# own path, and the wheel's copy is installed into the venv's site-packages, which comes first.
"$work/venv/bin/python" -m pip install -q --no-deps --no-index --force-reinstall "$work"/dist/qface-*.whl
mkdir "$work/run"
cp -r tests "$work/run/tests"
cd "$work/run"
"$work/venv/bin/python" - <<PY
import modeling_qface, modeling_qface.hub as hub
assert "$venv_site" in modeling_qface.__file__, modeling_qface.__file__
assert hub.MODEL_CARD_TEMPLATE.is_file(), hub.MODEL_CARD_TEMPLATE
print("wheel install:", modeling_qface.__file__)
PY
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_push_to_hub.py tests/test_hub_http.py \
    -k "not test_card_template_is_package_data"
