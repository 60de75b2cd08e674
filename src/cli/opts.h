/* The option tables of the cigt subcommands: each command's rows are struct cigt_opt
 * (src/common/options.h), its own or bindings of the shared rows below (defined once, here),
 * and cli_parse reads argv against them with getopt_long, range-checks every value with the
 * table's messages and prints --help from the same rows, so the options a command takes and
 * the ones it lists cannot drift apart. Every command also takes -h/--help; usage errors exit
 * with status 2. */
#ifndef CIGT_CLI_OPTS_H
#define CIGT_CLI_OPTS_H

#include <stdbool.h>
#include <stdio.h>

#include "../common/options.h"

struct cli_cmd {
	const char *usage;          /* synopsis and description, printed before the option lines */
	int width;                  /* width of the option column in --help */
	int min_operands;           /* operands after the options: at least this many, */
	int max_operands;           /* at most this many (-1: no limit) */
	const struct cigt_opt *opts; /* the table, ended by {0}; targets are variables (p) */
};

/* Rows shared by several subcommands (their cmds say which); bind them with CIGT_OPT_BIND or
 * {.like = &cli_opt_data, CIGT_OPT_VAR(dir), .help = "..."}. */
extern const struct cigt_opt cli_opt_data;     /* --data DIR (STR) */
extern const struct cigt_opt cli_opt_threads;  /* --threads N (INT 1..64; int or long long) */
extern const struct cigt_opt cli_opt_cache_mb; /* --cache-mb N (MiB into a size_t) */
extern const struct cigt_opt cli_opt_json;     /* --json (FLAG) */
extern const struct cigt_opt cli_opt_compute;  /* --compute NAME (STR) */
extern const struct cigt_opt cli_opt_dense;    /* --dense (FLAG) */
extern const struct cigt_opt cli_opt_out;      /* -o/--out MODEL (STR, required) */
extern const struct cigt_opt cli_opt_config;   /* -c/--config CONFIG (STR, required) */
extern const struct cigt_opt cli_opt_backend;  /* --backend auto|openblas|onednn (CHOICE) */
extern const struct cigt_opt cli_opt_precision; /* --precision fp32|bf16 (CHOICE) */

/* Parses the options in argv[1..argc-1] into the table's targets. argv[0] is the command's name
 * (in getopt's own messages, and checked against the cmds of shared rows). First every row with
 * a default stores it; then the options, in order: the first bad value prints
 * "cigt: --name: 'x' is not an integer in [lo, hi]" (or the kind's equivalent) to stderr; an
 * unknown option or a missing argument gets getopt's message; either, or a missing required
 * option or a wrong operand count, then prints the usage to stderr. -h/--help prints it to
 * stdout. Returns the index of the first operand in argv when the command goes on; otherwise -1
 * with *status the exit status (0 after --help, 2 after a usage error). Targets of rows
 * without a default keep their values when not given. When cli_describe is set, calls it
 * instead and returns -1 with status 0. Not reentrant: getopt_long's state is global. */
int cli_parse(const struct cli_cmd *c, int argc, char **argv, int *status);
/* Prints c's usage: its text, then the option lines (cigt__opts_help). */
void cli_usage(const struct cli_cmd *c, FILE *f);
/* Set by `cigt options`: receives each command's table instead of parsing. */
extern void (*cli_describe)(const char *name, const struct cli_cmd *c);

#endif
