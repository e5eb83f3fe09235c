#!/usr/bin/env bash
# End-to-end check of the msam command line on a tiny synthetic dataset: synth → prepare →
# train (killed mid-run, then resumed) → eval → scoring other tools' masks → compare → segment →
# convert, plus the error paths a user hits first.
# Usage: cli_end_to_end.sh <msam binary> <shared dir> <source dir>
set -euo pipefail
MSAM=$1 SHARED=$2 SRC=$3
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_error() {  # expect_error "<text in message>" cmd...
  local want=$1; shift
  if "$@" >"$W/err.log" 2>&1; then fail "expected failure: $*"; fi
  grep -qF -- "$want" "$W/err.log" || { cat "$W/err.log"; fail "message lacks '$want'"; }
}
# Every bad input, command-line ones included, exits with 2.
expect_exit2() {  # expect_exit2 "<text in message>" cmd...
  local want=$1 rc=0; shift
  "$@" >"$W/err.log" 2>&1 || rc=$?
  [ "$rc" = 2 ] || { cat "$W/err.log"; fail "exit status $rc, not 2: $*"; }
  grep -qF -- "msam: error: " "$W/err.log" && grep -qF -- "$want" "$W/err.log" \
    || { cat "$W/err.log"; fail "message lacks 'msam: error: ...$want'"; }
}

SET=(--set "data.datasets.0.root=$W/data" --set "output=$W/run" --set loop.iterations=2
     --set model.encoder.depth=1 --set model.encoder.global_attn_indexes=[0]
     --set data.workers=1 --set batch_size=2)

"$MSAM" synth --out "$W/data" --cases 6 --seed 3 >/dev/null
[ "$(ls "$W/data/imagesTr" | wc -l)" = 6 ] || fail "synth wrote the wrong number of images"

"$MSAM" prepare --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" > "$W/prepare.log"
grep -q "cache .*: 4 train, 1 val, 1 test" "$W/prepare.log" || { cat "$W/prepare.log"; fail "prepare split"; }

# A training run killed during epoch 2 resumes from its last checkpoint without loss.
"$MSAM" train --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --set epochs=3 > "$W/train1.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ -f "$W/run/latest.safetensors" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.2
done
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
[ -f "$W/run/latest.safetensors" ] || { cat "$W/train1.log"; fail "no checkpoint before the kill"; }
"$MSAM" train --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --set epochs=3 --resume > "$W/train2.log" 2>&1 \
  || { cat "$W/train2.log"; fail "resume"; }
grep -q "resume: continuing after epoch" "$W/train2.log" || { cat "$W/train2.log"; fail "did not resume"; }
# The kill may interrupt a write; its temporary file must not outlive the resume.
ls "$W/run" | grep -q '\.tmp\.' && fail "a temporary file of the killed run is still there"
[ "$(tail -n +2 "$W/run/metrics.csv" | wc -l)" = 3 ] || { cat "$W/run/metrics.csv"; fail "metrics.csv rows"; }
for f in best.safetensors config.yaml split.json loss.svg dice.svg metrics.jsonl; do
  [ -s "$W/run/$f" ] || fail "missing $f"
done
# train.log: every line timestamped, the killed run's progress lines kept (appended on
# resume), then the resumed run's; no terminal redraws.
TS='^\[[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}\] \[[a-z]+\] '
grep -Evq "$TS" "$W/run/train.log" && { cat "$W/run/train.log"; fail "train.log: a line without a timestamp"; }
grep -q $'\r' "$W/run/train.log" && fail "train.log: terminal redraws"
order=$(grep -Eo "\] (epoch 1/3 \[|resume: continuing|epoch 3: train loss)" "$W/run/train.log" | uniq | tr -d '\n')
[ "$order" = "] epoch 1/3 [] resume: continuing] epoch 3: train loss" ] \
  || { cat "$W/run/train.log"; fail "train.log lacks the epoch lines of both runs, in order"; }
