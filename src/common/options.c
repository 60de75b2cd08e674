/* The option table's readers (options.h): a text value (a flag's argument or a default) and a
 * JSON object into the targets the rows name, with one message per kind of mistake, the help
 * lines, and the table described as JSON for the docs. Row sizes are checked against their
 * types before every store. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cigt/error.h"
#include "options.h"
#include "util.h"

/* Enough for a JSON path such as "config.json: dynamic_batching.default_queue_policy.x". */
#define AT_MAX 256
/* Rows in one table at most (a bit per row tells which keys an object gave). */
#define ROWS_MAX 64

const struct cigt_opt *cigt__opt_resolve(const struct cigt_opt *o, struct cigt_opt *tmp)
{
	if (!o->like)
		return o;
	CIGT_ASSERT(!o->like->like && !o->name);
	*tmp = *o->like;
	tmp->p = o->p;
	tmp->off = o->off;
	tmp->size = o->size;
	if (o->help)
		tmp->help = o->help;
	if (o->arg)
		tmp->arg = o->arg;
	tmp->flags |= o->flags;
	tmp->like = NULL;
	return tmp;
}

void *cigt__opt_target(const struct cigt_opt *o, void *base)
{
	if (o->p)
		return o->p;
	return base ? (char *)base + o->off : NULL;
}

/* The row's size fits its type: a table cannot write past its variable. */
static void check_size(const struct cigt_opt *o)
{
	switch (o->type) {
	case CIGT_OPT_FLAG:
		CIGT_ASSERT(o->size == sizeof(bool));
		break;
	case CIGT_OPT_INT:
		CIGT_ASSERT(o->size == sizeof(int) || o->size == sizeof(long long));
		CIGT_ASSERT(o->size == sizeof(long long) || (o->lo >= INT_MIN && o->hi <= INT_MAX));
		break;
	case CIGT_OPT_DOUBLE:
		CIGT_ASSERT(o->size == sizeof(double));
		break;
	case CIGT_OPT_STR:
		CIGT_ASSERT(o->size == sizeof(char *));
		break;
	case CIGT_OPT_PATH:
		CIGT_ASSERT(o->size >= 2);
		break;
	case CIGT_OPT_CHOICE:
		CIGT_ASSERT(o->size == sizeof(int) && o->choices && o->choices[0]);
		break;
	case CIGT_OPT_SECTION:
		CIGT_ASSERT(o->sub);
		break;
	case CIGT_OPT_CALL:
	case CIGT_OPT_NTYPES:
		break;
	}
}

static void store_int(const struct cigt_opt *o, void *t, long long v)
{
	if (o->size == sizeof(int)) {
		int x = (int)v;
		memcpy(t, &x, sizeof x);
	} else {
		memcpy(t, &v, sizeof v);
	}
}

/* "a, b or c" into buf. */
static const char *choice_list(const struct cigt_opt *o, char *buf, size_t n)
{
	size_t len = 0;
	int k = 0;
	while (o->choices[k])
		k++;
	buf[0] = 0;
	for (int i = 0; i < k && len < n; i++) {
		int w = snprintf(buf + len, n - len, "%s%s", i == 0 ? "" : i + 1 < k ? ", " : " or ",
				 o->choices[i]);
		if (w < 0)
			break;
		len += (size_t)w;
	}
	return buf;
}

static int choice_index(const struct cigt_opt *o, const char *s)
{
	for (int i = 0; o->choices[i]; i++)
		if (o->flags & CIGT_OPT_NOCASE ? !strcasecmp(s, o->choices[i])
					       : !strcmp(s, o->choices[i]))
			return i;
	return -1;
}

static int set_string(const struct cigt_opt *o, void *t, const char *s, char *err, size_t errlen)
{
	if (!(o->flags & CIGT_OPT_OWNED)) {
		memcpy(t, &s, sizeof s);
		return 0;
	}
	char *copy = strdup(s), *old;
	if (!copy)
		return cigt_fail(err, errlen, CIGT_ENOMEM, "out of memory");
	memcpy(&old, t, sizeof old);
	free(old);
	memcpy(t, &copy, sizeof copy);
	return 0;
}

