#!/usr/bin/env bash
# Builds lineside_VERSION_ARCH.deb: the agent in a virtualenv under /opt/lineside (everything it
# imports is inside: no network and no pip at install time), the systemd unit, an example config
# as the conffile /etc/lineside/lineside.toml, the example configs and the example udev rule for
# a USB keyboard-wedge scanner under /usr/share/doc/lineside/examples/, and the maintainer scripts
# in packaging/debian/.
#
#   packaging/build-deb.sh [-v VERSION] [-o OUTDIR]
#
# The virtualenv is made with the target's Python (PYTHON, default /usr/bin/python3: Debian's
# python3 >= 3.11) and filled by pip from the project's own wheel plus its dependencies (pip's
# wheel cache makes rebuilds quick). BUILD_DIR (default build/deb) keeps the virtualenv between
# builds: with REUSE_VENV=1 only the project itself is reinstalled (the tests build N and N+1).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
version=""
outdir="$root/dist"
while getopts "v:o:" opt; do
  case "$opt" in
    v) version="$OPTARG" ;;
    o) outdir="$OPTARG" ;;
    *) echo "usage: $0 [-v VERSION] [-o OUTDIR]" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-/usr/bin/python3}"
pip="${PIP:-$root/.venv/bin/pip}"        # a pip that can install into another interpreter
build="${BUILD_DIR:-$root/build/deb}"
if [ -z "$version" ]; then
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml" | head -1)"
fi
arch="$(dpkg --print-architecture)"
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"

stage="$build/stage"
venv_root="$build/venv-root"          # the virtualenv lives at $venv_root/opt/lineside
venv="$venv_root/opt/lineside"
mkdir -p "$build" "$outdir"

echo "building lineside $version ($arch, Python $pyver)" >&2
wheels="$build/wheels"
rm -rf "$wheels"
"$pip" wheel --quiet --no-deps -w "$wheels" "$root" >&2
wheel="$(ls "$wheels"/lineside-*.whl)"

if [ "${REUSE_VENV:-0}" = 1 ] && [ -x "$venv/bin/python" ]; then
  "$pip" --python "$venv/bin/python" install --quiet --no-deps --force-reinstall "$wheel" >&2
else
  rm -rf "$venv_root"
  "$python" -m venv --without-pip "$venv"
  "$pip" --python "$venv/bin/python" install --quiet --no-compile "$wheel" >&2
fi
rm -rf "$stage"
mkdir -p "$stage/opt" "$stage/DEBIAN" "$stage/etc/lineside" "$stage/lib/systemd/system" \
  "$stage/usr/bin" "$stage/usr/share/doc/lineside"
cp -a "$venv" "$stage/opt/lineside"
# The virtualenv was made under $venv_root: point its scripts at /opt/lineside.
grep -rlI --null "$venv" "$stage/opt/lineside/bin" | xargs -0 -r sed -i "s|$venv|/opt/lineside|g"
find "$stage/opt/lineside" -name __pycache__ -type d -prune -exec rm -rf {} +
ln -s /opt/lineside/bin/lineside "$stage/usr/bin/lineside"
install -m 0644 "$here/lineside.service" "$stage/lib/systemd/system/lineside.service"
install -m 0640 "$here/examples/filling-line.toml" "$stage/etc/lineside/lineside.toml"
install -d -m 0755 "$stage/usr/share/doc/lineside/examples"
install -m 0644 "$here"/examples/*.toml "$stage/usr/share/doc/lineside/examples/"
# an example, not active: a site puts its scanner's ids in and copies it to /etc/udev/rules.d/
install -m 0644 "$here/udev/70-lineside-scanner.rules" "$stage/usr/share/doc/lineside/examples/"
install -m 0644 "$root/README.md" "$stage/opt/lineside/README.md"
for script in postinst prerm postrm; do
  install -m 0755 "$here/debian/$script" "$stage/DEBIAN/$script"
done
echo "/etc/lineside/lineside.toml" > "$stage/DEBIAN/conffiles"
size="$(du -sk "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: lineside
Version: $version
Architecture: $arch
Maintainer: Lineside maintainers <lineside@localhost>
Depends: python3 (>= $pyver), python3 (<< ${pyver%.*}.$(( ${pyver#*.} + 1 ))), passwd
Recommends: mosquitto-clients
Section: misc
Priority: optional
Installed-Size: $size
Description: shop-floor traceability edge agent
 Reads barcode scanners and line PLCs, stamps batch trace codes, stores every event
 durably in a local SQLite outbox and pushes it over MQTT, HTTP or files.
CONTROL

deb="$outdir/lineside_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip -z1 --build "$stage" "$deb" >&2
echo "$deb"
