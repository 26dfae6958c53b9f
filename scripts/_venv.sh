# Sourced by scripts/up and scripts/test: creates .venv on first use and installs the project into it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TASKBUS_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ]; then
    echo "first run: creating $venv and installing taskbus into it (about a minute)..." >&2
    "$python" -m venv "$venv"
elif [ ! -f "$stamp" ]; then
    echo "installing taskbus into $venv (about a minute)..." >&2
elif [ "$root/pyproject.toml" -nt "$stamp" ]; then
    echo "pyproject.toml changed: reinstalling taskbus into $venv..." >&2
fi
# Reinstall only when the project's metadata changed since the last install.
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$root[dev,http,browser]"
    touch "$stamp"
    echo "installed; from now on this step is skipped until pyproject.toml changes" >&2
fi
export PATH="$venv/bin:$PATH"
cd "$root"