static int parse_ll(const char *s, long long *v)
{
	char *end;
	errno = 0;
	*v = strtoll(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

/* A text value into target t; the range is checked unless it is a default. */
static int set_text(const struct cigt_opt *o, void *t, const char *s, const char *at,
		    bool range, char *err, size_t errlen)
{
	char *end, list[256];
	long long v;
	check_size(o);
	switch (o->type) {
	case CIGT_OPT_FLAG: {
		bool b;
		if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes"))
			b = true;
		else if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no"))
			b = false;
		else
			return cigt_fail(err, errlen, CIGT_EINVAL, "%s: '%s' is not true or false", at,
					 s);
		memcpy(t, &b, sizeof b);
		return 0;
	}
	case CIGT_OPT_INT:
		if (parse_ll(s, &v) || (range && (v < o->lo || v > o->hi)))
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "%s: '%s' is not an integer in [%lld, %lld]", at, s, o->lo,
					 o->hi);
		store_int(o, t, v);
		return 0;
	case CIGT_OPT_DOUBLE: {
		errno = 0;
		double d = strtod(s, &end);
		if (errno || end == s || *end || (range && !(d >= o->dlo && d <= o->dhi)))
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "%s: '%s' is not a number in [%g, %g]", at, s, o->dlo,
					 o->dhi);
		memcpy(t, &d, sizeof d);
		return 0;
	}
	case CIGT_OPT_STR:
		return set_string(o, t, s, err, errlen);
	case CIGT_OPT_PATH: {
		size_t n = strlen(s);
		if (n == 0 || n >= o->size)
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "%s: '%.80s' is not a file path (1 to %zu bytes)", at, s,
					 o->size - 1);
		memcpy(t, s, n + 1);
		return 0;
	}
	case CIGT_OPT_CHOICE: {
		int i = choice_index(o, s);
		if (i < 0)
			return cigt_fail(err, errlen, CIGT_EINVAL, "%s: '%s' is not %s", at, s,
					 choice_list(o, list, sizeof list));
		memcpy(t, &i, sizeof i);
		return 0;
	}
	case CIGT_OPT_CALL:
		if (!o->text)
			return cigt_fail(err, errlen, CIGT_EINVAL, "%s: takes no text value", at);
		return o->text(o, t, s, at, err, errlen);
	case CIGT_OPT_SECTION:
	case CIGT_OPT_NTYPES:
		break;
	}
	return cigt_fail(err, errlen, CIGT_EINVAL, "%s: takes an object, not '%s'", at, s);
}

int cigt__opt_set(const struct cigt_opt *o, void *base, const char *text, const char *from,
		  char *err, size_t errlen)
{
	struct cigt_opt tmp;
	char at[AT_MAX];
	o = cigt__opt_resolve(o, &tmp);
	snprintf(at, sizeof at, "%.32s%.200s", from, o->name);
	return set_text(o, cigt__opt_target(o, base), text, at, true, err, errlen);
}

int cigt__opts_defaults(const struct cigt_opt *rows, void *base)
{
	for (; !cigt__opt_end(rows); rows++) {
		struct cigt_opt tmp;
		const struct cigt_opt *o = cigt__opt_resolve(rows, &tmp);
		if (!o->def)
			continue;
		char err[256];
		int rc = set_text(o, cigt__opt_target(o, base), o->def, o->name, false, err,
				  sizeof err);
		/* A default that does not parse is a mistake in the table. */
		CIGT_ASSERT(rc == 0 || rc == CIGT_ENOMEM);
		if (rc)
			return rc;
	}
	return 0;
}

void cigt__opts_destroy(const struct cigt_opt *rows, void *base)
{
	for (; !cigt__opt_end(rows); rows++) {
		struct cigt_opt tmp;
		const struct cigt_opt *o = cigt__opt_resolve(rows, &tmp);
		if (o->type == CIGT_OPT_SECTION) {
			cigt__opts_destroy(o->sub, base);
		} else if (o->type == CIGT_OPT_STR && (o->flags & CIGT_OPT_OWNED)) {
			char *s, *none = NULL;
			void *t = cigt__opt_target(o, base);
			memcpy(&s, t, sizeof s);
			free(s);
			memcpy(t, &none, sizeof none);
		}
	}
}

/* key[0, n) spells name, a '-' of the name also matching '_'. */
static bool name_is(const char *name, const char *key, size_t n)
{
	size_t k = 0;
	while (k < n && name[k] && (key[k] == name[k] || (key[k] == '_' && name[k] == '-')))
		k++;
	return k == n && !name[k];
}