# The killed-and-resumed run ends bit for bit where the same run uninterrupted does: every
# weight and optimiser moment equal (the metadata differ: save ids, timings).
"$MSAM" train --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --set epochs=3 \
  --set "output=$W/run_straight" --set "data.cache_dir=$W/run/cache" > "$W/train3.log" 2>&1 \
  || { cat "$W/train3.log"; fail "uninterrupted run"; }
cmp <(grep -E "$TS" "$W/train3.log") "$W/run_straight/train.log" \
  || fail "train.log differs from the run's stderr"
python3 - "$W/run" "$W/run_straight" <<'PY' || fail "the resumed run differs from the uninterrupted one"
import json, struct, sys
def tensors(path):
    data = open(path, 'rb').read()
    n = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop('__metadata__', None)
    return {k: (v['dtype'], v['shape'], data[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]])
            for k, v in header.items()}
for name in ('latest.safetensors', 'latest.optim.safetensors'):
    a, b = tensors(f'{sys.argv[1]}/{name}'), tensors(f'{sys.argv[2]}/{name}')
    assert a.keys() == b.keys() and a, name
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f'{name}: {len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}'
PY

# Evaluation: per-case CSV with Dice after each click, summary, curve, overlays, masks.
"$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --checkpoint "$W/run/best.safetensors" \
  --clicks 3 --save-masks --overlays 1 --out "$W/eval" > "$W/eval.log" 2>&1 || { cat "$W/eval.log"; fail "eval"; }
head -1 "$W/eval/per_case.csv" | grep -q "^case,dice_click1,dice_click2,dice_click3,dice,iou,hd,hd95,assd,nsd,orig_dice" \
  || fail "per_case.csv header"
for f in summary.csv summary.json dice_vs_clicks.svg; do [ -s "$W/eval/$f" ] || fail "missing eval $f"; done
[ "$(find "$W/eval/masks" -name '*.nii.gz' | wc -l)" = 1 ] && [ "$(ls "$W/eval/overlays" | wc -l)" = 1 ] \
  || fail "masks/overlays"
grep -q "\] \[info\] \[1/1\] " "$W/eval/eval.log" || { cat "$W/eval/eval.log"; fail "eval.log"; }
# Same seed, same CSV; --log-level warn leaves stderr without the info lines.
"$MSAM" --log-level warn eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" \
  --checkpoint "$W/run/best.safetensors" --clicks 3 --overlays 0 --out "$W/eval2" \
  >/dev/null 2>"$W/eval2.err"
grep -q "\[info\]" "$W/eval2.err" && { cat "$W/eval2.err"; fail "--log-level warn shows info lines"; }
grep -q "\[info\]" "$W/eval2/eval.log" && fail "--log-level warn writes info lines to eval.log"
cmp <(cut -d, -f1-16 "$W/eval/per_case.csv") <(cut -d, -f1-16 "$W/eval2/per_case.csv") || fail "eval not reproducible"
"$MSAM" compare "$W/eval/per_case.csv" "$W/eval2/per_case.csv" > "$W/compare.log"
grep -q "^dice" "$W/compare.log" || fail "compare output"
# Test-time mirroring: every case scored, the setting in summary.json.
"$MSAM" --log-level warn eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" \
  --checkpoint "$W/run/best.safetensors" --clicks 2 --mirror --overlays 0 --out "$W/eval_mirror" \
  >/dev/null 2>"$W/eval_mirror.err" || { cat "$W/eval_mirror.err"; fail "eval --mirror"; }
python3 - "$W/eval_mirror/summary.json" "$W/eval/summary.json" <<'PY' || fail "eval --mirror: summary.json"
import json, sys
mirrored, plain = (json.load(open(p)) for p in sys.argv[1:])
assert mirrored['settings']['mirror'] is True and plain['settings']['mirror'] is False
PY
[ "$(tail -n +2 "$W/eval_mirror/per_case.csv" | wc -l)" = "$(tail -n +2 "$W/eval/per_case.csv" | wc -l)" ] \
  || fail "eval --mirror: not every case"

