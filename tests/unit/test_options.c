/* The option table (src/common/options.c): text values of every type into variables and struct
 * fields with their messages, defaults (outside the range too), owned strings, the JSON reader
 * (unknown keys first, two spellings of one key, required keys, sections and their defaults
 * and checks, messages naming the key path), bindings of shared rows, lookup by either
 * spelling, the help lines, values back as JSON, the description for the docs, and the size
 * check that keeps a row inside its variable. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "common/options.h"

struct conf {
	int n;
	long long big;
	uint64_t seed;
	double x;
	bool on;
	char *name;
	char path[8];
	int mode;
	int lo_n; /* a section's key */
	int checked;
};

#define F(f) CIGT_OPT_FIELD(struct conf, f)
static const char *const modes[] = {"fast", "slow", "exact", NULL};

static int check_lo(const struct cigt_opt *o, void *base, const json_t *obj, const char *at,
		    char *err, size_t errlen)
{
	struct conf *c = base;
	c->checked++;
	if (c->lo_n <= c->n)
		return 0;
	snprintf(err, errlen, "%s: lo above n", at);
	return -1;
}

static const struct cigt_opt sec_rows[] = {
	{"lo", 0, CIGT_OPT_INT, F(lo_n), .lo = 0, .hi = 9, .def = "2", .help = "low"},
	{0},
};

static const struct cigt_opt rows[] = {
	{"max-n", 0, CIGT_OPT_INT, F(n), .where = CIGT_OPT_IN_DAEMON, .lo = 1, .hi = 100,
	 .def = "16", .arg = "N", .help = "a number"},
	{"big", 0, CIGT_OPT_INT, F(big), .lo = 1, .hi = 1LL << 40, .def = "-1",
	 .help = "a wide one; the default is outside the range"},
	{"seed", 0, CIGT_OPT_INT, F(seed), .lo = 0, .hi = INT64_MAX, .flags = CIGT_OPT_REQUIRED,
	 .help = "required in JSON"},
	{"x", 0, CIGT_OPT_DOUBLE, F(x), .dlo = 0, .dhi = 1, .def = "0.5", .help = "a share"},
	{"on", 0, CIGT_OPT_FLAG, F(on), .help = "a flag"},
	{"name", 0, CIGT_OPT_STR, F(name), .flags = CIGT_OPT_OWNED, .def = "anon",
	 .help = "an owned string"},
	{"path", 0, CIGT_OPT_PATH, F(path), .help = "a short path"},
	{"mode", 0, CIGT_OPT_CHOICE, F(mode), .flags = CIGT_OPT_NOCASE, .choices = modes,
	 .def = "slow", .help = "a choice"},
	{"sec", 0, CIGT_OPT_SECTION, .sub = sec_rows, .check = check_lo, .arg = "{\"lo\": 0..9}",
	 .help = "a section"},
	{0},
};

static struct conf fresh(void)
{
	struct conf c = {0};
	cr_assert_eq(cigt__opts_defaults(rows, &c), 0);
	return c;
}

static int set(struct conf *c, const char *name, const char *v, char *err)
{
	const struct cigt_opt *o = cigt__opts_find(rows, 0, name, strlen(name));
	cr_assert(o, "no row %s", name);
	return cigt__opt_set(o, c, v, "--", err, 256);
}

static int json(struct conf *c, const char *text, char *err)
{
	json_t *j = json_loads(text, 0, NULL);
	cr_assert(j, "bad test JSON %s", text);
	int rc = cigt__opts_read_json(rows, 0, c, j, "config: ", NULL, err, 256);
	json_decref(j);
	return rc;
}

Test(options, defaults_stored_outside_the_range_too)
{
	struct conf c = fresh();
	cr_assert_eq(c.n, 16);
	cr_assert_eq(c.big, -1);
	cr_assert_eq(c.x, 0.5);
	cr_assert_str_eq(c.name, "anon");
	cr_assert_eq(c.mode, 1);
	cr_assert_eq(c.lo_n, 0, "a section's defaults wait for the section");
	cigt__opts_destroy(rows, &c);
	cr_assert_null(c.name);
}

Test(options, text_values_of_every_type)
{
	struct conf c = fresh();
	char err[256];
	cr_assert_eq(set(&c, "max-n", "100", err), 0);
	cr_assert_eq(set(&c, "big", "1099511627776", err), 0);
	cr_assert_eq(set(&c, "seed", "18", err), 0);
	cr_assert_eq(set(&c, "x", "1", err), 0);
	cr_assert_eq(set(&c, "on", "yes", err), 0);
	cr_assert_eq(set(&c, "name", "bob", err), 0);
	cr_assert_eq(set(&c, "path", "a/b/cd", err), 0);
	cr_assert_eq(set(&c, "mode", "EXACT", err), 0);
	cr_assert_eq(c.n, 100);
	cr_assert_eq(c.big, 1LL << 40);
	cr_assert_eq(c.seed, 18);
	cr_assert_eq(c.x, 1.0);
	cr_assert(c.on);
	cr_assert_str_eq(c.name, "bob");
	cr_assert_str_eq(c.path, "a/b/cd");
	cr_assert_eq(c.mode, 2);
	cr_assert_eq(set(&c, "on", "0", err), 0);
	cr_assert_not(c.on);
	cigt__opts_destroy(rows, &c);
}