const struct cigt_opt *cigt__opts_find(const struct cigt_opt *rows, unsigned where,
				       const char *key, size_t n)
{
	for (; !cigt__opt_end(rows); rows++) {
		struct cigt_opt tmp;
		const struct cigt_opt *o = cigt__opt_resolve(rows, &tmp);
		if ((!where || (o->where & where)) && name_is(o->name, key, n))
			return rows;
	}
	return NULL;
}

int cigt__opt_json_int(const struct cigt_opt *o, const json_t *v, const char *at, long long *out,
		       char *err, size_t errlen)
{
	if (!json_is_integer(v) || json_integer_value(v) < o->lo || json_integer_value(v) > o->hi)
		return cigt_fail(err, errlen, CIGT_EINVAL, "%s: expected an integer in [%lld, %lld]",
				 at, o->lo, o->hi);
	*out = json_integer_value(v);
	return 0;
}

/* A JSON value into o's target; at names it ("train.lr", "config: max_batch"). */
static int read_value(const struct cigt_opt *o, void *base, const json_t *v, const char *at,
		      char *err, size_t errlen)
{
	void *t = cigt__opt_target(o, base);
	char list[256];
	long long x;
	check_size(o);
	switch (o->type) {
	case CIGT_OPT_FLAG: {
		if (!json_is_boolean(v))
			return cigt_fail(err, errlen, CIGT_EINVAL, "%s: expected true or false", at);
		bool b = json_is_true(v);
		memcpy(t, &b, sizeof b);
		return 0;
	}
	case CIGT_OPT_INT:
		if (cigt__opt_json_int(o, v, at, &x, err, errlen))
			return CIGT_EINVAL;
		store_int(o, t, x);
		return 0;
	case CIGT_OPT_DOUBLE: {
		double d = json_number_value(v);
		if (!json_is_number(v) || !(d >= o->dlo && d <= o->dhi))
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "%s: expected a number in [%g, %g]", at, o->dlo, o->dhi);
		memcpy(t, &d, sizeof d);
		return 0;
	}
	case CIGT_OPT_STR:
		CIGT_ASSERT(o->flags & CIGT_OPT_OWNED); /* the document is freed after reading */
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
			return cigt_fail(err, errlen, CIGT_EINVAL, "%s: expected a string", at);
		return set_string(o, t, json_string_value(v), err, errlen);
	case CIGT_OPT_PATH: {
		size_t n = json_string_length(v);
		if (!json_is_string(v) || !n || n >= o->size || strlen(json_string_value(v)) != n)
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "%s: expected a file path (1 to %zu bytes)", at, o->size - 1);
		memcpy(t, json_string_value(v), n + 1);
		return 0;
	}
	case CIGT_OPT_CHOICE: {
		int i = json_is_string(v) ? choice_index(o, json_string_value(v)) : -1;
		if (i < 0)
			return cigt_fail(err, errlen, CIGT_EINVAL, "%s: expected %s", at,
					 choice_list(o, list, sizeof list));
		memcpy(t, &i, sizeof i);
		return 0;
	}
	case CIGT_OPT_SECTION: {
		if (!json_is_object(v))
			return cigt_fail(err, errlen, CIGT_EINVAL, "%s: expected %s", at,
					 o->arg ? o->arg : "an object");
		int rc;
		if ((rc = cigt__opts_defaults(o->sub, base)) ||
		    (rc = cigt__opts_read_json(o->sub, 0, base, v, "", at, err, errlen)))
			return rc;
		return o->check ? o->check(o, base, v, at, err, errlen) : 0;
	}
	case CIGT_OPT_CALL:
		CIGT_ASSERT(o->json);
		return o->json(o, t, v, at, err, errlen);
	case CIGT_OPT_NTYPES:
		break;
	}
	return cigt_fail(err, errlen, CIGT_EINVAL, "%s: cannot be read", at);
}

