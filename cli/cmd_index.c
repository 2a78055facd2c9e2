/* STUB */
#include "cli/cli.h"
int cmd_index(int argc, char **argv) { (void)argc; (void)argv; return CLI_USAGE; }
