#!/usr/bin/env bash
# Installs what clipguard needs on Debian 12 (with Rust already installed). Safe to run twice:
# only what is missing is installed.
#   scripts/setup.sh            system packages (GStreamer, protoc, espeak-ng, Festival, cmake, build tools)
#   scripts/setup.sh --broker   ... plus the tansu Kafka-protocol broker the tests run against,
#                               built once into $CLIPGUARD_CACHE (default ~/.cache/clipguard)
#   scripts/setup.sh --deny     ... plus cargo-deny (licence and ban checks), built once there
set -euo pipefail

CACHE=${CLIPGUARD_CACHE:-$HOME/.cache/clipguard}
TANSU_VERSION=0.6.0
DENY_VERSION=0.20.2
want_broker=false
want_deny=false
for arg in "$@"; do
  case "$arg" in
    --broker) want_broker=true ;;
    --deny) want_deny=true ;;
    *) echo "setup: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------------------------
packages=(
  build-essential pkg-config zlib1g-dev python3      # librdkafka's bundled build
  protobuf-compiler                                  # protoc for the schemas crate
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  espeak-ng                                          # speech for sample clips and tests
  festival festvox-us-slt-hts                        # the evaluation's spoken set (natural voice)
  cmake                                              # whisper.cpp (transcribe stage)
  libssl-dev                                         # TLS for model downloads (system CA store)
  openssl                                            # test certificates (gRPC mTLS, Kafka TLS)
  fonts-dejavu-core                                  # the font of the evaluation report's plots
  python3-venv                                       # the ops tools' venv (scripts/ops-setup.sh)
  postgresql                                         # the review stage's tests run a real server
  chromium chromium-driver                           # the review console's browser test (WebDriver)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  say "installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "system packages present"
fi

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    say "adding rust component $component"
    rustup component add "$component" || say "could not add $component; install it with rustup"
  fi
done

# --- tools built once into the cache ----------------------------------------------------------
# `install_once NAME VERSION NOTE [cargo install arguments]`: builds crates.io's NAME at VERSION
# into $CACHE/NAME once (a stamp records the version; two runs at once, a test run beside a demo,
# build once: the second waits on the lock), then drops the build folder. Variables set before
# the call (profile settings) reach the build.
install_once() {
  local name=$1 version=$2 note=$3
  shift 3
  local dir="$CACHE/$name"
  mkdir -p "$dir"
  (
    flock 9
    if [ -x "$dir/bin/$name" ] && [ -f "$dir/.version-$version" ]; then
      say "$name $version present"
      exit 0
    fi
    say "building $name $version ($note)"
    CARGO_TARGET_DIR="$dir/target" CARGO_INCREMENTAL=0 \
      cargo install "$name" --version "$version" --locked --root "$dir" --force "$@"
    touch "$dir/.version-$version"
    rm -rf "$dir/target"
  ) 9>"$dir/.lock"
}

if $want_broker; then
  # A test broker, not a production one: built without optimisations (9 CPU-minutes instead
  # of about 30; it still moves the suite's few thousand small messages in time).
  CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    install_once tansu "$TANSU_VERSION" "with SQLite storage; about 10 minutes on 2 cores" \
    --features libsql
fi

if $want_deny; then
  install_once cargo-deny "$DENY_VERSION" "about 4 minutes on 2 cores"
  echo "$CACHE/cargo-deny/bin/cargo-deny"
fi
