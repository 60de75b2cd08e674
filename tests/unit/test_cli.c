/* The cigt subcommands' option tables (src/cli/opts.c over src/common/options.h): values of
 * every kind stored where their rows say, range errors with the exact message and exit status 2,
 * getopt's own messages for an unknown option or a missing argument, flags, callbacks, choices,
 * repeated options (the last wins), operand counts, required options, defaults from the table,
 * shared rows bound to a command's variables, and --help printed from the table. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "opts.h"

static const char *s_out, *s_data;
static bool f_dense;
static int i_epochs, c_mode;
static long long l_seed;
static double d_seconds;
static size_t mb_bytes;
static int calls;
static char called_with[64];

/* A CALL row that counts its calls, remembers its argument and refuses "no". */
static int record(const struct cigt_opt *o, void *target, const char *arg, const char *at,
		  char *err, size_t errlen)
{
	calls++;
	snprintf(called_with, sizeof called_with, "%s=%s", o->name, arg);
	if (!strcmp(arg, "no")) {
		snprintf(err, errlen, "%s: refused", at);
		return -1;
	}
	return 0;
}

static const char *const modes[] = {"fast", "slow", "exact", NULL};

#define HIDDEN .flags = CIGT_OPT_HIDDEN
static const struct cigt_opt opts[] = {
	{"out", 'o', CIGT_OPT_STR, CIGT_OPT_VAR(s_out), .flags = CIGT_OPT_REQUIRED, .arg = "FILE",
	 .help = "output file"},
	{"data", 0, CIGT_OPT_STR, CIGT_OPT_VAR(s_data), .arg = "DIR",
	 .help = "data directory\n(default here)"},
	{"dense", 0, CIGT_OPT_FLAG, CIGT_OPT_VAR(f_dense), .help = "every expert"},
	{"epochs", 0, CIGT_OPT_INT, CIGT_OPT_VAR(i_epochs), .lo = 1, .hi = 100000, .arg = "N",
	 .help = "epochs"},
	{"seed", 0, CIGT_OPT_INT, CIGT_OPT_VAR(l_seed), .lo = 0, .hi = INT64_MAX, .arg = "N",
	 HIDDEN},
	{"seconds", 0, CIGT_OPT_DOUBLE, CIGT_OPT_VAR(d_seconds), .dlo = 0.01, .dhi = 3600,
	 .arg = "S", HIDDEN},
	{"cache-mb", 0, CIGT_OPT_CALL, CIGT_OPT_VAR(mb_bytes), .lo = 1, .hi = 1 << 24,
	 .text = cigt__opt_mebibytes, .arg = "N", HIDDEN},
	{"mode", 0, CIGT_OPT_CHOICE, CIGT_OPT_VAR(c_mode), .choices = modes, HIDDEN},
	{"record", 0, CIGT_OPT_CALL, .text = record, .arg = "ARGUMENT",
	 .help = "a callback with a name longer than the column"},
	{0},
};

static const struct cli_cmd cmd = {"usage: test --out FILE A [B]\nTests.\n", 12, 1, 2, opts};

static const char help_text[] = "usage: test --out FILE A [B]\nTests.\n"
				"  -o, --out FILE\n"
				"              output file\n"
				"  --data DIR  data directory\n"
				"              (default here)\n"
				"  --dense     every expert\n"
				"  --epochs N  epochs\n"
				"  --record ARGUMENT\n"
				"              a callback with a name longer than the column\n";

/* Parses the given words after "test"; returns cli_parse's value (the index of the first
 * operand once getopt has moved the operands last), *status its status. */
static int parse(int *status, int n, const char *const *words)
{
	static char buf[32][64];
	static char *argv[33];
	cr_assert(n < 32);
	argv[0] = strcpy(buf[0], "test");
	for (int i = 0; i < n; i++)
		argv[i + 1] = strcpy(buf[i + 1], words[i]);
	*status = -7;
	return cli_parse(&cmd, n + 1, argv, status);
}

#define PARSE(st, ...)                                                                       \
	parse(st, (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)),       \
	      (const char *const[]){__VA_ARGS__})

static void reset(void)
{
	s_out = NULL;
	s_data = "default";
	f_dense = false;
	i_epochs = 7;
	l_seed = 3;
	d_seconds = 1.5;
	mb_bytes = 0;
	c_mode = 1;
	calls = 0;
	called_with[0] = '\0';
}

