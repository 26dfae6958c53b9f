# Sourced by scripts/test: the dashboard's browser test drives Debian's chromium
# (tests/http/test_dashboard_browser.py); install it when it is missing. Idempotent: once
# /usr/bin/chromium exists this does nothing.
chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
    echo "installing Debian's chromium for the dashboard's browser test (a few minutes)..." >&2
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null; then
        as_root=(sudo -n)
    else
        echo "scripts/_browser.sh: $chromium is missing; install Debian's chromium as root" >&2
        exit 1
    fi
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    echo "chromium installed: $("$chromium" --version)" >&2
fi