Test(options, text_errors_name_the_option_and_keep_the_value)
{
	static const struct {
		const char *name, *value, *msg;
	} bad[] = {
		{"max-n", "0", "--max-n: '0' is not an integer in [1, 100]"},
		{"max-n", "7x", "--max-n: '7x' is not an integer in [1, 100]"},
		{"max-n", "", "--max-n: '' is not an integer in [1, 100]"},
		{"big", "99999999999999999999", "--big: '99999999999999999999' is not an integer in "
						"[1, 1099511627776]"},
		{"x", "nan", "--x: 'nan' is not a number in [0, 1]"},
		{"x", "1.5", "--x: '1.5' is not a number in [0, 1]"},
		{"on", "maybe", "--on: 'maybe' is not true or false"},
		{"path", "12345678", "--path: '12345678' is not a file path (1 to 7 bytes)"},
		{"path", "", "--path: '' is not a file path (1 to 7 bytes)"},
		{"mode", "quick", "--mode: 'quick' is not fast, slow or exact"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct conf c = fresh();
		char err[256] = "";
		cr_assert_neq(set(&c, bad[i].name, bad[i].value, err), 0, "%s accepted", bad[i].value);
		cr_assert_str_eq(err, bad[i].msg);
		cr_assert_eq(c.n, 16);
		cr_assert_eq(c.x, 0.5);
		cr_assert_eq(c.mode, 1);
		cigt__opts_destroy(rows, &c);
	}
}

Test(options, lookup_takes_either_spelling_of_a_dash)
{
	cr_assert_eq(cigt__opts_find(rows, 0, "max-n", 5), &rows[0]);
	cr_assert_eq(cigt__opts_find(rows, 0, "max_n", 5), &rows[0]);
	cr_assert_eq(cigt__opts_find(rows, 0, "max_nx", 5), &rows[0], "only n bytes are the key");
	cr_assert_null(cigt__opts_find(rows, 0, "max", 3));
	cr_assert_eq(cigt__opts_find(rows, CIGT_OPT_IN_DAEMON, "max-n", 5), &rows[0]);
	cr_assert_null(cigt__opts_find(rows, CIGT_OPT_IN_DAEMON, "big", 3), "where filters");
	static const struct cigt_opt under[] = {{"a_b", 0, CIGT_OPT_FLAG, .help = "x"}, {0}};
	cr_assert_null(cigt__opts_find(under, 0, "a-b", 3), "a '_' in a name stays a '_'");
}

Test(options, json_values_of_every_type)
{
	struct conf c = fresh();
	char err[256] = "";
	cr_assert_eq(json(&c, "{\"max_n\": 3, \"big\": 5, \"seed\": 9223372036854775807, "
			      "\"x\": 0, \"on\": true, \"name\": \"n\", \"path\": \"p\", "
			      "\"mode\": \"Fast\", \"sec\": {}}",
			  err),
		     0, "%s", err);
	cr_assert_eq(c.n, 3);
	cr_assert_eq(c.big, 5);
	cr_assert_eq(c.seed, INT64_MAX);
	cr_assert_eq(c.x, 0.0);
	cr_assert(c.on);
	cr_assert_str_eq(c.name, "n");
	cr_assert_str_eq(c.path, "p");
	cr_assert_eq(c.mode, 0);
	cr_assert_eq(c.lo_n, 2, "the section's default, stored as the section is read");
	cr_assert_eq(c.checked, 1);
	cigt__opts_destroy(rows, &c);
}

Test(options, json_errors_name_the_key_path)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{"{\"seed\": 1, \"max_n\": 0}", "config: max_n: expected an integer in [1, 100]"},
		{"{\"seed\": 1, \"max-n\": 2.0}", "config: max-n: expected an integer in [1, 100]"},
		{"{\"seed\": 1, \"max_n\": \"2\"}", "config: max_n: expected an integer in [1, 100]"},
		{"{\"seed\": 1, \"x\": \"0\"}", "config: x: expected a number in [0, 1]"},
		{"{\"seed\": 1, \"on\": 1}", "config: on: expected true or false"},
		{"{\"seed\": 1, \"name\": 5}", "config: name: expected a string"},
		{"{\"seed\": 1, \"path\": \"12345678\"}",
		 "config: path: expected a file path (1 to 7 bytes)"},
		{"{\"seed\": 1, \"mode\": 2}", "config: mode: expected fast, slow or exact"},
		{"{\"seed\": 1, \"sec\": 3}", "config: sec: expected {\"lo\": 0..9}"},
		{"{\"seed\": 1, \"sec\": {\"lo\": 10}}", "config: sec.lo: expected an integer in [0, 9]"},
		{"{\"seed\": 1, \"sec\": {\"hi\": 1}}", "config: sec: unknown key 'hi'"},
		{"{\"seed\": 1, \"max_n\": 1, \"sec\": {}}", "config: sec: lo above n"},
		{"{}", "config: seed: missing"},
		{"{\"max_n\": 0, \"bogus\": 1}", "config: unknown key 'bogus'"},
		{"{\"seed\": 1, \"max_n\": 3, \"max-n\": 4}",
		 "config: 'max_n' and 'max-n' are one option"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct conf c = fresh();
		char err[256] = "";
		cr_assert_neq(json(&c, bad[i].text, err), 0, "%s accepted", bad[i].text);
		cr_assert_str_eq(err, bad[i].msg, "%s", bad[i].text);
		cigt__opts_destroy(rows, &c);
	}
}

