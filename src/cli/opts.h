/* The option table of a cigt subcommand: one row per option (name, kind, bounds, target, help).
 * cli_parse reads argv against it, range-checks every value with one message format and prints
 * --help from the same rows, so the options a command takes and the ones it lists cannot
 * drift apart. Every command also takes -h/--help; usage errors exit with status 2. */
#ifndef CIGT_CLI_OPTS_H
#define CIGT_CLI_OPTS_H

#include <stdbool.h>
#include <stdio.h>

enum cli_kind {
	CLI_FLAG,   /* no argument: *(bool *)p = true */
	CLI_STR,    /* *(const char **)p = the argument (borrowed from argv) */
	CLI_INT,    /* *(int *)p = a decimal integer in [lo, hi] */
	CLI_LLONG,  /* *(long long *)p = a decimal integer in [lo, hi] */
	CLI_DOUBLE, /* *(double *)p = a number in [dlo, dhi] */
	CLI_CHOICE, /* *(int *)p = the argument's index in choices (NULL-terminated) */
	CLI_CALL,   /* fn(row, argument) parses and stores it itself */
};

struct cli_opt {
	const char *name;           /* long name without the dashes; NULL ends the table */
	char short_name;            /* also accepted as -X (0: none) */
	enum cli_kind kind;
	void *p;                    /* where the value goes (see the kinds) */
	long long lo, hi;           /* CLI_INT, CLI_LLONG (and CLI_CALL, if fn wants them) */
	double dlo, dhi;            /* CLI_DOUBLE */
	const char *const *choices; /* CLI_CHOICE */
	/* CLI_CALL: 0, or -1 after printing a one-line "cigt: --name: ..." error. */
	int (*fn)(const struct cli_opt *o, const char *arg);
	bool required;              /* CLI_STR: still NULL after parsing is a usage error */
	const char *arg;            /* the argument's name in --help ("N", "DIR") */
	const char *help;           /* --help text, '\n' between lines; NULL: not listed */
};

struct cli_cmd {
	const char *usage;          /* synopsis and description, printed before the option lines */
	int width;                  /* width of the option column in --help */
	int min_operands;           /* operands after the options: at least this many, */
	int max_operands;           /* at most this many (-1: no limit) */
	const struct cli_opt *opts; /* the table, ended by a row with name NULL */
};

/* Parses the options in argv[1..argc-1] (argv[0] is the command's name, used in getopt's own
 * messages) into the table's targets, in order: the first bad value prints
 * "cigt: --name: 'x' is not an integer in [lo, hi]" (or the kind's equivalent) to stderr;
 * an unknown option or a missing argument gets getopt's message; either, or a missing
 * required option or a wrong operand count, then prints the usage to stderr. -h/--help
 * prints it to stdout. Returns the index of the first operand in argv when the command goes
 * on; otherwise -1 with *status the exit status (0 after --help, 2 after a usage error).
 * Targets of options that were not given keep their values (the defaults). Not reentrant:
 * getopt_long's state is global. */
int cli_parse(const struct cli_cmd *c, int argc, char **argv, int *status);
/* Prints c's usage: its text, then one line per listed option ("  --name ARG" padded to the
 * width, or on a line of its own when longer, then the help lines indented to the column). */
void cli_usage(const struct cli_cmd *c, FILE *f);
/* CLI_CALL for a size in MiB: an integer in [lo, hi] stored as bytes in *(size_t *)o->p. */
int cli_mebibytes(const struct cli_opt *o, const char *arg);

#endif
