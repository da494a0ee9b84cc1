#!/usr/bin/env bash
# Install everything filesim needs on Debian 12+/Ubuntu 22.04+ and bring the NAS servers up on
# podman. Run from the checkout as root (or with sudo): scripts/install.sh [--no-deploy]
set -euo pipefail

readonly APT_PACKAGES=(
  python3 python3-venv python3-pip git ca-certificates
  podman runc catatonit debootstrap   # the podman engine and the registry-free image build
  e2fsprogs                           # each export is an ext4 filesystem of its own (export-fs.sh)
  fuse3                               # the 9p-like share in the sync tests
  inotify-tools                       # the sync agent's NFS-side events (tests run it here too)
  shellcheck                          # nox -s lint
  rsync                               # the research loop the sync benchmark compares with
)

log() { printf '==> %s [%s]\n' "$*" "$(date +%T)"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

check_root() {
  [[ ${EUID} -eq 0 ]] || die "run as root (sudo scripts/install.sh): it installs Debian packages"
}

install_packages() {
  local packages=("${APT_PACKAGES[@]}")
  # cdk8s runs on Node.js; keep a Node the machine already has (e.g. from NodeSource).
  command -v node >/dev/null || packages+=(nodejs)
  log "installing Debian packages: ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
}

install_python_env() {
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "filesim needs Python 3.11 or newer (python3 is $(python3 --version))"
  log "creating .venv with filesim, invoke and nox (the test tools go into nox's environments)"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  pip_install --upgrade pip
  pip_install -e '.[dev]'
}

# pip quietly, without the one warning per package some mirror setups print (a find-links
# folder that lacks the package); its errors still show and still fail the install.
pip_install() {
  .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
}

bring_up() {
  log "building the NAS image (once) and starting the NAS servers on podman"
  .venv/bin/invoke setup --engine podman
  .venv/bin/invoke deploy --engine podman
}

main() {
  cd "$(dirname "$0")/.."
  check_root
  install_packages
  install_python_env
  if [[ ${1:-} != --no-deploy ]]; then
    bring_up
  fi
  log "done: .venv/bin/invoke --list shows what you can do; .venv/bin/nox runs the tests"
}

main "$@"
