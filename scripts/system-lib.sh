# Shared by scripts/test-system and scripts/test-system-arm64 (sourced, not run).
# Debian roots are built once with debootstrap and kept under .system/, in a folder
# named by a hash of everything that goes into them, so a change of inputs builds anew.

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${GATE_SYSTEM_CACHE:-$PWD/.system}
# What install-pi finds already installed on the image (it checks, and installs what is
# missing; having them in the cached root keeps each run off the package mirror).
BASE_PACKAGES=systemd,systemd-sysv,dbus,procps,ca-certificates,python3,python3-venv,python3-numpy,python3-pil,libzbar0,mosquitto

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "test-system: need root (or sudo) for: $*" >&2; exit 1; fi
}

# ensure_apt PKG...: install the host packages these targets need, as ./run does.
ensure_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "test-system: installing host packages: ${missing[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# What Debian's installer leaves and debootstrap does not: names for the loopback.
base_setup() {
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$1/etc/hosts"
}

# build_root ARCH PACKAGES SETUP_FN: prints the cached root's directory, building it if needed.
# SETUP_FN ROOTDIR runs once after debootstrap (its text is part of the key).
build_root() {
  local arch=$1 pkgs=$2 setup=$3 key dir
  key=$( { echo "$SUITE $arch minbase $pkgs $MIRROR"; declare -f base_setup "$setup"; } | sha256sum | cut -c1-16)
  dir="$CACHE/roots/$SUITE-$arch-$key"
  if [ ! -e "$dir/.complete" ]; then
    mkdir -p "$CACHE/roots"
    exec 9>"$CACHE/roots/.lock"
    flock 9
    if [ ! -e "$dir/.complete" ]; then
      echo "test-system: building the $SUITE $arch root (debootstrap, once; cached in $dir)" >&2
      local t0=$SECONDS
      as_root rm -rf "$dir.tmp"
      as_root mkdir -p "$dir.tmp"
      as_root debootstrap --arch="$arch" --variant=minbase --include="$pkgs" "$SUITE" "$dir.tmp/root" "$MIRROR" \
        > "$CACHE/roots/debootstrap-$arch.log" 2>&1 || {
          tail -20 "$CACHE/roots/debootstrap-$arch.log" >&2; echo "test-system: debootstrap failed" >&2; exit 1; }
      base_setup "$dir.tmp/root"
      "$setup" "$dir.tmp/root"
      as_root rm -rf "$dir"
      as_root mv "$dir.tmp" "$dir"
      as_root touch "$dir/.complete"
      echo "test-system: root built in $((SECONDS - t0)) s" >&2
    fi
    exec 9>&-
  fi
  echo "$dir/root"
}

# The host's package-index settings (pip config, CA bundle), so pip inside the test
# system reaches the same index the host does: "path" lines for files to carry in,
# "NAME=value" lines for the environment.
pip_settings_files() {
  local f
  for f in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" "${REQUESTS_CA_BUNDLE:-}" /etc/pip.conf; do
    [ -n "$f" ] && [ -f "$f" ] && echo "$f"
  done
  return 0
}
pip_settings_env() {
  env | grep -E '^(PIP_(CERT|INDEX_URL|EXTRA_INDEX_URL|TRUSTED_HOST|DEFAULT_TIMEOUT)|SSL_CERT_FILE|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE)=' || true
}

# copy_checkout DEST: the checkout as git sees it (tracked and new files, with
# uncommitted edits), without .venv, caches or built roots.
copy_checkout() {
  mkdir -p "$1"
  git ls-files -z --cached --others --exclude-standard | xargs -0 -r cp --parents -t "$1" 2>/dev/null || true
}
