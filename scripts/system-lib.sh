# Shared by scripts/test-system and scripts/test-system-arm64 (sourced, not run).
# Debian roots are built once with debootstrap and kept under .system/, in a folder
# named by a hash of everything that goes into them, so a change of inputs builds anew.

SUITE=bookworm
source "$(dirname "${BASH_SOURCE[0]}")/apt-sources.sh"
MIRROR=$(debian_mirror "$SUITE")
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

# copy_checkout DEST: the checkout as git sees it (tracked and new files, with
# uncommitted edits), without .venv, caches or built roots.
copy_checkout() {
  mkdir -p "$1"
  git ls-files -z --cached --others --exclude-standard | xargs -0 -r cp --parents -t "$1" 2>/dev/null || true
}

# wheelhouse ARCH: prints a folder of wheels for gate's requirements on Debian bookworm
# (CPython 3.11) for ARCH (x86_64 | aarch64), downloaded once by the host's pip and kept
# under .system/ keyed by the requirements; install-pi --wheels installs from it offline.
wheelhouse() {
  local arch=$1 reqs key dir plats=() v
  reqs=$(python3 - <<'PY'
import ast
tree = ast.parse(open("setup.py").read())
for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "install_requires":
        print("\n".join(ast.literal_eval(node.value)))
PY
)
  key=$(printf '%s\n%s\n' "$arch" "$reqs" | sha256sum | cut -c1-16)
  dir="$CACHE/wheels/cp311-$arch-$key"
  if [ ! -e "$dir/.complete" ]; then
    [ -x "$CACHE/pip-venv/bin/pip" ] || python3 -m venv "$CACHE/pip-venv" >&2
    for v in 17 24 27 28 31 34 35 36; do plats+=(--platform "manylinux_2_${v}_$arch"); done
    rm -rf "$dir"; mkdir -p "$dir"
    # shellcheck disable=SC2086
    "$CACHE/pip-venv/bin/pip" download -q --dest "$dir" --only-binary=:all: --python-version 3.11 \
      --implementation cp --abi cp311 --abi abi3 --abi none "${plats[@]}" --platform manylinux2014_"$arch" \
      $reqs setuptools wheel >&2
    touch "$dir/.complete"
  fi
  echo "$dir"
}
