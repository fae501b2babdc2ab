#!/usr/bin/env bash
# Proves the image's runtime package list (deploy/image/runtime-packages.txt) complete without a
# container engine: installs exactly those packages into a fresh Debian 12 root with mmdebstrap
# (minbase variant, --no-install-recommends as the Dockerfile does), copies in the clipguard
# binary and the models, and runs `clipguard run` inside it (chroot, no network needed: the
# embedded broker) on the sample clips plus H.265 and AV1 in MP4, VP9 in WebM and H.264 in
# MPEG-TS: each must decode (only the deliberately truncated sample may fail). Needs root
# (chroot), the host's GStreamer encoders (scripts/setup.sh) and Debian's package mirror.
#
#   scripts/image-rootfs.sh [--bin PATH] [--packages FILE] [--keep]
#
# --bin: the binary to put in the root (default: a release build, made if missing).
# --packages: another package list to try (default deploy/image/runtime-packages.txt).
# --keep: leave the root in $CLIPGUARD_CACHE/rootfs for a look (removed otherwise).
# Exits 0 when every clip got its verdict inside the root and every valid one decoded.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CLIPGUARD_CACHE:-$HOME/.cache/clipguard}
MODELS=${CLIPGUARD_MODELS:-$CACHE/models}
MIRROR=${CLIPGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
bin=""
list=deploy/image/runtime-packages.txt
keep=false
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --packages) list=$2; shift 2 ;;
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

packages=$(grep -v '^#' "$list" | grep -v '^$' | paste -sd, -)
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
chroot "$root" dpkg-query -W -f '${Installed-Size}\t${Package}\n' | sort -rn |
  awk -F'\t' 'NR <= 8 {printf "  %6.1f MB  %s\n", $1 / 1024, $2}' >&2

install -D "$bin" "$root/usr/local/bin/clipguard"
mkdir -p "$root/opt/clipguard/models"
# What the default configuration loads (`models list` marks it), and the converted files.
configured=$("$bin" models list --json | grep '"configured":true' | sed 's/.*"name":"\([^"]*\)".*/\1/')
for m in $configured derived; do
  [ -e "$MODELS/$m" ] && cp -a "$MODELS/$m" "$root/opt/clipguard/models/"
done
scripts/make-samples.sh "$root/samples" >/dev/null
# The codecs and containers generators use beyond the samples' H.264/VP8 (encoded here, on the
# host, whose GStreamer has the encoders): each must decode inside the root.
gst() { gst-launch-1.0 -q videotestsrc num-buffers=50 ! video/x-raw,width=320,height=240,framerate=25/1 ! "$@" >/dev/null; }
gst x265enc speed-preset=ultrafast ! h265parse ! mp4mux ! filesink location="$root/samples/hevc.mp4"
gst av1enc cpu-used=8 usage-profile=realtime ! av1parse ! mp4mux ! filesink location="$root/samples/av1.mp4"
gst vp9enc deadline=1 ! webmmux ! filesink location="$root/samples/vp9.webm"
gst x264enc speed-preset=ultrafast ! h264parse ! mpegtsmux ! filesink location="$root/samples/h264.ts"

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
# A verdict is not enough: every clip but the truncated sample must have decoded.
undecoded=$(echo "$out" | python3 -c '
import json, sys
for line in sys.stdin:
    v = json.loads(line)
    errors = [r for r in v["reasons"] if r.startswith("media_error:")]
    if errors and not v["source"].endswith("corrupt.mp4"):
        print(v["source"], " ".join(errors))')
[ -z "$undecoded" ] || { say "clips that did not decode inside the root:"; echo "$undecoded" >&2; exit 1; }
say "ok: $verdicts verdicts, every valid clip decoded, inside a root of exactly the runtime packages"
