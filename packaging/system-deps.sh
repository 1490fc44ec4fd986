#!/usr/bin/env bash
# Installs the system packages a make target needs, when they are missing (apt: Debian, Ubuntu).
#
#   packaging/system-deps.sh [--check] PROFILE    venv | demo | test (each includes the ones before)
#
# --check only prints the missing packages (one line) and exits 1 if there are any.
# As root it runs apt-get; otherwise it uses sudo if there is one, else it prints the apt-get
# line to run and fails. Nothing is downloaded but Debian packages: never a browser.
set -euo pipefail

# One need per line: the first profile that needs it, how to tell it is there, the Debian
# package that brings it, and optionally `not-on=ID` (an /etc/os-release ID where the package
# is left alone, with the reason printed). "How to tell": a command name (looked up on PATH
# and in /usr/sbin and /sbin), an absolute path (a glob: any match will do), or py:MODULE
# (importable by $PYTHON).
# A new need (a PostgreSQL, NATS or RabbitMQ server for the tests) is one more line.
NEEDS='
venv  py:ensurepip        python3-venv                      # python3 -m venv (Debian ships ensurepip apart)
demo  mosquitto           mosquitto                         # the broker the demo and the tests start on their own ports
demo  mosquitto_sub       mosquitto-clients                 # the demo prints a mosquitto_sub line to watch its events
demo  /usr/lib/postgresql/*/bin/pg_ctl  postgresql          # initdb and pg_ctl: the plant store the demo and the tests start on their own ports
test  /usr/bin/chromium   chromium           not-on=ubuntu  # Playwright drives the Debian chromium in the page tests
test  openssl             openssl                           # test certificates for the TLS tests
test  nats-server         nats-server                       # NATS (JetStream + MQTT) the broker tests start on their own ports
test  /usr/lib/rabbitmq/bin/rabbitmq-server  rabbitmq-server  # a RabbitMQ node (MQTT plugin) the broker tests start on their own ports
'
PROFILES="venv demo test"
WHY_NOT_ON_ubuntu="Ubuntu's chromium package installs a snap, which the page tests do not drive;
  they are skipped (they need /usr/bin/chromium) unless you install a chromium that lives there"

check_only=0
if [ "${1:-}" = "--check" ]; then
  check_only=1
  shift
fi
profile="${1:-test}"
case " $PROFILES " in
  *" $profile "*) ;;
  *) echo "usage: $0 [--check] {${PROFILES// /|}}" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"
os_id="$( (. /etc/os-release 2>/dev/null && echo "${ID:-}") || true)"

present() {
  case "$1" in
    py:*) "$python" -c "import ${1#py:}" >/dev/null 2>&1 ;;
    /*) compgen -G "$1" >/dev/null ;;
    *) PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
wanted=" ${PROFILES%%"$profile"*}$profile "  # this profile and the ones before it
while read -r line; do
  read -r need_profile check package not_on <<< "${line%%#*}"
  [ -n "${need_profile:-}" ] || continue
  case "$wanted" in *" $need_profile "*) ;; *) continue ;; esac
  present "$check" && continue
  if [ -n "${not_on:-}" ] && [ "$not_on" = "not-on=$os_id" ]; then
    why="WHY_NOT_ON_$os_id"
    echo "system-deps: not installing $package here: ${!why:-see packaging/system-deps.sh}" >&2
    continue
  fi
  missing+=("$package")
done <<< "$NEEDS"

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$check_only" = 1 ]; then
  echo "${missing[*]}"
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing: ${missing[*]} (Debian package names; install their equivalents)" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "system-deps: missing system packages: ${missing[*]}" >&2
  echo "install them as root with: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