/* Asserts a refused value: cli_parse returned -1 with status 2, printed msg on stderr and
 * nothing on stdout. */
static void assert_value_error(int rc, int st, const char *msg)
{
	cr_assert_eq(rc, -1);
	cr_assert_eq(st, 2);
	fflush(stdout);
	cr_assert_stdout_eq_str("");
	cr_assert_stderr_eq_str(msg);
}

/* Asserts a usage error: the same, with getopt's line `first` and then the usage on stderr. */
static void assert_usage_error(int rc, int st, const char *first)
{
	char want[1024];
	snprintf(want, sizeof want, "%s%s", first, help_text);
	assert_value_error(rc, st, want);
}

static void redirect(void)
{
	reset();
	cr_redirect_stdout();
	cr_redirect_stderr();
}

Test(cli, values_of_every_kind_stored, .init = reset)
{
	int st;
	int first = PARSE(&st, "-o", "m.st", "--data", "d", "--dense", "--epochs", "100000",
			  "--seed", "9223372036854775807", "--seconds", "0.01", "--cache-mb", "3",
			  "--mode", "exact", "a");
	cr_assert_eq(first, 16);
	cr_assert_str_eq(s_out, "m.st");
	cr_assert_str_eq(s_data, "d");
	cr_assert(f_dense);
	cr_assert_eq(i_epochs, 100000);
	cr_assert_eq(l_seed, INT64_MAX);
	cr_assert_eq(d_seconds, 0.01);
	cr_assert_eq(mb_bytes, (size_t)3 << 20);
	cr_assert_eq(c_mode, 2);
}

Test(cli, defaults_kept_when_absent, .init = reset)
{
	int st;
	cr_assert_eq(PARSE(&st, "a", "--out=x"), 2);
	cr_assert_str_eq(s_out, "x");
	cr_assert_str_eq(s_data, "default");
	cr_assert_not(f_dense);
	cr_assert_eq(i_epochs, 7);
	cr_assert_eq(l_seed, 3);
	cr_assert_eq(d_seconds, 1.5);
	cr_assert_eq(mb_bytes, 0);
	cr_assert_eq(c_mode, 1);
	cr_assert_eq(calls, 0);
}

Test(cli, short_option_forms, .init = reset)
{
	int st;
	cr_assert_eq(PARSE(&st, "-oshort", "a", "b"), 2);
	cr_assert_str_eq(s_out, "short");
}

Test(cli, operands_after_options_permuted, .init = reset)
{
	int st;
	/* GNU getopt moves the operands after the options: argv[first] is "a". */
	int first = PARSE(&st, "a", "--dense", "b", "-o", "x");
	cr_assert_eq(first, 4);
	cr_assert(f_dense);
}

Test(cli, integer_out_of_range, .init = redirect)
{
	int st, rc = PARSE(&st, "--epochs", "0", "-o", "x", "a");
	assert_value_error(rc, st, "cigt: --epochs: '0' is not an integer in [1, 100000]\n");
	cr_assert_eq(i_epochs, 7);
}

Test(cli, integer_not_a_number, .init = redirect)
{
	int st, rc = PARSE(&st, "--epochs", "12x");
	assert_value_error(rc, st, "cigt: --epochs: '12x' is not an integer in [1, 100000]\n");
}

Test(cli, integer_overflow, .init = redirect)
{
	int st, rc = PARSE(&st, "--seed", "9223372036854775808");
	assert_value_error(rc, st, "cigt: --seed: '9223372036854775808' is not an integer in "
				   "[0, 9223372036854775807]\n");
	cr_assert_eq(l_seed, 3);
}

Test(cli, integer_empty, .init = redirect)
{
	int st, rc = PARSE(&st, "--epochs=");
	assert_value_error(rc, st, "cigt: --epochs: '' is not an integer in [1, 100000]\n");
}

Test(cli, double_out_of_range, .init = redirect)
{
	int st, rc = PARSE(&st, "--seconds", "0.001");
	assert_value_error(rc, st, "cigt: --seconds: '0.001' is not a number in [0.01, 3600]\n");
	cr_assert_eq(d_seconds, 1.5);
}

Test(cli, double_nan_refused, .init = redirect)
{
	int st, rc = PARSE(&st, "--seconds", "nan");
	assert_value_error(rc, st, "cigt: --seconds: 'nan' is not a number in [0.01, 3600]\n");
}

