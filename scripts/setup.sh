#!/usr/bin/env bash
# Set up Wan Desktop in ./.venv on Debian/Ubuntu (or any Linux with the packages below).
#
#   scripts/setup.sh          the app: engine, API, GUI, explainer
#   scripts/setup.sh --dev    the same plus the test and lint tools
#
# Idempotent: a second run installs only what is missing. Versions come from
# requirements/constraints.txt so every machine gets the same set.
# TORCH_SPEC picks the torch build (default: torch==2.13.0, CPU wheel where one is provided);
# on a CUDA machine install a CUDA build of the same version first, for example
#   .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
set -euo pipefail
cd "$(dirname "$0")/.."

extras="all"
for arg in "$@"; do
    case "$arg" in
        --dev) extras="dev" ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

# Qt offscreen and X11 (GUI and its tests), PulseAudio client (QtMultimedia imports), fonts
# (DejaVu as the fallback, Inter for the app's UI), Cairo/Pango headers (manim builds pycairo and
# manimpango), bubblewrap (the sandbox explainer scenes render in), Xvfb for real-window tests.
apt_packages=(
    libegl1 libgl1 libglib2.0-0 libfontconfig1 libfreetype6 libxkbcommon0 libdbus-1-3
    fonts-dejavu-core fonts-inter libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0
    libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1
    libpulse0 libcairo2-dev libpango1.0-dev pkg-config bubblewrap xvfb xauth
)

install_system_packages() {
    command -v dpkg-query >/dev/null 2>&1 || {
        echo "setup.sh: not a Debian-based system; make sure these are installed: ${apt_packages[*]}" >&2
        return 0
    }
    local missing=()
    for pkg in "${apt_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
            echo "setup.sh: please install as root: apt-get install ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "setup.sh: installing system packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python() {
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
            echo "$candidate"
            return 0
        fi
    done
    echo "setup.sh: Python 3.11 or newer is required" >&2
    exit 1
}

install_system_packages

if [ ! -x .venv/bin/python ]; then
    "$(find_python)" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check --quiet)

# pip's own exit status, with the noise of unreachable extra index folders filtered out.
pip_install() {
    "${pip[@]}" install "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
export PIP_NO_WARN_SCRIPT_LOCATION=1

# torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
if ! .venv/bin/python -c 'import torch' >/dev/null 2>&1; then
    echo "setup.sh: installing $torch_spec"
    pip_install "$torch_spec"
fi

echo "setup.sh: installing wan-desktop[$extras]"
pip_install -c requirements/constraints.txt -e ".[$extras]"
.venv/bin/python -c 'import wan_desktop' # fail loudly if the install did not take
echo "setup.sh: ready (.venv/bin/wan)"