# Data parallelism from the command line: `msam train --nproc 2` trains the one-process run's
# first epoch (same global batch), and `msam eval` started as two ranks (torchrun's variables)
# writes the one-process per_case.csv.
"$MSAM" --threads 1 train --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --set epochs=1 \
  --set "output=$W/run_dp" --set "data.cache_dir=$W/run/cache" --nproc 2 > "$W/train_dp.log" 2>&1 \
  || { cat "$W/train_dp.log"; fail "train --nproc 2"; }
grep -q "dist: 2 ranks, global batch 2 (1 per rank)" "$W/run_dp/train.log" \
  || { cat "$W/train_dp.log"; fail "train.log lacks the data-parallel setup"; }
[ "$(tail -n +2 "$W/run_dp/metrics.csv" | wc -l)" = 1 ] || fail "--nproc 2: metrics.csv rows"
python3 - "$W/run_straight/metrics.csv" "$W/run_dp/metrics.csv" <<'PY' || fail "--nproc 2 differs from one process"
import csv, sys
one, two = next(csv.DictReader(open(sys.argv[1]))), next(csv.DictReader(open(sys.argv[2])))
for k in ('train_loss', 'train_dice'):  # the straight run validates every 4th epoch only
    a, b = float(one[k]), float(two[k])
    assert abs(a - b) <= 1e-4 * max(1, abs(a)), (k, a, b)
PY
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for r in 0 1; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
    "$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --checkpoint "$W/run/best.safetensors" \
    --clicks 3 --overlays 0 --split train --out "$W/eval_dp" > "$W/eval_dp$r.log" 2>&1 &
  pids[$r]=$!
done
wait ${pids[0]} || { cat "$W/eval_dp0.log"; fail "eval rank 0"; }
wait ${pids[1]} || { cat "$W/eval_dp1.log"; fail "eval rank 1"; }
"$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --checkpoint "$W/run/best.safetensors" \
  --clicks 3 --overlays 0 --split train --out "$W/eval_one" > "$W/eval_one.log" 2>&1 \
  || { cat "$W/eval_one.log"; fail "eval --split train"; }
python3 - "$W/eval_one/per_case.csv" "$W/eval_dp/per_case.csv" <<'PY' || fail "eval on 2 ranks differs from 1"
import csv, sys
rows = [[{k: v for k, v in r.items() if k != 'seconds'} for r in csv.DictReader(open(p))] for p in sys.argv[1:]]
assert len(rows[0]) == 4 and rows[0] == rows[1], rows
PY

# Another tool's masks (msam eval --predictions): the model's own saved masks score exactly
# as the model did on the original grid; a missing and a misaligned prediction are reported
# per case and counted, not skipped. This briefly trained model's masks at logit 0.5 are
# empty; at -1 they overlap the lesions, so the equality compares real numbers.
"$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --checkpoint "$W/run/best.safetensors" \
  --split train --clicks 2 --threshold -1 --save-masks --overlays 0 --out "$W/eval_train" \
  > "$W/eval_train.log" 2>&1 \
  || { cat "$W/eval_train.log"; fail "eval --split train"; }
cp -r "$W/eval_train/masks" "$W/preds"
mapfile -t PREDS < <(find "$W/preds" -name '*.nii.gz' | sort)
[ "${#PREDS[@]}" = 4 ] || fail "expected 4 saved masks, got ${#PREDS[@]}"
rm "${PREDS[0]}"
python3 - "${PREDS[1]}" <<'PY'  # moves the mask 5 mm along x: NIfTI qoffset_x and srow_x[3]
import gzip, struct, sys
data = bytearray(gzip.open(sys.argv[1]).read())
for at in (268, 292):
    struct.pack_into('<f', data, at, struct.unpack_from('<f', data, at)[0] + 5.0)
