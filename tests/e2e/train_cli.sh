#!/usr/bin/env bash
# train_cli.sh - `retro train` end to end on a few State of the Union
# addresses: baseline, RETRO, RETRO-fitting (the decoder stays bit for bit the
# baseline's), resume after an interruption, and bad input.
source "$(dirname "$0")/lib.sh"

mkdir docs
ls "$SRC"/datasets/sotu/*.txt | head -12 | xargs -I{} cp {} docs/
"$RETRO" index add kb docs --quiet >/dev/null
tiny=(--val-frac 0.3 --context 128 --width 32 --layers 2 --heads 2 --batch 2 --eval-every 3 --eval-seqs 4 --quiet)

# retrieval needs an index
expect_fail 1 "index" "$RETRO" train kb -o noindex --steps 2 "${tiny[@]}"
"$RETRO" index build kb >/dev/null

"$RETRO" train kb -o base --mode baseline --steps 6 "${tiny[@]}" --json > base.json
[ "$(json_get steps < base.json)" = 6 ] || fail "baseline steps"
for f in model.safetensors train.safetensors config.json tokenizer.rtok log.jsonl; do
    [ -s base/$f ] || fail "baseline: no $f"
done
grep -q '"cca":\[\]' base/config.json || fail "baseline has cross-attention: $(cat base/config.json)"
[ "$(grep -c val_bpb base/log.jsonl)" = 2 ] || fail "baseline: expected 2 validations in the log"
ok "baseline trains and checkpoints"

"$RETRO" train kb -o retro --steps 6 "${tiny[@]}" --json > retro.json
grep -q '"cca":\[1,2\]' retro/config.json || fail "retro: CCA layers $(cat retro/config.json)"
awk -v l="$(json_get val_loss < retro.json)" 'BEGIN { exit !(l > 0 && l < 9) }' || fail "retro: validation loss"
ok "RETRO model trains"

# the curriculum option trains and is recorded for --resume
"$RETRO" train kb -o selfn --steps 2 --self-neighbours 0.5 "${tiny[@]}" >/dev/null 2>&1
grep -aq '"self_neighbours":"0.5"' selfn/train.safetensors || fail "self_neighbours not recorded"
ok "the --self-neighbours curriculum trains and is recorded"
"$RETRO" train kb -o selfa --steps 2 --self-neighbours 0.5 --self-anneal "${tiny[@]}" >/dev/null 2>&1
grep -aq '"self_anneal":"1"' selfa/train.safetensors || fail "self_anneal not recorded"
grep -aq '"self_anneal":"0"' selfn/train.safetensors || fail "self_anneal recorded wrongly"
"$RETRO" train kb -o selfa --resume --steps 3 >/dev/null 2>&1 || fail "resuming an annealed run failed"
grep -aq '"self_anneal":"1"' selfa/train.safetensors || fail "self_anneal lost on --resume"
grep -aq '"eval_seqs":"4"' selfa/train.safetensors || fail "eval_seqs not kept by --resume"
ok "the annealed curriculum trains, is recorded and survives --resume"
"$RETRO" train kb -o selfs --steps 2 --self-neighbours 0.5 --self-shift 32 "${tiny[@]}" >/dev/null 2>&1
grep -aq '"self_shift":"32"' selfs/train.safetensors || fail "self_shift not recorded"
"$RETRO" train kb -o selfs --resume --steps 3 >/dev/null 2>&1 || fail "resuming a shifted run failed"
grep -aq '"self_shift":"32"' selfs/train.safetensors || fail "self_shift lost on --resume"
ok "the shifted curriculum trains, is recorded and survives --resume"

# RETRO-fitting: the decoder's tensors are the baseline's, bit for bit
"$RETRO" train kb -o fit --mode fit --from base --steps 4 "${tiny[@]}" --json > fit.json
/usr/bin/python3 "$SRC/tests/tools/safetensors_read.py" base/model.safetensors | grep '"name"' | sort > base.t
/usr/bin/python3 "$SRC/tests/tools/safetensors_read.py" fit/model.safetensors | grep '"name"' | sort > fit.t
grep -v -e '"enc\.' -e 'cca_' fit.t > fit.decoder
cmp -s base.t fit.decoder || { diff base.t fit.decoder | head >&2; fail "fit changed the decoder"; }
[ "$(grep -c -e '"enc\.' -e 'cca_' fit.t)" -gt 10 ] || fail "fit has no retrieval path"
ok "RETRO-fitting trains only the retrieval path"

# interrupted by SIGINT: a checkpoint is saved and --resume goes on from it
"$RETRO" train kb -o long --steps 400 "${tiny[@]}" --save-every 0 > long.out 2> long.err &
pid=$!
for _ in $(seq 100); do
    [ -s long/log.jsonl ] && break
    sleep 0.1
done
kill -INT $pid
rc=0
wait $pid || rc=$?
[ "$rc" = 1 ] || fail "interrupted run exited $rc"
grep -q "interrupted at step" long.err || fail "no interruption message: $(cat long.err)"
[ -s long/train.safetensors ] || fail "no checkpoint after the interruption"
done_steps=$(grep -c '"loss"' long/log.jsonl)
"$RETRO" train kb -o long --resume --steps $((done_steps + 2)) --quiet --json > resumed.json
[ "$(json_get steps < resumed.json)" = $((done_steps + 2)) ] || fail "resume: $(cat resumed.json)"
[ "$(grep -c "\"loss\"" long/log.jsonl)" = $((done_steps + 2)) ] || fail "resume: the log does not go on"
ok "interrupted at step $done_steps and resumed"

# bad input
expect_fail 2 "from" "$RETRO" train kb -o x --mode fit --steps 2
expect_fail 2 "required" "$RETRO" train kb --steps 2
expect_fail 1 "multiple of" "$RETRO" train kb -o x --context 100 --steps 2 --mode baseline
expect_fail 1 "already has cross-attention" "$RETRO" train kb -o x --mode fit --from retro --steps 2
expect_fail 2 "self-neighbours" "$RETRO" train kb -o x --self-neighbours 1.5 --steps 2
expect_fail 2 "self-shift" "$RETRO" train kb -o x --self-shift 65 --steps 2
head -c 1000 base/model.safetensors > trunc.safetensors
expect_fail 1 "trunc.safetensors" "$RETRO" train kb -o x --mode fit --from trunc.safetensors --steps 2
expect_fail 1 "no training checkpoint" "$RETRO" train kb -o nothing --resume --steps 2
mkdir nooptim && cp base/model.safetensors nooptim/train.safetensors
expect_fail 1 "no optimizer state" "$RETRO" train kb -o nooptim --resume --steps 2
ok "bad input gets one-line errors"
