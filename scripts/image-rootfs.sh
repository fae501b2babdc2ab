#!/usr/bin/env bash
# Proves the image's runtime package list (deploy/image/runtime-packages.txt) complete without a
# container engine: installs exactly those packages into a fresh Debian 12 root with mmdebstrap
# (minbase variant, --no-install-recommends as the Dockerfile does), copies in the clipguard
# binary and the models, and runs `clipguard run` on the sample clips inside it (chroot, no
# network needed: the embedded broker). Needs root (chroot) and Debian's package mirror.
#
#   scripts/image-rootfs.sh [--bin PATH] [--keep]
#
# --bin: the binary to put in the root (default: a release build, made if missing).
# --keep: leave the root in $CLIPGUARD_CACHE/rootfs for a look (removed otherwise).
# Exits 0 when every sample clip got its verdict inside the root.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CLIPGUARD_CACHE:-$HOME/.cache/clipguard}
MODELS=${CLIPGUARD_MODELS:-$CACHE/models}
MIRROR=${CLIPGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
bin=""
keep=false
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --keep) keep=true; shift ;;
    *) echo "image-rootfs: unknown argument $1" >&2; exit 2 ;;
  esac
done
say() { printf 'image-rootfs: %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (mmdebstrap into a folder, chroot)"; exit 1; }
command -v mmdebstrap >/dev/null || {
  say "installing mmdebstrap"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >/dev/null
}
if [ -z "$bin" ]; then
  bin=${CARGO_TARGET_DIR:-target}/release/clipguard
  [ -x "$bin" ] || cargo build --release --locked --bin clipguard
fi
[ -x "$bin" ] || { say "no binary at $bin"; exit 1; }

packages=$(grep -v '^#' deploy/image/runtime-packages.txt | grep -v '^$' | paste -sd, -)
root="$CACHE/rootfs"
rm -rf "$root"
mkdir -p "$root"
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  $keep || rm -rf "$root"
}
trap cleanup EXIT

say "debootstrapping bookworm (minbase) with: $packages"
mmdebstrap --variant=minbase --include="$packages" --aptopt='APT::Install-Recommends "false"' \
  bookworm "$root" \
  "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
  "deb ${MIRROR%/debian}/debian-security bookworm-security main"
du -sh "$root" | awk '{print "image-rootfs: root is " $1 " (packages only); the largest:"}' >&2
chroot "$root" dpkg-query -W -f '${Installed-Size}\t${Package}\n' | sort -rn | head -8 |
  awk -F'\t' '{printf "  %6.1f MB  %s\n", $1 / 1024, $2}' >&2

install -D "$bin" "$root/usr/local/bin/clipguard"
mkdir -p "$root/opt/clipguard/models"
for m in whisper-tiny.en open-nsfw minilm-l6-int8 minilm-l6-tokenizer blazeface-back age-v1 derived; do
  [ -e "$MODELS/$m" ] && cp -a "$MODELS/$m" "$root/opt/clipguard/models/"
done
scripts/make-samples.sh "$root/samples" >/dev/null

# Every library the binary links must resolve inside the root.
missing=$(chroot "$root" ldd /usr/local/bin/clipguard | grep 'not found' || true)
[ -z "$missing" ] || { say "libraries missing in the root:"; echo "$missing" >&2; exit 1; }

mount -t proc proc "$root/proc" 2>/dev/null || say "no /proc in the root (could not mount it); going on"
say "running clipguard run on the sample clips inside the root"
out=$(chroot "$root" /usr/bin/env -i HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin \
  CLIPGUARD_MODELS=/opt/clipguard/models CLIPGUARD_STORE__URL=file:///tmp/store \
  CLIPGUARD_HASHMATCH__BANKS_DIR=/tmp/banks \
  clipguard run --json /samples)
echo "$out" | python3 -c '
import json, sys
for line in sys.stdin:
    v = json.loads(line)
    print("  %-7s %-28s %s" % (v["decision"], v["source"], " ".join(v["reasons"]) or "-"))' >&2
samples=$(find "$root/samples" -maxdepth 1 -type f | wc -l)
verdicts=$(echo "$out" | grep -c '"decision"' || true)
[ "$verdicts" -eq "$samples" ] || { say "$verdicts verdicts for $samples samples"; exit 1; }
say "ok: $verdicts verdicts for $samples sample clips inside a root of exactly the runtime packages"
