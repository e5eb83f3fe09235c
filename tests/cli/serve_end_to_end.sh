#!/usr/bin/env bash
# msam segment and msam serve on the shared scans with the reference-format checkpoint:
# segment's outputs are bit for bit the recorded ones (the lung's since 2026-12-01, at logit 0,
# when only the part of the mask joined to a foreground click started to follow into further
# windows; the abdomen's and the breast's, with two foreground clicks each, since 2026-11-30,
# when the first window stopped following the mean of the foreground clicks and stays on the
# first while the others lie well inside it), a serve session given the same clicks returns the
# same mask, and SIGTERM stops the server cleanly. Usage: serve_end_to_end.sh <msam binary>
# <shared dir>
set -euo pipefail
MSAM=$1 SHARED=$2
W=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
CKPT=$SHARED/fixtures/checkpoints/msam_format.pth
ABDOMEN=$SHARED/data/abdomen_ct_organs/image.nii.gz
# The whole decompressed file (header with the geometry, then the voxels).
digest() { gunzip -c "$1" | sha256sum | cut -c1-16; }
expect_digest() {  # expect_digest <file> <digest> <what>
  local got; got=$(digest "$1")
  [ "$got" = "$2" ] || fail "$3: digest $got, expected $2"
}

# CT (clamped), three clicks, one of them background.
"$MSAM" --threads 1 segment --checkpoint "$CKPT" --image "$ABDOMEN" \
  --click 60,50,15 --click 70,45,16 --click 40,60,12,bg \
  --out "$W/abdomen.nii.gz" --prob "$W/abdomen_prob.nii.gz" > "$W/segment.log" 2>&1 \
  || { cat "$W/segment.log"; fail "segment"; }
expect_digest "$W/abdomen.nii.gz" 506494bfcbc04f4f "abdomen mask"
expect_digest "$W/abdomen_prob.nii.gz" ab380e7bb8c58b2a "abdomen probabilities"
# MR resampled to 1 mm, all clicks fed.
"$MSAM" --threads 1 segment --checkpoint "$CKPT" --image "$SHARED/data/breast_mr/image.nrrd" \
  --spacing 1 1 1 --multi-click --click 22,60,10 --click 25,58,11 \
  --out "$W/breast.nii.gz" > "$W/segment.log" 2>&1 || { cat "$W/segment.log"; fail "segment MR"; }
expect_digest "$W/breast.nii.gz" 736526f4e66a94c4 "breast MR mask"
# World coordinates (RAS mm), a mask that grows into 4 windows: at logit 0 these untrained
# weights' mask fills the window about the click, a lesion cut by every face (since 2026-12-01
# only the part of the mask joined to a foreground click is followed, where it meets a face with
# a good part of its cross-section; at 0.5 this one stays in the first window). `--modality mr`
# on this CT: unclamped, z-scored over the voxels ≠ 0 (MR's rule since 2026-11-30).
"$MSAM" --threads 1 segment --checkpoint "$CKPT" --image "$SHARED/data/msam_lung_ct/image.nii.gz" \
  --world --ras --click=-64,-64,64 --click=-70,-60,60,bg --modality mr --threshold 0 \
  --out "$W/lung.nii.gz" > "$W/segment.log" 2>&1 || { cat "$W/segment.log"; fail "segment RAS"; }
grep -q "4 window(s)" "$W/segment.log" || { cat "$W/segment.log"; fail "expected 4 windows"; }
expect_digest "$W/lung.nii.gz" af7e45d3e8b55fd6 "lung CT mask"

# The same clicks through a serve session.
"$MSAM" --threads 1 serve --checkpoint "$CKPT" --port 0 --data-root "$SHARED/data" \
  > "$W/serve.out" 2> "$W/serve.err" &
SERVER=$!
for _ in $(seq 300); do grep -q "listening on" "$W/serve.out" && break; sleep 0.1; done
URL=$(sed -n 's/^msam serve: listening on //p' "$W/serve.out")
[ -n "$URL" ] || { cat "$W/serve.err"; fail "serve did not start"; }
curl -sf "$URL/api/health" | grep -q '"ok"' || fail "health"
ID=$(curl -sf -X POST -H 'Content-Type: application/json' \
  -d '{"path": "abdomen_ct_organs/image.nii.gz"}' "$URL/api/sessions" | jq -r .id)
for c in '[60,50,15],"label":"fg"' '[70,45,16],"label":"fg"' '[40,60,12],"label":"bg"'; do
  curl -sf -X POST -H 'Content-Type: application/json' -d "{\"point\":$c}" \
    "$URL/api/sessions/$ID/clicks" > "$W/click.json" || fail "click $c"
done
[ "$(jq .clicks "$W/click.json")" = 3 ] || fail "click count"
curl -sf "$URL/api/sessions/$ID/mask" -o "$W/served.nii.gz" || fail "mask download"
cmp <(gunzip -c "$W/served.nii.gz") <(gunzip -c "$W/abdomen.nii.gz") || fail "serve mask differs from segment's"
curl -sf -X DELETE "$URL/api/sessions/$ID" > /dev/null || fail "delete"

# SIGTERM: a clean stop with status 0.
kill -TERM "$SERVER"
status=0
wait "$SERVER" || status=$?
SERVER=""
[ "$status" = 0 ] || { cat "$W/serve.err"; fail "serve exited with $status on SIGTERM"; }
grep -q "stopped on signal" "$W/serve.err" || { cat "$W/serve.err"; fail "no clean stop"; }
echo "serve end-to-end: all checks passed"