Test(options, json_where_filters_keys)
{
	struct conf c = fresh();
	char err[256] = "";
	json_t *j = json_loads("{\"big\": 3}", 0, NULL);
	cr_assert_neq(cigt__opts_read_json(rows, CIGT_OPT_IN_DAEMON, &c, j, "", "t", err, 256), 0);
	cr_assert_str_eq(err, "t: unknown key 'big'");
	json_decref(j);
	cigt__opts_destroy(rows, &c);
}

Test(options, owned_strings_replaced_and_freed)
{
	struct conf c = fresh();
	char err[256];
	char *first = c.name;
	cr_assert_eq(set(&c, "name", "one", err), 0);
	cr_assert_neq(c.name, first);
	cr_assert_eq(json(&c, "{\"seed\": 1, \"name\": \"two\"}", err), 0);
	cr_assert_str_eq(c.name, "two");
	cigt__opts_destroy(rows, &c);
	cr_assert_null(c.name);
}

/* A shared row, bound twice: to a variable with its own help, and to a field. */
static const struct cigt_opt shared = {"limit", 0, CIGT_OPT_INT, .where = CIGT_OPT_IN_CLI,
				       .cmds = "a b", .lo = 1, .hi = 9, .def = "4", .arg = "N",
				       .help = "the shared help"};

Test(options, bindings_take_the_shared_row_and_their_own_target)
{
	long long v = 0;
	int w = 0;
	const struct cigt_opt t[] = {
		{.like = &shared, CIGT_OPT_VAR(v), .help = "own help", .flags = CIGT_OPT_HIDDEN},
		CIGT_OPT_BIND(shared, w),
		{0},
	};
	struct cigt_opt tmp;
	const struct cigt_opt *r = cigt__opt_resolve(&t[0], &tmp);
	cr_assert_str_eq(r->name, "limit");
	cr_assert_str_eq(r->help, "own help");
	cr_assert_str_eq(r->arg, "N");
	cr_assert_eq(r->flags, CIGT_OPT_HIDDEN);
	cr_assert_eq(r->hi, 9);
	cr_assert_eq(cigt__opt_resolve(&shared, &tmp), &shared, "a plain row is itself");
	cr_assert_eq(cigt__opts_defaults(t, NULL), 0);
	cr_assert_eq(v, 4);
	cr_assert_eq(w, 4);
	char err[256];
	cr_assert_eq(cigt__opt_set(&t[1], NULL, "9", "--", err, sizeof err), 0);
	cr_assert_eq(w, 9);
	cr_assert_neq(cigt__opt_set(&t[0], NULL, "10", "--", err, sizeof err), 0);
	cr_assert_str_eq(err, "--limit: '10' is not an integer in [1, 9]");
	cr_assert_eq(cigt__opts_find(t, 0, "limit", 5), &t[0]);
}

Test(options, help_lines_from_the_rows, .init = cr_redirect_stdout)
{
	cigt__opts_help(rows, 0, 10, stdout);
	fflush(stdout);
	cr_assert_stdout_eq_str("  --max-n N a number (default 16)\n"
				"  --big     a wide one; the default is outside the range (default -1)\n"
				"  --seed    required in JSON\n"
				"  --x       a share (default 0.5)\n"
				"  --on      a flag\n"
				"  --name    an owned string (default anon)\n"
				"  --path    a short path\n"
				"  --mode    a choice (default slow)\n"
				"  --sec {\"lo\": 0..9}\n"
				"            a section\n");
}

