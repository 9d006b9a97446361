/*
 * rt_opt: one declarative option table read from defaults, YAML, environment and command line,
 * and printed as --help (see rt_opt.h).
 */
#include "rt_opt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rt_err.h"

#define S_MAX_NAME 96  /* bytes of a flag or variable name */
#define S_MAX_LIST 128 /* items of a list value */

/* The field of option o in the struct at opts. */
static void *s_field(const struct rt_opt *o, void *opts)
{
    return (char *)opts + o->off;
}

const char *rt_opt_env_name(const struct rt_opt *o, char *buf, size_t cap)
{
    size_t k = 0;
    for (const char *p = "EB_"; *p && k + 1 < cap; p++)
        buf[k++] = *p;
    for (const char *c = o->flag; *c && k + 1 < cap; c++)
        buf[k++] = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
    buf[k] = '\0';
    return buf;
}

static int s_is_list(enum rt_opt_type t)
{
    return t == RT_OPT_LIST_INT || t == RT_OPT_LIST_FLOAT || t == RT_OPT_LIST_STR;
}

static const char *s_type_word(enum rt_opt_type t)
{
    switch (t) {
    case RT_OPT_INT:
        return "INT";
    case RT_OPT_FLOAT:
        return "NUM";
    case RT_OPT_BOOL:
        return "BOOL";
    case RT_OPT_STR:
        return "TEXT";
    case RT_OPT_LIST_INT:
        return "INT,...";
    case RT_OPT_LIST_FLOAT:
        return "NUM,...";
    case RT_OPT_LIST_STR:
        return "TEXT,...";
    case RT_OPT_SWITCH:
        return "";
    }
    return "?";
}

