/* The one option table (Redis's config table): a row names an option once -- type, range,
 * default, help and the places it may be set -- and the same rows drive the cigt subcommands'
 * flags, cigtd's flags and --config file, a training config's "train" section and a repository
 * model's config.json, their --help, and the docs' option lists (`cigt options --json`,
 * `cigtd --options-json`, tests/docs/). Each consumer keeps its own rows and target struct; a
 * row shared by several tables is defined once and bound into each with `like`.
 *
 *     struct opts { int batch; char *listen; };
 *     static const struct cigt_opt rows[] = {
 *             {"max-batch", 0, CIGT_OPT_INT, CIGT_OPT_FIELD(struct opts, batch), .lo = 1,
 *              .hi = 4096, .def = "16", .arg = "N", .help = "samples per batch"},
 *             {"listen", 0, CIGT_OPT_STR, CIGT_OPT_FIELD(struct opts, listen),
 *              .flags = CIGT_OPT_OWNED, .def = "127.0.0.1:8080", .help = "address"},
 *             {0},
 *     };
 *     struct opts o = {0};
 *     cigt__opts_defaults(rows, &o);                       // defaults, then
 *     cigt__opts_read_json(rows, 0, &o, file_object, "config: ", NULL, err, n);  // the file,
 *     cigt__opt_set(cigt__opts_find(rows, 0, "max-batch", 9), &o, "32", "--", err, n); // flags
 *     cigt__opts_destroy(rows, &o);
 *
 * Nothing here depends on a floor above src/common. */
#ifndef CIGT_COMMON_OPTIONS_H
#define CIGT_COMMON_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct json_t;

enum cigt_opt_type {
	CIGT_OPT_FLAG,    /* bool. A flag takes no argument (cigtd's also =true|false); JSON true|false */
	CIGT_OPT_INT,     /* an integer in [lo, hi] into an int, or (size 8) a long long, int64_t or,
			   * when lo >= 0, uint64_t. JSON: an integer */
	CIGT_OPT_DOUBLE,  /* a number in [dlo, dhi] into a double */
	CIGT_OPT_STR,     /* a const char *: borrowed from argv, or with CIGT_OPT_OWNED a malloc'd
			   * copy that replaces (and frees) the previous one */
	CIGT_OPT_PATH,    /* a file path of 1 to size - 1 bytes copied into a char[size] */
	CIGT_OPT_CHOICE,  /* an int: the value's index in choices */
	CIGT_OPT_SECTION, /* JSON only: an object whose keys are the rows of sub */
	CIGT_OPT_CALL,    /* text (a flag's argument) and json (a JSON value) store it themselves */
	CIGT_OPT_NTYPES
};

/* Where a row may be set (its `where` bits; 0: only where its table is read). */
enum {
	CIGT_OPT_IN_CLI = 1 << 0,         /* a flag of the cigt subcommands named in cmds */
	CIGT_OPT_IN_DAEMON = 1 << 1,      /* a cigtd flag */
	CIGT_OPT_IN_DAEMON_FILE = 1 << 2, /* a key of cigtd's --config file */
	CIGT_OPT_IN_TRAIN = 1 << 3,       /* a key of a training config's "train" section */
	CIGT_OPT_IN_REPO = 1 << 4,        /* a key of a repository model's config.json */
};

/* Row flags. */
enum {
	CIGT_OPT_REQUIRED = 1 << 0, /* JSON: an absent key is an error; CLI (STR): a usage error */
	CIGT_OPT_OWNED = 1 << 1,    /* STR: the target owns its string (cigt__opts_destroy frees it) */
	CIGT_OPT_HIDDEN = 1 << 2,   /* not listed by --help (the docs still list it) */
	CIGT_OPT_NOCASE = 1 << 3,   /* CHOICE: matched ignoring case */
};

struct cigt_opt {
	const char *name;  /* flag spelling, words joined by '-' (a JSON key may write '_' for each
			    * '-'); a row with neither name nor like ends a table */
	char short_name;   /* CLI: also -X (0: none) */
	enum cigt_opt_type type;
	/* The target: p when set (a variable: CIGT_OPT_VAR), else off bytes into the struct the
	 * caller passes as base (CIGT_OPT_FIELD). size is the target's sizeof, checked against
	 * the type (an always-on assertion), so a row cannot write past its variable. */
	void *p;
	size_t off, size;
	unsigned where;    /* CIGT_OPT_IN_* */
	const char *cmds;  /* CIGT_OPT_IN_CLI: the subcommands, space-separated ("eval tune") */
	unsigned flags;    /* CIGT_OPT_REQUIRED, ... */
	long long lo, hi;  /* INT; CALL rows may use them too */
	double dlo, dhi;   /* DOUBLE */
	const char *const *choices; /* CHOICE: NULL-terminated */
	/* The default, written as a value ("16", "info"): cigt__opts_defaults (and cli_parse)
	 * store it, unchecked against the range (a sentinel such as -1 may stand for "not set").
	 * NULL: the target keeps the value it has, and help says what that means. */
	const char *def;
	const char *arg;   /* the value's name in help ("N", "DIR"); SECTION: its shape
			    * ({"flip": true|false, ...}), also said by "expected ..." */
	const char *help;  /* lines separated by '\n'; --help appends "(default X)" */
	const struct cigt_opt *sub; /* SECTION: its rows (CALL: the rows it reads, for the docs) */
	/* CALL: store a flag's argument / a JSON value; `at` names the option in messages
	 * ("--load-model", "config: load_model"). 0, or a CIGT_E* code with "<at>: ..." in err.
	 * target is NULL for a CALL row with neither p nor base. */
	int (*text)(const struct cigt_opt *o, void *target, const char *arg, const char *at,
		    char *err, size_t errlen);
	int (*json)(const struct cigt_opt *o, void *target, const struct json_t *v, const char *at,
		    char *err, size_t errlen);
	/* SECTION: called after its rows were read, with the object and the section's base. */
	int (*check)(const struct cigt_opt *o, void *base, const struct json_t *obj, const char *at,
		     char *err, size_t errlen);
	/* A binding: the row is *like (defined once, shared by several tables) with this row's
	 * target (p, off, size), and help and arg when set; its flags are added to like's. */
	const struct cigt_opt *like;
};