Test(cli, choice_unknown, .init = redirect)
{
	int st, rc = PARSE(&st, "--mode", "Fast");
	assert_value_error(rc, st, "cigt: --mode: 'Fast' is not fast, slow or exact\n");
	cr_assert_eq(c_mode, 1);
}

Test(cli, unknown_option, .init = redirect)
{
	int st, rc = PARSE(&st, "--bogus", "-o", "x", "a");
	assert_usage_error(rc, st, "test: unrecognized option '--bogus'\n");
}

Test(cli, unknown_short_option, .init = redirect)
{
	int st, rc = PARSE(&st, "-x", "a");
	assert_usage_error(rc, st, "test: invalid option -- 'x'\n");
}

Test(cli, missing_argument, .init = redirect)
{
	int st, rc = PARSE(&st, "a", "--epochs");
	assert_usage_error(rc, st, "test: option '--epochs' requires an argument\n");
}

Test(cli, flag_takes_no_argument, .init = redirect)
{
	int st, rc = PARSE(&st, "--dense=1", "-o", "x", "a");
	cr_assert_not(f_dense);
	assert_usage_error(rc, st, "test: option '--dense' doesn't allow an argument\n");
}

Test(cli, callback_gets_row_and_argument, .init = reset)
{
	int st;
	cr_assert_eq(PARSE(&st, "--record", "yes", "-o", "x", "a"), 5);
	cr_assert_eq(calls, 1);
	cr_assert_str_eq(called_with, "record=yes");
}

Test(cli, callback_error_stops_parsing, .init = redirect)
{
	int st, rc = PARSE(&st, "--record", "no", "--dense", "-o", "x", "a");
	assert_value_error(rc, st, "cigt: --record: refused\n");
	cr_assert_eq(calls, 1);
	cr_assert_not(f_dense);
}

Test(cli, mebibytes_range, .init = redirect)
{
	int st, rc = PARSE(&st, "--cache-mb", "16777217");
	assert_value_error(rc, st,
			   "cigt: --cache-mb: '16777217' is not an integer in [1, 16777216]\n");
	cr_assert_eq(mb_bytes, 0);
}

Test(cli, repeated_options_last_wins, .init = reset)
{
	int st;
	cr_assert_eq(PARSE(&st, "--epochs", "3", "--epochs", "5", "-o", "x", "-o", "y", "--dense",
			   "--dense", "--mode", "exact", "--mode", "fast", "--record", "1",
			   "--record", "2", "a"),
		     19);
	cr_assert_eq(i_epochs, 5);
	cr_assert_str_eq(s_out, "y");
	cr_assert(f_dense);
	cr_assert_eq(c_mode, 0);
	cr_assert_eq(calls, 2);
	cr_assert_str_eq(called_with, "record=2");
}

Test(cli, help_printed_from_table, .init = redirect)
{
	int st;
	/* --help wins over a missing required option and operand, and stops before bad values. */
	cr_assert_eq(PARSE(&st, "--help", "--epochs", "0"), -1);
	cr_assert_eq(st, 0);
	fflush(stdout);
	cr_assert_stdout_eq_str(help_text);
	cr_assert_stderr_eq_str("");
}

Test(cli, short_help, .init = redirect)
{
	int st;
	cr_assert_eq(PARSE(&st, "-h"), -1);
	cr_assert_eq(st, 0);
	fflush(stdout);
	cr_assert_stdout_eq_str(help_text);
}

Test(cli, error_before_help_wins, .init = redirect)
{
	int st, rc = PARSE(&st, "--epochs", "0", "--help");
	assert_value_error(rc, st, "cigt: --epochs: '0' is not an integer in [1, 100000]\n");
}

Test(cli, too_few_operands, .init = redirect)
{
	int st, rc = PARSE(&st, "-o", "x");
	assert_usage_error(rc, st, "");
}

Test(cli, too_many_operands, .init = redirect)
{
	int st, rc = PARSE(&st, "-o", "x", "a", "b", "c");
	assert_usage_error(rc, st, "");
}

Test(cli, required_option_missing, .init = redirect)
{
	int st, rc = PARSE(&st, "a", "--dense");
	cr_assert(f_dense);
	assert_usage_error(rc, st, "");
}