static int s_parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (end != s && isspace((unsigned char)*end))
        end++;
    if (end == s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

static int s_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (end != s && isspace((unsigned char)*end))
        end++;
    if (end == s || *end || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

static int s_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Is word one of the '|'-separated choices (any case)? */
static int s_choice_ok(const char *choices, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = choices; p && *p;) {
        size_t l = strcspn(p, "|");
        if (l == wl && !strncasecmp(p, word, l))
            return 1;
        p += l + (p[l] == '|');
    }
    return 0;
}

/* o's range in words ("in [0, 1]", "> 0", ">= 0"), numbers to `digits` significant digits. */
static const char *s_range_text(const struct rt_opt *o, int digits, char *buf, size_t cap)
{
    if (o->max == RT_OPT_UNBOUNDED && o->min == RT_OPT_POSITIVE)
        snprintf(buf, cap, "> 0");
    else if (o->max == RT_OPT_UNBOUNDED)
        snprintf(buf, cap, ">= %.*g", digits, o->min);
    else
        snprintf(buf, cap, "in [%.*g, %.*g]", digits, o->min, digits, o->max);
    return buf;
}

/* Check one number against o's range; 0 or -1 with the problem in why. */
static int s_range_ok(const struct rt_opt *o, double v, char *why, size_t cap)
{
    if (isnan(v) && o->type != RT_OPT_FLOAT && o->type != RT_OPT_LIST_FLOAT)
        return 0;
    if (o->min < o->max && !(v >= o->min && v <= o->max)) {
        char range[96];
        snprintf(why, cap, "must be %s", s_range_text(o, 17, range, sizeof range));
        return -1;
    }
    return 0;
}

/* Check text as a value of o (type, range, choices); 0 or -1 with the problem in why. */
static int s_check(const struct rt_opt *o, const char *text, char *why, size_t cap)
{
    long l = 0;
    double d = 0;
    int b;
    switch (o->type) {
    case RT_OPT_INT:
        if (s_parse_long(text, &l)) {
            snprintf(why, cap, "expected an integer");
            return -1;
        }
        return s_range_ok(o, (double)l, why, cap);
    case RT_OPT_FLOAT:
        if (s_parse_double(text, &d) || isnan(d)) {
            snprintf(why, cap, "expected a number");
            return -1;
        }
        return s_range_ok(o, d, why, cap);
    case RT_OPT_BOOL:
    case RT_OPT_SWITCH:
        if (s_parse_bool(text, &b)) {
            snprintf(why, cap, "expected true or false");
            return -1;
        }
        return 0;
    case RT_OPT_STR:
        if (o->choices && !s_choice_ok(o->choices, text)) {
            snprintf(why, cap, "expected one of %s", o->choices);
            return -1;
        }
        return 0;
    case RT_OPT_LIST_INT:
    case RT_OPT_LIST_FLOAT:
    case RT_OPT_LIST_STR:
        break;
    }
    /* lists: each comma-separated item */
    char item[S_MAX_NAME * 4];
    int count = 0;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        if (len >= sizeof item || ++count > S_MAX_LIST) {
            snprintf(why, cap, "list too long");
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (o->type == RT_OPT_LIST_INT && s_parse_long(item, &l)) {
            snprintf(why, cap, "item '%.64s': expected an integer", item);
            return -1;
        }
        if (o->type == RT_OPT_LIST_FLOAT && (s_parse_double(item, &d) || isnan(d))) {
            snprintf(why, cap, "item '%.64s': expected a number", item);
            return -1;
        }
        if (o->type != RT_OPT_LIST_STR &&
            s_range_ok(o, o->type == RT_OPT_LIST_INT ? (double)l : d, why, cap))
            return -1;
        if (o->type == RT_OPT_LIST_STR && !len) {
            snprintf(why, cap, "empty item");
            return -1;
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

/* Store checked text into o's field (text outlives the struct). */
static void s_store(const struct rt_opt *o, void *opts, const char *text)
{
    void *f = s_field(o, opts);
    long l = 0;
    double d = 0;
    int b = 0;
    switch (o->type) {
    case RT_OPT_INT:
        if (text)
            s_parse_long(text, &l);
        *(long *)f = l;
        break;
    case RT_OPT_FLOAT:
        d = NAN; /* unset */
        if (text)
            s_parse_double(text, &d);
        *(double *)f = d;
        break;
    case RT_OPT_BOOL:
    case RT_OPT_SWITCH:
        if (text)
            s_parse_bool(text, &b);
        *(int *)f = b;
        break;
    default:
        *(const char **)f = text && *text ? text : NULL;
        break;
    }
}

int rt_opt_set(const struct rt_opt *o, void *opts, const char *text, const char *origin)
{
    char why[256];
    if (text && s_check(o, text, why, sizeof why))
        return rt_err_set(RT_ERR_ARG, "%s: %s, got '%s'", origin, why, text);
    s_store(o, opts, text);
    return RT_OK;
}

const char *rt_opt_value_text(const struct rt_opt *o, const void *opts, char *buf, size_t cap)
{
    const void *f = (const char *)opts + o->off;
    switch (o->type) {
    case RT_OPT_INT:
        snprintf(buf, cap, "%ld", *(const long *)f);
        break;
    case RT_OPT_FLOAT:
        if (isnan(*(const double *)f))
            snprintf(buf, cap, "%s", ""); /* unset */
        else
            snprintf(buf, cap, "%.17g", *(const double *)f);
        break;
    case RT_OPT_BOOL:
    case RT_OPT_SWITCH:
        snprintf(buf, cap, "%s", *(const int *)f ? "true" : "false");
        break;
    default:
        snprintf(buf, cap, "%s", *(const char *const *)f ? *(const char *const *)f : "");
        break;
    }
    return buf;
}

const struct rt_opt *rt_opt_find(const struct rt_opt *t, int n, const char *key, const char *flag)
{
    for (int i = 0; i < n; i++) {
        if (key && t[i].key && !strcmp(t[i].key, key))
            return &t[i];
        if (!key && flag && t[i].flag && !strcmp(t[i].flag, flag))
            return &t[i];
    }
    return NULL;
}

/* Put text (flag syntax) for keyed option o into cfg, from origin. */
static int s_cfg_put(const struct rt_opt *o, rt_config_t *cfg, const char *text, const char *origin)
{
    if (o->type == RT_OPT_STR)
        return rt_config_set_string(cfg, o->key, text, origin);
    if (s_is_list(o->type)) {
        /* "30,60" as the YAML list [30,60]; items of a string list quoted */
        size_t cap = 3 * strlen(text) + 8;
        char *y = malloc(cap);
        if (!y)
            return rt_err_set(RT_ERR_NOMEM, "%s: out of memory", origin);
        size_t k = 0;
        y[k++] = '[';
        for (const char *p = text; *p;) {
            size_t len = strcspn(p, ",");
            if (k > 1)
                y[k++] = ',';
            if (o->type == RT_OPT_LIST_STR)
                y[k++] = '"';
            for (size_t i = 0; i < len; i++) {
                if (o->type == RT_OPT_LIST_STR && (p[i] == '"' || p[i] == '\\'))
                    y[k++] = '\\';
                y[k++] = p[i];
            }
            if (o->type == RT_OPT_LIST_STR)
                y[k++] = '"';
            p += len + (p[len] == ',');
        }
        y[k++] = ']';
        y[k] = '\0';
        int rc = rt_config_set_yaml(cfg, o->key, y, origin);
        free(y);
        return rc;
    }
    char why[256];
    if (s_check(o, text, why, sizeof why))
        return rt_err_set(RT_ERR_ARG, "%s: %s, got '%s'", origin, why, text);
    if (o->type == RT_OPT_BOOL || o->type == RT_OPT_SWITCH) {
        int b = 0;
        s_parse_bool(text, &b);
        text = b ? "true" : "false";
    }
    return rt_config_set_yaml(cfg, o->key, text, origin);
}

/* The row for a command-line word "--flag" or "--flag=value" (*eq receives the value or NULL). */
static const struct rt_opt *s_flag_row(const struct rt_opt *t, int n, const char *arg,
                                       const char **eq)
{
    *eq = NULL;
    if (strncmp(arg, "--", 2))
        return NULL;
    char name[S_MAX_NAME];
    size_t len = strcspn(arg + 2, "=");
    if (len >= sizeof name)
        return NULL;
    memcpy(name, arg + 2, len);
    name[len] = '\0';
    if (arg[2 + len] == '=')
        *eq = arg + 3 + len;
    return rt_opt_find(t, n, NULL, name);
}

/* The command-line word argv[*i]: its row (NULL for --config, --set and unknown words) and its
 * value into *val ("=value", the next word, "true" for a bare switch; NULL when missing); *i
 * moves past a value word. Every walk of the command line steps through it, so all agree on
 * which words are values. */
static const struct rt_opt *s_arg(const struct rt_opt *t, int n, int argc, char **argv, int *i,
                                  const char **val)
{
    const char *eq = NULL;
    const struct rt_opt *o = NULL;
    if (strcmp(argv[*i], "--config") && strcmp(argv[*i], "--set"))
        o = s_flag_row(t, n, argv[*i], &eq);
    if (eq)
        *val = eq;
    else if (o && o->type == RT_OPT_SWITCH)
        *val = "true";
    else
        *val = *i + 1 < argc ? argv[++*i] : NULL;
    return o;
}

/* The configuration of the keyed rows: --config FILE, environment, --set and flags in order. */
static int s_build_config(const struct rt_opt *t, int n, int argc, char **argv, rt_config_t *cfg)
{
    const char *cmd = argc > 0 ? argv[0] : "eigenbatch";
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config"))
            continue;
        if (i + 1 >= argc)
            return rt_err_set(RT_ERR_ARG, "%s: --config needs a file", cmd);
        if (path)
            return rt_err_set(RT_ERR_ARG, "%s: --config given twice", cmd);
        path = argv[++i];
    }
    int rc = path ? rt_config_load(cfg, path) : 0;
    for (int i = 0; !rc && i < n; i++) {
        char env[S_MAX_NAME];
        const char *v =
            t[i].key && t[i].flag ? getenv(rt_opt_env_name(&t[i], env, sizeof env)) : NULL;
        if (v)
            rc = s_cfg_put(&t[i], cfg, v, env);
    }
    for (int i = 1; !rc && i < argc; i++) {
        const char *word = argv[i], *val;
        const struct rt_opt *o = s_arg(t, n, argc, argv, &i, &val);
        if (!strcmp(word, "--config"))
            continue;
        if (!strcmp(word, "--set")) {
            if (!val)
                return rt_err_set(RT_ERR_ARG, "%s: --set needs key=value", cmd);
            rc = rt_config_set(cfg, val);
            continue;
        }
        if (!o)
            return rt_err_set(RT_ERR_ARG, "%s: unknown option '%s' (see --help)", cmd, word);
        if (!val)
            return rt_err_set(RT_ERR_ARG, "%s: %s needs a value", cmd, word);
        if (o->key)
            rc = s_cfg_put(o, cfg, val, word);
    }
    return rc;
}

/* Validate cfg against the keyed rows' types and defaults. */
static int s_validate(const struct rt_opt *t, int n, rt_config_t *cfg)
{
    struct rt_config_key *schema = calloc(n > 0 ? (size_t)n : 1, sizeof *schema);
    if (!schema)
        return rt_err_set(RT_ERR_NOMEM, "options: out of memory");
    static const enum rt_config_type map[] = {
        [RT_OPT_INT] = RT_CFG_INT,           [RT_OPT_FLOAT] = RT_CFG_FLOAT,
        [RT_OPT_BOOL] = RT_CFG_BOOL,         [RT_OPT_STR] = RT_CFG_STR,
        [RT_OPT_LIST_INT] = RT_CFG_LIST_INT, [RT_OPT_LIST_FLOAT] = RT_CFG_LIST_FLOAT,
        [RT_OPT_LIST_STR] = RT_CFG_LIST_STR, [RT_OPT_SWITCH] = RT_CFG_BOOL};
    int k = 0;
    for (int i = 0; i < n; i++)
        if (t[i].key)
            schema[k++] = (struct rt_config_key){t[i].key, map[t[i].type], t[i].def, t[i].help};
    int rc = rt_config_validate(cfg, schema, k);
    free(schema);
    return rc;
}

/* Read the keyed row o from the validated cfg into the struct. */
static int s_from_config(const struct rt_opt *o, void *opts, const rt_config_t *cfg)
{
    const char *v = NULL;
    int rc = rt_config_get_list_text(cfg, o->key, &v);
    if (rc)
        return rc;
    char why[256];
    if (v && s_check(o, v, why, sizeof why))
        return rt_config_error(cfg, o->key, "%s, got '%s'", why, v);
    s_store(o, opts, v);
    return RT_OK;
}

/* Read the per-process row o: default, environment, then flags. */
static int s_local(const struct rt_opt *o, const struct rt_opt *t, int n, void *opts, int argc,
                   char **argv)
{
    int rc = rt_opt_set(o, opts, o->def, "default");
    char env[S_MAX_NAME];
    const char *v = o->flag ? getenv(rt_opt_env_name(o, env, sizeof env)) : NULL;
    if (!rc && v)
        rc = rt_opt_set(o, opts, v, env);
    for (int i = 1; !rc && i < argc; i++) {
        const char *flag = argv[i], *val;
        if (s_arg(t, n, argc, argv, &i, &val) == o)
            rc = rt_opt_set(o, opts, val, flag);
    }
    return rc;
}

int rt_opt_given(const struct rt_opt *t, int n, const struct rt_opt *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *word = argv[i], *val;
        if (s_arg(t, n, argc, argv, &i, &val) == o)
            return 1;
        size_t len = o->key ? strlen(o->key) : 0;
        if (len && !strcmp(word, "--set") && val && !strncmp(val, o->key, len) && val[len] == '=')
            return 1;
    }
    return 0;
}

int rt_opt_parse(const struct rt_opt *t, int n, void *opts, int argc, char **argv,
                 rt_config_t **cfg_out)
{
    *cfg_out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--set")) {
            i++;
            continue;
        }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return RT_OPT_HELP;
    }
    rt_config_t *cfg = rt_config_new();
    if (!cfg)
        return rt_err_set(RT_ERR_NOMEM, "options: out of memory");
    int rc = s_build_config(t, n, argc, argv, cfg);
    if (!rc)
        rc = s_validate(t, n, cfg);
    for (int i = 0; !rc && i < n; i++)
        rc = t[i].key ? s_from_config(&t[i], opts, cfg) : s_local(&t[i], t, n, opts, argc, argv);
    if (rc) {
        rt_config_destroy(&cfg);
        return rc;
    }
    *cfg_out = cfg;
    return RT_OK;
}