/* Targets: a variable, or a member of the struct a table is read into. */
#define CIGT_OPT_VAR(v) .p = &(v), .size = sizeof(v)
#define CIGT_OPT_FIELD(type, f) .off = offsetof(type, f), .size = sizeof(((type *)0)->f)
/* The shared row r bound to variable v (help and arg from r). */
#define CIGT_OPT_BIND(r, v) {.like = &(r), CIGT_OPT_VAR(v)}

/* True for the row that ends a table. */
static inline bool cigt__opt_end(const struct cigt_opt *o)
{
	return !o->name && !o->like;
}

/* The row o stands for: o itself, or (a binding) *o->like with o's target, help, arg and flags
 * written into *tmp. The result is valid while o and tmp are. */
const struct cigt_opt *cigt__opt_resolve(const struct cigt_opt *o, struct cigt_opt *tmp);

/* Where o stores: o->p, else base + o->off (NULL when both are NULL). */
void *cigt__opt_target(const struct cigt_opt *o, void *base);

/* Stores a text value (a flag's argument, a default) into o's target. The option is named
 * "<from><name>" in messages: "--max-batch: '0' is not an integer in [1, 4096]", "... is not
 * a number in [lo, hi]", "... is not true or false", "'x' is not a, b or c". 0, or CIGT_EINVAL
 * (CIGT_ENOMEM) with the message in err. */
int cigt__opt_set(const struct cigt_opt *o, void *base, const char *text, const char *from,
		  char *err, size_t errlen);

/* Stores every row's default (the rows with def; bindings resolved) into its target. Owned
 * strings are copied; only running out of memory fails (CIGT_ENOMEM). */
int cigt__opts_defaults(const struct cigt_opt *rows, void *base);

/* Frees and clears the owned strings of rows (and of their sections). */
void cigt__opts_destroy(const struct cigt_opt *rows, void *base);

/* The row of rows whose name is key[0, n) ('-' in a name also matching '_'), among rows with
 * one of the `where` bits set (where 0: every row); NULL when none. Bindings are returned as
 * they are: resolve them. */
const struct cigt_opt *cigt__opts_find(const struct cigt_opt *rows, unsigned where,
				       const char *key, size_t n);

/* Reads a JSON object whose keys are rows of the table (rows with a `where` bit when where is
 * not 0). Unknown keys are refused first ("<label><path>: unknown key 'k'"), then every row is
 * read in table order: present, its value ("<label><path>.<key>: expected an integer in [lo,
 * hi]", "... expected a number in [lo, hi]", "... expected true or false", "... expected a
 * file path (1 to N bytes)", "... expected a, b or c", a section's "... expected <arg>");
 * absent and required, "<label><path>.<key>: missing"; absent, left as it is (a section's rows
 * get their defaults only when the section is present). path NULL: the keys are named alone
 * ("<label><key>: ..."). 0, or CIGT_EINVAL (CIGT_ENOMEM) with the message in err. */
int cigt__opts_read_json(const struct cigt_opt *rows, unsigned where, void *base,
			 const struct json_t *obj, const char *label, const char *path, char *err,
			 size_t errlen);

/* For CALL rows: v as an integer in [o->lo, o->hi] (the message of an INT row, at naming it). */
int cigt__opt_json_int(const struct cigt_opt *o, const struct json_t *v, const char *at,
		       long long *out, char *err, size_t errlen);

/* The help lines of rows (where 0: every row; else rows with one of the bits), hidden ones
 * left out: "  -o, --out FILE" padded to width (or alone on its line when longer), then the
 * help text indented to the column, with " (default X)" after it when the row has one (on a
 * line of its own when the last line would pass 79 columns). */
void cigt__opts_help(const struct cigt_opt *rows, unsigned where, int width, FILE *f);

/* The value of o's target as JSON (for effective-configuration dumps); NULL for SECTION and
 * CALL rows. New reference. */
struct json_t *cigt__opt_get_json(const struct cigt_opt *o, void *base);

/* The table as a JSON array for the docs: one object per row (bindings resolved) with name,
 * flag ("--name"), key ("name" with '_'), type, where (names of the places), commands,
 * required, hidden, min/max, choices, default, arg, help, short, and a section's keys. New
 * reference; NULL when out of memory. */
struct json_t *cigt__opts_describe(const struct cigt_opt *rows);

/* A CALL text function: a size in MiB, an integer in [o->lo, o->hi] stored as bytes in a
 * size_t. */
int cigt__opt_mebibytes(const struct cigt_opt *o, void *target, const char *arg, const char *at,
			char *err, size_t errlen);

#endif