gzip.open(sys.argv[1], 'wb').write(bytes(data))
PY
"$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --split train --predictions "$W/preds" \
  --out "$W/scored" > "$W/scored.log" 2>&1 || { cat "$W/scored.log"; fail "eval --predictions"; }
grep -q "not scored (missing)" "$W/scored.log" && grep -q "not scored (misaligned).*origin" "$W/scored.log" \
  || { cat "$W/scored.log"; fail "missing/misaligned predictions not reported on stderr"; }
[ "$(jq -c '.cases' "$W/scored/summary.json")" = '{"misaligned":1,"missing":1,"scored":2,"total":4}' ] \
  || { cat "$W/scored/summary.json"; fail "summary.json case counts"; }
python3 - "$W/eval_train/per_case.csv" "$W/scored/per_case.csv" <<'PY' || fail "saved masks do not score as the model did"
import csv, sys
model = {r['case']: r for r in csv.DictReader(open(sys.argv[1]))}
scored = list(csv.DictReader(open(sys.argv[2])))
assert [r['status'] for r in scored].count('scored') == 2, [r['status'] for r in scored]
assert 'dice_click1' not in scored[0] and 'seconds' not in scored[0], list(scored[0])
for r in scored:
    cols = [c for c in r if c.startswith('orig_')]
    assert len(cols) == 6, cols
    if r['status'] == 'scored':
        assert all(r[c] == model[r['case']][c] for c in cols), (r, model[r['case']])
        assert float(r['orig_dice']) > 0, r
    else:
        assert r['message'] and all(r[c] == 'nan' for c in cols), r
PY
"$MSAM" compare "$W/eval_train/per_case.csv" "$W/scored/per_case.csv" > "$W/compare_pred.log" \
  || { cat "$W/compare_pred.log"; fail "compare with scored predictions"; }
grep -q "only in $W/eval_train/per_case.csv (not compared): dice_click1 dice_click2" "$W/compare_pred.log" \
  && grep -q "2 cases not scored" "$W/compare_pred.log" \
  && grep -Eq "^orig_dice .* 0 +0 +2 +2$" "$W/compare_pred.log" \
  || { cat "$W/compare_pred.log"; fail "compare of a model and scored masks"; }
mkdir "$W/no_preds"
expect_exit2 "no case of the split could be scored" "$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" \
  "${SET[@]}" --predictions "$W/no_preds" --out "$W/scored_none"
[ "$(cut -d, -f14 "$W/scored_none/per_case.csv" | tail -n +2)" = missing ] || fail "per_case.csv of no predictions"
expect_exit2 "excludes" "$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" \
  --predictions "$W/preds" --checkpoint "$W/run/best.safetensors"
expect_exit2 "$W/none: no such folder of predictions" "$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" \
  "${SET[@]}" --predictions "$W/none"

# A model scored on data it never saw: --split all takes every case of the configured data
# (two here, fewer than a split needs) and neither reads nor writes a split.
"$MSAM" synth --out "$W/unseen" --cases 2 --seed 11 >/dev/null
"$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --set "data.datasets.0.root=$W/unseen" \
  --set "output=$W/unseen_run" --checkpoint "$W/run/best.safetensors" --split all --clicks 2 \
  --overlays 0 > "$W/eval_all.log" 2>&1 || { cat "$W/eval_all.log"; fail "eval --split all"; }
[ "$(tail -n +2 "$W/unseen_run/eval_all/per_case.csv" | wc -l)" = 2 ] \
  || { cat "$W/unseen_run/eval_all/per_case.csv"; fail "eval --split all: not every case"; }
[ ! -e "$W/unseen_run/split.json" ] || fail "eval --split all wrote a split"
expect_exit2 "--split" "$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" \
  --checkpoint "$W/run/best.safetensors" --split everything