void rt_opt_help(const struct rt_opt *t, int n, FILE *f)
{
    for (int i = 0; i < n; i++) {
        const struct rt_opt *o = &t[i];
        char env[S_MAX_NAME], range[128] = "", words[96];
        if (o->min < o->max)
            snprintf(range, sizeof range, "; %s", s_range_text(o, 6, words, sizeof words));
        else if (o->choices)
            snprintf(range, sizeof range, "; %s", o->choices);
        const char *type = s_type_word(o->type);
        const char *def = o->def ? o->def : o->type == RT_OPT_SWITCH ? "false" : "unset";
        fprintf(f, "  --%s%s%s  (%s%s%s; default: %s)\n      %s%s\n", o->flag, *type ? " " : "",
                type, o->key ? o->key : "", o->key ? ", " : "", rt_opt_env_name(o, env, sizeof env),
                def, o->help ? o->help : "", range);
    }
}

int rt_opt_long(const char *cmd, const char *opt, const char *val, long *out)
{
    if (!val || s_parse_long(val, out)) {
        fprintf(stderr, "eigenbatch %s: invalid value '%s' for %s\n", cmd, val ? val : "", opt);
        return -1;
    }
    return 0;
}

int rt_opt_double(const char *cmd, const char *opt, const char *val, double *out)
{
    if (!val || s_parse_double(val, out)) {
        fprintf(stderr, "eigenbatch %s: invalid value '%s' for %s\n", cmd, val ? val : "", opt);
        return -1;
    }
    return 0;
}
