/* STUB: replaced by the tokenizer subcommand. */
#include "cli/cli.h"
int cmd_tokenizer(int argc, char **argv) { (void)argc; (void)argv; return CLI_USAGE; }