Test(options, help_puts_a_long_default_on_its_own_line, .init = cr_redirect_stdout)
{
	static const struct cigt_opt t[] = {
		{"data", 0, CIGT_OPT_STR, .arg = "DIR", .def = "/a/rather/long/default/directory",
		 .help = "first line\nthe second line of the help is long enough already"},
		{"hidden", 0, CIGT_OPT_FLAG, .flags = CIGT_OPT_HIDDEN, .help = "not listed"},
		{"d", 'd', CIGT_OPT_FLAG, .where = CIGT_OPT_IN_CLI, .help = "short"},
		{0},
	};
	cigt__opts_help(t, 0, 12, stdout);
	fflush(stdout);
	cr_assert_stdout_eq_str("  --data DIR  first line\n"
				"              the second line of the help is long enough already\n"
				"              (default /a/rather/long/default/directory)\n"
				"  -d, --d     short\n");
}

Test(options, values_back_as_json)
{
	struct conf c = fresh();
	json_t *o = json_object();
	for (const struct cigt_opt *r = rows; !cigt__opt_end(r); r++) {
		json_t *v = cigt__opt_get_json(r, &c);
		if (v)
			json_object_set_new(o, r->name, v);
	}
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	cr_assert_str_eq(s, "{\"max-n\":16,\"big\":-1,\"seed\":0,\"x\":0.5,\"on\":false,"
			    "\"name\":\"anon\",\"path\":\"\",\"mode\":\"slow\"}");
	free(s);
	json_decref(o);
	cigt__opts_destroy(rows, &c);
}

Test(options, described_for_the_docs)
{
	json_t *d = cigt__opts_describe(rows);
	cr_assert_eq(json_array_size(d), 9);
	json_t *n = json_array_get(d, 0);
	cr_assert_str_eq(json_string_value(json_object_get(n, "name")), "max-n");
	cr_assert_str_eq(json_string_value(json_object_get(n, "flag")), "--max-n");
	cr_assert_str_eq(json_string_value(json_object_get(n, "key")), "max_n");
	cr_assert_str_eq(json_string_value(json_object_get(n, "type")), "int");
	cr_assert_eq(json_integer_value(json_object_get(n, "min")), 1);
	cr_assert_eq(json_integer_value(json_object_get(n, "max")), 100);
	cr_assert_str_eq(json_string_value(json_object_get(n, "default")), "16");
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(n, "where"), 0)),
			 "cigtd");
	cr_assert(json_is_true(json_object_get(json_array_get(d, 2), "required")));
	json_t *m = json_array_get(d, 7);
	cr_assert_eq(json_array_size(json_object_get(m, "choices")), 3);
	json_t *sec = json_array_get(d, 8);
	cr_assert_str_eq(json_string_value(json_object_get(sec, "type")), "object");
	cr_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(json_object_get(sec, "keys"), 0), "name")),
			 "lo");
	json_t *b = cigt__opts_describe((const struct cigt_opt[]){CIGT_OPT_BIND(shared, m), {0}});
	json_t *cmds = json_object_get(json_array_get(b, 0), "commands");
	cr_assert_eq(json_array_size(cmds), 2);
	cr_assert_str_eq(json_string_value(json_array_get(cmds, 1)), "b");
	json_decref(b);
	json_decref(d);
}

Test(options, mebibytes_into_a_size_t)
{
	size_t bytes = 0;
	const struct cigt_opt t[] = {{"mb", 0, CIGT_OPT_CALL, CIGT_OPT_VAR(bytes), .lo = 1,
				      .hi = 4, .text = cigt__opt_mebibytes},
				     {0}};
	char err[256];
	cr_assert_eq(cigt__opt_set(t, NULL, "3", "--", err, sizeof err), 0);
	cr_assert_eq(bytes, (size_t)3 << 20);
	cr_assert_neq(cigt__opt_set(t, NULL, "5", "--", err, sizeof err), 0);
	cr_assert_str_eq(err, "--mb: '5' is not an integer in [1, 4]");
}

/* A row whose variable is narrower than its type is a mistake in the table: caught before it
 * writes. */
Test(options, row_wider_than_its_variable_aborts, .signal = SIGABRT,
     .init = cr_redirect_stderr)
{
	short narrow;
	const struct cigt_opt t[] = {{"n", 0, CIGT_OPT_INT, CIGT_OPT_VAR(narrow), .lo = 0, .hi = 9},
				     {0}};
	char err[256];
	cigt__opt_set(t, NULL, "1", "--", err, sizeof err);
}

Test(options, int_row_beyond_an_int_needs_a_wide_variable, .signal = SIGABRT,
     .init = cr_redirect_stderr)
{
	int v;
	const struct cigt_opt t[] = {
		{"n", 0, CIGT_OPT_INT, CIGT_OPT_VAR(v), .lo = 0, .hi = 1LL << 40}, {0}};
	char err[256];
	cigt__opt_set(t, NULL, "1", "--", err, sizeof err);
}