# Segment a real scan from a click inside its lesion: the mask keeps the scan's geometry.
"$MSAM" segment --checkpoint "$W/run/best.safetensors" --image "$SHARED/data/msam_lung_ct/image.nii.gz" \
  --click 64,64,64,fg --out "$W/seg.nii.gz" --prob "$W/prob.nii.gz" > "$W/seg.log" 2>&1 || { cat "$W/seg.log"; fail "segment"; }
[ -s "$W/seg.nii.gz" ] && [ -s "$W/prob.nii.gz" ] || fail "segment outputs"
# Its clicks and mask as the checkpoint was trained (tiny_cpu.yaml: all clicks so far, logit 0)
# unless the command line says otherwise: the defaults give what the explicit flags give.
seg_digest() { gunzip -c "$1" | sha256sum | cut -c1-16; }
for flags in "" "--multi-click --threshold 0" "--newest-click --threshold 0.5"; do
  # shellcheck disable=SC2086
  "$MSAM" segment --checkpoint "$W/run/best.safetensors" --image "$SHARED/data/msam_lung_ct/image.nii.gz" \
    --click 64,64,64,fg --click 70,60,64,bg $flags --out "$W/seg2.nii.gz" > "$W/seg2.log" 2>&1 \
    || { cat "$W/seg2.log"; fail "segment $flags"; }
  echo "$flags: $(seg_digest "$W/seg2.nii.gz") $(grep -o 'clicks: .*' "$W/seg2.log")" >> "$W/seg_loops.txt"
done
grep -q '^: .* clicks: all so far, mask = logits > 0$' "$W/seg_loops.txt" \
  || { cat "$W/seg_loops.txt"; fail "segment: not the checkpoint's loop by default"; }
grep -q 'clicks: the newest, mask = logits > 0.5$' "$W/seg_loops.txt" || fail "segment --newest-click"
[ "$(sed -n 1p "$W/seg_loops.txt" | awk -F': ' '{print $2}' | cut -d' ' -f1)" = \
  "$(sed -n 2p "$W/seg_loops.txt" | awk -F': ' '{print $2}' | cut -d' ' -f1)" ] \
  || { cat "$W/seg_loops.txt"; fail "segment: the defaults differ from the checkpoint's loop given explicitly"; }
expect_exit2 "excludes" "$MSAM" segment --checkpoint "$W/run/best.safetensors" \
  --image "$SHARED/data/msam_lung_ct/image.nii.gz" --click 64,64,64 --multi-click --newest-click --out "$W/x.nii.gz"
# Aligned with its scan: same grid size, voxel spacing and voxel-to-world matrix (NIfTI sform).
python3 - "$SHARED/data/msam_lung_ct/image.nii.gz" "$W/seg.nii.gz" <<'PY' || fail "mask geometry differs from the scan"
import gzip, struct, sys
def geometry(path):
    h = gzip.open(path).read(348)
    dims = struct.unpack('<8h', h[40:56]); pixdim = struct.unpack('<8f', h[76:108])
    srow = struct.unpack('<12f', h[280:328])
    return dims[1:4], pixdim[1:4], srow
a, b = geometry(sys.argv[1]), geometry(sys.argv[2])
assert a[0] == b[0], (a[0], b[0])
assert all(abs(x - y) < 1e-4 for x, y in zip(a[1], b[1])), (a[1], b[1])
assert all(abs(x - y) < 1e-3 for x, y in zip(a[2], b[2])), (a[2], b[2])
PY

# What a person gets (eval --sessions): the test scan through a session on its own grid; the
# clicks it wrote, given to msam segment, give the mask it saved.
"$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --checkpoint "$W/run/best.safetensors" \
  --clicks 3 --protocol center --multi-click --threshold 0 --sessions --save-masks --overlays 1 \
  --out "$W/eval_sessions" > "$W/eval_sessions.log" 2>&1 || { cat "$W/eval_sessions.log"; fail "eval --sessions"; }
