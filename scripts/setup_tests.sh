#!/usr/bin/env bash
# Everything the test suite needs, on a fresh Debian machine that has Python: the README's test command runs
# this, then pytest. System packages through apt when they are missing (as root; otherwise it stops before
# the suite with one line that names them and the command that installs them): Chromium for the browser
# view's test, Xvfb, openbox and xdotool for the window's, python3-venv for the Triton test server's venv.
# Then the project with every test extra, pytorch-grad-cam (--no-deps: it would replace OpenCV's GUI build
# with opencv-python-headless), and the Triton test server's own venv. Run again, it only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_get() {  # $1: apt options; the rest: packages
  local options="$1"; shift
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $options "$@" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $options "$@" >/dev/null
  else
    echo "setup_tests: missing $*; install them with: sudo apt-get install $options $*, then run this again" >&2
    exit 2
  fi
}

missing_tools() {  # "command:package" pairs -> the packages whose command is not on PATH
  local pair found=""
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || found="$found ${pair##*:}"
  done
  echo "$found"
}

browser="$(missing_tools chromium:chromium)"
[ -z "$browser" ] || apt_get "" $browser
x_tools="$(missing_tools Xvfb:xvfb openbox:openbox xdotool:xdotool)"
[ -z "$x_tools" ] || apt_get --no-install-recommends $x_tools
/usr/bin/python3 -c "import ensurepip" >/dev/null 2>&1 || apt_get "" python3-venv

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[export,dev,torch,docs]"
.venv/bin/python -m pip install -q --no-deps "grad-cam>=1.5"
.venv/bin/python -m tests.helpers.triton_server --prepare >/dev/null
echo "setup_tests: ready (.venv, system packages, the Triton test server's venv)"
