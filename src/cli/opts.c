/* Option parsing for every cigt subcommand from its table (opts.h): builds getopt_long's
 * arrays from the rows, stores and range-checks each value as its kind says, checks operands
 * and required options, and prints the option lines of --help from the same rows. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"

#define CLI_MAX_OPTS 40
/* getopt_long's value of a row without a short name: above every char. */
#define CLI_LONG_ONLY 256

static int parse_int(const char *name, const char *s, long long lo, long long hi,
		     long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "cigt: --%s: '%s' is not an integer in [%lld, %lld]\n", name, s, lo,
			hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_double(const char *name, const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi)) {
		fprintf(stderr, "cigt: --%s: '%s' is not a number in [%g, %g]\n", name, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

/* "expected a, b or c". */
static int parse_choice(const struct cli_opt *o, const char *s)
{
	int n = 0;
	while (o->choices[n])
		n++;
	for (int i = 0; i < n; i++)
		if (!strcmp(s, o->choices[i])) {
			*(int *)o->p = i;
			return 0;
		}
	fprintf(stderr, "cigt: --%s: expected ", o->name);
	for (int i = 0; i < n; i++)
		fprintf(stderr, "%s%s", i == 0 ? "" : i + 1 < n ? ", " : " or ", o->choices[i]);
	fprintf(stderr, "\n");
	return -1;
}

/* Stores one option's value: 0, or -1 after printing the error. */
static int set_value(const struct cli_opt *o, const char *arg)
{
	long long v;
	switch (o->kind) {
	case CLI_FLAG:
		*(bool *)o->p = true;
		return 0;
	case CLI_STR:
		*(const char **)o->p = arg;
		return 0;
	case CLI_INT:
		if (parse_int(o->name, arg, o->lo, o->hi, &v))
			return -1;
		*(int *)o->p = (int)v;
		return 0;
	case CLI_LLONG:
		return parse_int(o->name, arg, o->lo, o->hi, (long long *)o->p);
	case CLI_DOUBLE:
		return parse_double(o->name, arg, o->dlo, o->dhi, (double *)o->p);
	case CLI_CHOICE:
		return parse_choice(o, arg);
	case CLI_CALL:
		return o->fn(o, arg);
	}
	return -1;
}

int cli_mebibytes(const struct cli_opt *o, const char *arg)
{
	long long v;
	if (parse_int(o->name, arg, o->lo, o->hi, &v))
		return -1;
	*(size_t *)o->p = (size_t)v << 20;
	return 0;
}

static void print_option(const struct cli_cmd *c, const struct cli_opt *o, FILE *f)
{
	char label[128], shrt[8] = "";
	if (o->short_name)
		snprintf(shrt, sizeof shrt, "-%c, ", o->short_name);
	snprintf(label, sizeof label, "%s--%s%s%s", shrt, o->name, o->arg ? " " : "",
		 o->arg ? o->arg : "");
	if ((int)strlen(label) < c->width)
		fprintf(f, "  %-*s", c->width, label);
	else /* too long for the column: the text starts on the next line */
		fprintf(f, "  %s\n%*s", label, c->width + 2, "");
	for (const char *p = o->help;;) {
		const char *nl = strchr(p, '\n');
		if (!nl) {
			fprintf(f, "%s\n", p);
			break;
		}
		fprintf(f, "%.*s\n%*s", (int)(nl - p), p, c->width + 2, "");
		p = nl + 1;
	}
}

void cli_usage(const struct cli_cmd *c, FILE *f)
{
	fputs(c->usage, f);
	for (const struct cli_opt *o = c->opts; o->name; o++)
		if (o->help)
			print_option(c, o, f);
}

/* The row getopt_long's return value ch stands for, or NULL. */
static const struct cli_opt *find_row(const struct cli_cmd *c, int ch)
{
	for (int i = 0; c->opts[i].name; i++)
		if (c->opts[i].short_name ? ch == c->opts[i].short_name : ch == CLI_LONG_ONLY + i)
			return &c->opts[i];
	return NULL;
}

int cli_parse(const struct cli_cmd *c, int argc, char **argv, int *status)
{
	struct option lopts[CLI_MAX_OPTS + 2];
	char sopts[2 * CLI_MAX_OPTS + 2];
	int n = 0, ns = 0;
	for (; c->opts[n].name; n++) {
		const struct cli_opt *o = &c->opts[n];
		assert(n < CLI_MAX_OPTS && o->short_name != 'h');
		assert(!o->required || o->kind == CLI_STR);
		bool has_arg = o->kind != CLI_FLAG;
		lopts[n] = (struct option){o->name, has_arg ? required_argument : no_argument, NULL,
					   o->short_name ? o->short_name : CLI_LONG_ONLY + n};
		if (o->short_name) {
			sopts[ns++] = o->short_name;
			if (has_arg)
				sopts[ns++] = ':';
		}
	}
	lopts[n] = (struct option){"help", no_argument, NULL, 'h'};
	lopts[n + 1] = (struct option){0};
	sopts[ns++] = 'h';
	sopts[ns] = '\0';

	int ch;
	optind = 0; /* a full reset of getopt's state (glibc), so a process may parse twice */
	while ((ch = getopt_long(argc, argv, sopts, lopts, NULL)) != -1) {
		if (ch == 'h') {
			cli_usage(c, stdout);
			*status = 0;
			return -1;
		}
		const struct cli_opt *o = find_row(c, ch); /* NULL: getopt's '?' (it said why) */
		if (!o) {
			cli_usage(c, stderr);
			*status = 2;
			return -1;
		}
		if (set_value(o, optarg)) {
			*status = 2;
			return -1;
		}
	}
	int operands = argc - optind;
	bool ok = operands >= c->min_operands &&
		  (c->max_operands < 0 || operands <= c->max_operands);
	for (const struct cli_opt *o = c->opts; o->name; o++)
		if (o->required && !*(const char **)o->p)
			ok = false;
	if (!ok) {
		cli_usage(c, stderr);
		*status = 2;
		return -1;
	}
	return optind;
}