head -1 "$W/eval_sessions/per_case.csv" \
  | grep -qx "case,dice_click1,dice_click2,dice_click3,orig_dice,orig_iou,orig_hd,orig_hd95,orig_assd,orig_nsd,seconds" \
  || { head -1 "$W/eval_sessions/per_case.csv"; fail "eval --sessions: per_case.csv columns"; }
case_id=$(sed -n 2p "$W/eval_sessions/per_case.csv" | cut -d, -f1)
mapfile -t replay < <(tail -n +2 "$W/eval_sessions/clicks/${case_id//\//_}.csv" \
  | awk -F, '{print "--click"; print $2 "," $3 "," $4 "," $5}')
[ "${#replay[@]}" = 6 ] || fail "eval --sessions: clicks/ lacks the 3 clicks of $case_id"
"$MSAM" segment --checkpoint "$W/run/best.safetensors" --image "$W/data/imagesTr/${case_id#*/}_0000.nii.gz" \
  "${replay[@]}" --out "$W/replay.nii.gz" > "$W/replay.log" 2>&1 || { cat "$W/replay.log"; fail "segment (replay)"; }
[ "$(seg_digest "$W/replay.nii.gz")" = "$(seg_digest "$W/eval_sessions/masks/$case_id.nii.gz")" ] \
  || fail "eval --sessions: msam segment given its clicks shows another mask"
expect_exit2 "excludes" "$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" \
  --checkpoint "$W/run/best.safetensors" --sessions --mirror

# Transfer with given checkpoints: evaluates both on the target's test split.
"$MSAM" transfer --source "$SRC/configs/tiny_cpu.yaml" --target "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" \
  --source-checkpoint "$W/run/best.safetensors" --target-checkpoint "$W/run/latest.safetensors" \
  --clicks 2 --protocol center --multi-click --threshold 0 --out "$W/transfer" > "$W/transfer.log" 2>&1 \
  || { cat "$W/transfer.log"; fail "transfer"; }
grep -q "^dice" "$W/transfer.log" && [ -s "$W/transfer/transfer.csv" ] || fail "transfer table"
# Transfer evaluates with the click options it was given, as msam eval does.
[ "$(jq -c '.settings | [.protocol, .multi_click, .threshold_on_logits]' "$W/transfer/eval_after/summary.json")" \
  = '["center",true,0]' ] || fail "transfer ignored its click options"

# Reference checkpoints convert without Python.
"$MSAM" convert "$SHARED/fixtures/checkpoints/msam_format.pth" "$W/m.safetensors" >/dev/null
[ -s "$W/m.safetensors" ] || fail "convert"

# Errors name the problem.
expect_exit2 "--config: File does not exist: $W/none.yaml" "$MSAM" train --config "$W/none.yaml"
expect_exit2 "--checkpoint: File does not exist: $W/none.safetensors" "$MSAM" eval \
  --config "$SRC/configs/tiny_cpu.yaml" --checkpoint "$W/none.safetensors"
expect_exit2 "--clicks" "$MSAM" eval --config "$SRC/configs/tiny_cpu.yaml" \
  --checkpoint "$W/run/best.safetensors" --clicks 0
expect_exit2 "not expected" "$MSAM" prepare --config "$SRC/configs/tiny_cpu.yaml" --no-such-option
# msam transfer is one process: under a launcher's variables it says what to do instead.
expect_exit2 "msam transfer runs as one process" env RANK=0 WORLD_SIZE=2 "$MSAM" transfer \
  --source "$SRC/configs/tiny_cpu.yaml" --target "$SRC/configs/tiny_cpu.yaml" --out "$W/transfer_dp"
# A run whose crops the checkpoint's model cannot take fails before preparing any data.
expect_exit2 "the model takes 64³ crops, but the run's data.roi is 32" "$MSAM" eval \
  --config "$SRC/configs/tiny_cpu.yaml" "${SET[@]}" --set data.roi=32 --set model.encoder.img=32 \
  --set "data.cache_dir=$W/roi32" --checkpoint "$W/run/best.safetensors"
