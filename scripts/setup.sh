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

# --- test broker -----------------------------------------------------------------------------
if $want_broker; then
  tansu="$CACHE/tansu/bin/tansu"
  stamp="$CACHE/tansu/.version-$TANSU_VERSION"
  mkdir -p "$CACHE/tansu"
  # Two runs at once (a test run beside a demo) build once: the second waits for the first.
  exec 9>"$CACHE/tansu/.lock"
  flock 9
  if [ -x "$tansu" ] && [ -f "$stamp" ]; then
    say "tansu $TANSU_VERSION present"
  else
    say "building tansu $TANSU_VERSION with SQLite storage (once; about 10 minutes on 2 cores)"
    # A test broker, not a production one: built without optimisations (9 CPU-minutes instead
    # of about 30; it still moves the suite's few thousand small messages in time).
    CARGO_TARGET_DIR="$CACHE/tansu/target" CARGO_PROFILE_RELEASE_OPT_LEVEL=0 \
      CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 CARGO_PROFILE_RELEASE_DEBUG=false \
      CARGO_INCREMENTAL=0 cargo install tansu --version "$TANSU_VERSION" \
      --locked --features libsql --root "$CACHE/tansu" --force
    touch "$stamp"
    rm -rf "$CACHE/tansu/target"
  fi
fi

# --- cargo-deny ------------------------------------------------------------------------------
if $want_deny; then
  deny="$CACHE/cargo-deny/bin/cargo-deny"
  stamp="$CACHE/cargo-deny/.version-$DENY_VERSION"
  mkdir -p "$CACHE/cargo-deny"
  exec 8>"$CACHE/cargo-deny/.lock"
  flock 8
  if [ -x "$deny" ] && [ -f "$stamp" ]; then
    say "cargo-deny $DENY_VERSION present"
  else
    say "building cargo-deny $DENY_VERSION (once; about 4 minutes on 2 cores)"
    CARGO_TARGET_DIR="$CACHE/cargo-deny/target" CARGO_INCREMENTAL=0 \
      cargo install cargo-deny --version "$DENY_VERSION" --locked --root "$CACHE/cargo-deny" --force
    touch "$stamp"
    rm -rf "$CACHE/cargo-deny/target"
  fi
  echo "$deny"
fi