int cigt__opts_read_json(const struct cigt_opt *rows, unsigned where, void *base,
			 const json_t *obj, const char *label, const char *path, char *err,
			 size_t errlen)
{
	const char *key, *given[ROWS_MAX] = {0};
	json_t *v;
	if (!json_is_object(obj))
		return cigt_fail(err, errlen, CIGT_EINVAL, "%s%s%sexpected an object", label,
				 path ? path : "", path ? ": " : "");
	/* Unknown keys first, and one option given twice under its two spellings. */
	json_object_foreach((json_t *)obj, key, v) {
		const struct cigt_opt *r = cigt__opts_find(rows, where, key, strlen(key));
		if (!r)
			return cigt_fail(err, errlen, CIGT_EINVAL, "%s%s%sunknown key '%.64s'", label,
					 path ? path : "", path ? ": " : "", key);
		size_t i = (size_t)(r - rows);
		CIGT_ASSERT(i < ROWS_MAX);
		if (given[i])
			return cigt_fail(err, errlen, CIGT_EINVAL,
					 "%s%s%s'%.64s' and '%.64s' are one option", label,
					 path ? path : "", path ? ": " : "", given[i], key);
		given[i] = key;
	}
	for (size_t i = 0; !cigt__opt_end(&rows[i]); i++) {
		struct cigt_opt tmp;
		const struct cigt_opt *o = cigt__opt_resolve(&rows[i], &tmp);
		char at[AT_MAX], jkey[65];
		if (where && !(o->where & where))
			continue;
		if (!given[i]) {
			/* The key as a file writes it. */
			snprintf(jkey, sizeof jkey, "%.64s", o->name);
			for (char *c = jkey; *c; c++)
				if (*c == '-')
					*c = '_';
		}
		snprintf(at, sizeof at, "%.32s%.150s%s%.64s", label, path ? path : "",
			 path ? "." : "", given[i] ? given[i] : jkey);
		if (!given[i]) {
			if (o->flags & CIGT_OPT_REQUIRED)
				return cigt_fail(err, errlen, CIGT_EINVAL, "%s: missing", at);
			continue;
		}
		int rc = read_value(o, base, json_object_get(obj, given[i]), at, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

json_t *cigt__opt_get_json(const struct cigt_opt *o, void *base)
{
	struct cigt_opt tmp;
	o = cigt__opt_resolve(o, &tmp);
	const void *t = cigt__opt_target(o, base);
	if (!t)
		return NULL;
	check_size(o);
	switch (o->type) {
	case CIGT_OPT_FLAG: {
		bool b;
		memcpy(&b, t, sizeof b);
		return json_boolean(b);
	}
	case CIGT_OPT_INT: {
		long long v;
		if (o->size == sizeof(int)) {
			int x;
			memcpy(&x, t, sizeof x);
			v = x;
		} else {
			memcpy(&v, t, sizeof v);
		}
		return json_integer(v);
	}
	case CIGT_OPT_DOUBLE: {
		double d;
		memcpy(&d, t, sizeof d);
		return json_real(d);
	}
	case CIGT_OPT_STR: {
		const char *s;
		memcpy(&s, t, sizeof s);
		return s ? json_string(s) : json_null();
	}
	case CIGT_OPT_PATH:
		return json_string(t);
	case CIGT_OPT_CHOICE: {
		int i, n = 0;
		memcpy(&i, t, sizeof i);
		while (o->choices[n])
			n++;
		return i >= 0 && i < n ? json_string(o->choices[i]) : json_null();
	}
	case CIGT_OPT_SECTION:
	case CIGT_OPT_CALL:
	case CIGT_OPT_NTYPES:
		break;
	}
	return NULL;
}

static void print_row(const struct cigt_opt *o, int width, FILE *f)
{
	char label[128], shrt[8] = "";
	if (o->short_name)
		snprintf(shrt, sizeof shrt, "-%c, ", o->short_name);
	snprintf(label, sizeof label, "%s--%s%s%s", shrt, o->name, o->arg ? " " : "",
		 o->arg ? o->arg : "");
	if ((int)strlen(label) < width)
		fprintf(f, "  %-*s", width, label);
	else /* too long for the column: the text starts on the next line */
		fprintf(f, "  %s\n%*s", label, width + 2, "");
	const char *p = o->help ? o->help : "";
	for (const char *nl; (nl = strchr(p, '\n')); p = nl + 1)
		fprintf(f, "%.*s\n%*s", (int)(nl - p), p, width + 2, "");
	fputs(p, f);
	if (o->def && o->type != CIGT_OPT_FLAG) {
		size_t extra = strlen(o->def) + sizeof " (default )" - 1;
		if ((size_t)width + 2 + strlen(p) + extra > 79 && *p)
			fprintf(f, "\n%*s(default %s)", width + 2, "", o->def);
		else
			fprintf(f, "%s(default %s)", *p ? " " : "", o->def);
	}
	fputc('\n', f);
}

void cigt__opts_help(const struct cigt_opt *rows, unsigned where, int width, FILE *f)
{
	for (; !cigt__opt_end(rows); rows++) {
		struct cigt_opt tmp;
		const struct cigt_opt *o = cigt__opt_resolve(rows, &tmp);
		if ((where && !(o->where & where)) || (o->flags & CIGT_OPT_HIDDEN))
			continue;
		print_row(o, width, f);
	}
}

static const char *const type_names[] = {"flag",   "int",    "number", "string",
					 "path",   "choice", "object", "custom"};
_Static_assert(sizeof type_names / sizeof type_names[0] == CIGT_OPT_NTYPES,
	       "a name for every option type");

static const char *const place_names[] = {"cigt", "cigtd", "cigtd-config", "train",
					  "repository"};

json_t *cigt__opts_describe(const struct cigt_opt *rows)
{
	json_t *a = json_array();
	for (; a && !cigt__opt_end(rows); rows++) {
		struct cigt_opt tmp;
		const struct cigt_opt *o = cigt__opt_resolve(rows, &tmp);
		char flag[128], key[128];
		snprintf(flag, sizeof flag, "--%s", o->name);
		snprintf(key, sizeof key, "%s", o->name);
		for (char *c = key; *c; c++)
			if (*c == '-')
				*c = '_';
		json_t *r = json_pack("{ss ss ss ss sb sb}", "name", o->name, "flag", flag, "key",
				      key, "type", type_names[o->type], "required",
				      !!(o->flags & CIGT_OPT_REQUIRED), "hidden",
				      !!(o->flags & CIGT_OPT_HIDDEN));
		json_t *where = json_array(), *cmds = json_array();
		for (size_t i = 0; i < sizeof place_names / sizeof place_names[0]; i++)
			if (o->where & (1u << i))
				json_array_append_new(where, json_string(place_names[i]));
		for (const char *c = o->cmds; c && *c;) {
			size_t n = strcspn(c, " ");
			if (n)
				json_array_append_new(cmds, json_stringn(c, n));
			c += n + (c[n] == ' ');
		}
		json_object_set_new(r, "where", where);
		json_object_set_new(r, "commands", cmds);
		if (o->short_name)
			json_object_set_new(r, "short", json_sprintf("-%c", o->short_name));
		if (o->type == CIGT_OPT_INT || (o->type == CIGT_OPT_CALL && o->lo < o->hi)) {
			json_object_set_new(r, "min", json_integer(o->lo));
			json_object_set_new(r, "max", json_integer(o->hi));
		} else if (o->type == CIGT_OPT_DOUBLE) {
			json_object_set_new(r, "min", json_real(o->dlo));
			json_object_set_new(r, "max", json_real(o->dhi));
		} else if (o->type == CIGT_OPT_CHOICE) {
			json_t *c = json_array();
			for (int i = 0; o->choices[i]; i++)
				json_array_append_new(c, json_string(o->choices[i]));
			json_object_set_new(r, "choices", c);
		} else if (o->type == CIGT_OPT_PATH) {
			json_object_set_new(r, "max_bytes", json_integer((json_int_t)o->size - 1));
		}
		json_object_set_new(r, "default", o->def ? json_string(o->def) : json_null());
		json_object_set_new(r, "arg", o->arg ? json_string(o->arg) : json_null());
		json_object_set_new(r, "help", o->help ? json_string(o->help) : json_null());
		if (o->sub) /* a section's keys, or those a CALL row reads */
			json_object_set_new(r, "keys", cigt__opts_describe(o->sub));
		if (json_array_append_new(a, r)) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int cigt__opt_mebibytes(const struct cigt_opt *o, void *target, const char *arg, const char *at,
			char *err, size_t errlen)
{
	long long v;
	if (parse_ll(arg, &v) || v < o->lo || v > o->hi)
		return cigt_fail(err, errlen, CIGT_EINVAL,
				 "%s: '%s' is not an integer in [%lld, %lld]", at, arg, o->lo, o->hi);
	CIGT_ASSERT(o->size == sizeof(size_t));
	size_t bytes = (size_t)v << 20;
	memcpy(target, &bytes, sizeof bytes);
	return 0;
}