[ -e "$W/roi32" ] && fail "eval prepared data for a model that cannot take it"
expect_exit2 "--log-level: loud not in" "$MSAM" --log-level loud prepare --config "$SRC/configs/tiny_cpu.yaml"
# A scan with NaN voxels is refused (NRRD: ITK's NIfTI reader turns NaN and Inf into 0).
{ printf 'NRRD0004\ntype: float\ndimension: 3\nsizes: 32 32 32\nendian: little\nencoding: raw\n\n'
  python3 -c 'import struct, sys; v = [float(i % 7) for i in range(32 ** 3)]; v[5] = v[16400] = float("nan"); sys.stdout.buffer.write(struct.pack("<32768f", *v))'
} > "$W/nan.nrrd"
expect_exit2 "nan.nrrd: 2 voxels are NaN or Inf" "$MSAM" segment --checkpoint "$W/run/best.safetensors" \
  --image "$W/nan.nrrd" --click 16,16,16 --out "$W/x.nii.gz"
# Two channels on a 4th axis (MR sequences in one file): --channel picks one, segmented as the
# same scan in a file of its own; without it the scan is refused, naming the channels.
python3 - "$W" <<'PY'
import struct, sys
channels = [[float((i * 37) % 101) for i in range(32 ** 3)], [float((i * 53) % 89) for i in range(32 ** 3)]]
head = 'NRRD0004\ntype: float\ndimension: {}\nsizes: 32 32 32{}\nendian: little\nencoding: raw\n\n'
with open(sys.argv[1] + '/two.nrrd', 'wb') as f:
    f.write(head.format(4, ' 2').encode() + struct.pack('<65536f', *channels[0], *channels[1]))
with open(sys.argv[1] + '/second.nrrd', 'wb') as f:
    f.write(head.format(3, '').encode() + struct.pack('<32768f', *channels[1]))
PY
"$MSAM" segment --checkpoint "$W/run/best.safetensors" --image "$W/two.nrrd" --channel 1 --click 16,16,16 \
  --out "$W/channel1.nii" > "$W/channel.log" 2>&1 || { cat "$W/channel.log"; fail "segment --channel"; }
"$MSAM" segment --checkpoint "$W/run/best.safetensors" --image "$W/second.nrrd" --click 16,16,16 \
  --out "$W/second.nii" > "$W/second.log" 2>&1 || { cat "$W/second.log"; fail "segment of the channel's own file"; }
cmp -s "$W/channel1.nii" "$W/second.nii" || fail "segment --channel 1 differs from the channel's own file"
expect_exit2 "two.nrrd: 2 channels on a 4th axis" "$MSAM" segment --checkpoint "$W/run/best.safetensors" \
  --image "$W/two.nrrd" --click 16,16,16 --out "$W/x.nii.gz"
"$MSAM" train --help > "$W/help.log" || fail "--help does not exit 0"
grep -q -- "--resume" "$W/help.log" || fail "--help output"
expect_error "outside the volume" "$MSAM" segment --checkpoint "$W/run/best.safetensors" \
  --image "$SHARED/data/msam_lung_ct/image.nii.gz" --click 500,1,1 --out "$W/x.nii.gz"
expect_error "did you mean" "$MSAM" train --config "$SRC/configs/tiny_cpu.yaml" --set optim.lrr=1
expect_error "no such file" "$MSAM" segment --checkpoint "$W/run/best.safetensors" \
  --image "$W/missing.nii.gz" --click 1,1,1 --out "$W/x.nii.gz"
expect_error "SAM-Med3D" "$MSAM" segment --checkpoint "$SHARED/fixtures/checkpoints/sam_med3d_format.pth" \
  --image "$SHARED/data/msam_lung_ct/image.nii.gz" --click 64,64,64 --out "$W/x.nii.gz"
echo "cli end-to-end: all checks passed"
