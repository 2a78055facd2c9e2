#!/usr/bin/env bash
# docs/cli.md is what the binary's --help says (scripts/gen_cli_doc.sh regenerates it).
source "$(dirname "$0")/lib.sh"
CLI_DOC_OUT="$WORK/cli.md" bash "$SRC/scripts/gen_cli_doc.sh" "$RETRO" > /dev/null
diff -u "$SRC/docs/cli.md" "$WORK/cli.md" > doc.diff || { head -20 doc.diff >&2; fail "docs/cli.md is stale: run bash scripts/gen_cli_doc.sh"; }
ok "docs/cli.md matches retro --help"
