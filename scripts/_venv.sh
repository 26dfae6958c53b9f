# Sourced by scripts/up and scripts/test: creates .venv on first use and installs the project into it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TASKBUS_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# Reinstall only when the project's metadata changed since the last install.
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$root[dev]"
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
