/*
 * cli.h - shared pieces of the `retro` command: subcommand entry points and
 * the helpers that turn library statuses into messages and exit codes.
 *
 * Exit codes: 0 success, 1 failure of the world (I/O, corrupt file, ...),
 * 2 usage error.
 */
#ifndef RTR_CLI_H
#define RTR_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "include/retro.h"
#include "lib/bpe.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

#define CLI_MAX_STOP 16   /* --stop sequences (retro_generate's limit) */

/* Prints "retro: <detail of the last error>" to stderr; returns CLI_FAIL. */
int cli_fail(int status);
/* Prints "retro: <message>" and a hint to run --help; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Under mpirun with several ranks: a usage error (what runs as one process only); CLI_OK otherwise.
 * Under mpirun, cli_fail and cli_usage_error print on rank 0 only: the commands that run on several
 * ranks make every rank's status the job's (rtr_comm_agree) before they fail. */
int cli_solo(const char *cmd);
/* 1 if argv[i] is -h or --help. */
int cli_is_help(const char *arg);

/* Loads a tokenizer from --tokenizer FILE or --gpt2 DIR (exactly one may be
 * given); with neither, retro_default_tokenizer(). */
int cli_load_tokenizer(const char *file, const char *gpt2_dir, rtr_tokenizer **out);
/* s (n bytes; invalid UTF-8, a piece of a character, replaced by U+FFFD) as a JSON string; NULL only
 * when out of memory. */
json_t *cli_json_text(const char *s, size_t n);
/* Writes s (n bytes; invalid UTF-8 replaced) as a JSON string. */
void cli_json_string(FILE *f, const char *s, size_t n);
/* Parses a --min-score value (a score in [-1, 1]) into *out; -1 if it is not one. */
int cli_parse_min_score(const char *s, float *out);

/* Subcommands, each in its own file. argv[0] is the subcommand name. */
int cmd_tokenizer(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_ask(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