Test(cli, parses_twice_in_one_process, .init = reset)
{
	int st;
	cr_assert_eq(PARSE(&st, "-o", "x", "--epochs", "4", "a"), 5);
	cr_assert_eq(PARSE(&st, "--epochs", "9", "-o", "y", "a", "b"), 5);
	cr_assert_eq(i_epochs, 9);
	cr_assert_str_eq(s_out, "y");
}

/* A command whose rows have defaults and bind the shared rows of opts.c. */
static long long b_threads = -5;
static int b_limit = 7;
static bool b_json;
static const char *b_data;
static const struct cigt_opt shared_opts[] = {
	{.like = &cli_opt_threads, CIGT_OPT_VAR(b_threads), .help = "threads of the test"},
	CIGT_OPT_BIND(cli_opt_json, b_json),
	CIGT_OPT_BIND(cli_opt_data, b_data),
	{"limit", 0, CIGT_OPT_INT, CIGT_OPT_VAR(b_limit), .lo = 1, .hi = 9, .def = "3", .arg = "N",
	 .help = "a limit"},
	{0},
};
static const struct cli_cmd shared_cmd = {"usage: eval\n", 12, 0, 0, shared_opts};

static int parse_shared(const char *name, int *status, int n, const char *const *words)
{
	static char buf[8][64];
	static char *argv[9];
	argv[0] = strcpy(buf[0], name);
	for (int i = 0; i < n; i++)
		argv[i + 1] = strcpy(buf[i + 1], words[i]);
	return cli_parse(&shared_cmd, n + 1, argv, status);
}

Test(cli, defaults_from_table)
{
	int st;
	b_limit = 7;
	b_data = NULL;
	cr_assert_eq(parse_shared("eval", &st, 0, NULL), 1);
	cr_assert_eq(b_limit, 3);
	cr_assert_str_eq(b_data, "/usr/share/datasets/fashion-mnist");
	cr_assert_eq(b_threads, -5, "a row without a default keeps its variable's value");
}

Test(cli, shared_rows_bound_to_any_integer_width)
{
	int st;
	const char *w[] = {"--threads", "64", "--json", "--data", "d", "--limit", "9"};
	cr_assert_eq(parse_shared("eval", &st, 7, w), 8);
	cr_assert_eq(b_threads, 64);
	cr_assert(b_json);
	cr_assert_str_eq(b_data, "d");
	cr_assert_eq(b_limit, 9);
}

Test(cli, shared_row_range_and_message, .init = cr_redirect_stderr)
{
	int st;
	const char *w[] = {"--threads", "65"};
	cr_assert_eq(parse_shared("eval", &st, 2, w), -1);
	cr_assert_eq(st, 2);
	cr_assert_stderr_eq_str("cigt: --threads: '65' is not an integer in [1, 64]\n");
}

Test(cli, shared_row_help_overridden, .init = cr_redirect_stdout)
{
	int st;
	const char *w[] = {"--help"};
	cr_assert_eq(parse_shared("eval", &st, 1, w), -1);
	cr_assert_eq(st, 0);
	fflush(stdout);
	cr_assert_stdout_eq_str("usage: eval\n"
				"  --threads N threads of the test\n"
				"  --json      one JSON object instead of text\n"
				"  --data DIR  IDX directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz\n"
				"              (default /usr/share/datasets/fashion-mnist)\n"
				"  --limit N   a limit (default 3)\n");
}

/* A shared row bound by a command its cmds do not name is a mistake in the table. */
Test(cli, shared_row_outside_its_commands_aborts, .signal = SIGABRT, .init = cr_redirect_stderr)
{
	int st;
	parse_shared("classify", &st, 0, NULL);
}

/* So is a row whose variable does not fit its type. */
static short narrow;
static const struct cigt_opt narrow_opts[] = {
	{"n", 0, CIGT_OPT_INT, CIGT_OPT_VAR(narrow), .lo = 0, .hi = 9, .def = "1"},
	{0},
};

Test(cli, row_wider_than_its_variable_aborts, .signal = SIGABRT, .init = cr_redirect_stderr)
{
	static char a0[] = "test";
	char *argv[] = {a0, NULL};
	const struct cli_cmd c = {"usage\n", 8, 0, 0, narrow_opts};
	int st;
	cli_parse(&c, 1, argv, &st);
}
