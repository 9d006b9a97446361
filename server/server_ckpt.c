/*
 * server_ckpt: the parameter servers' checkpoint files (see server_ckpt.h).
 */
#include "server_ckpt.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rt_ckpt.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_safetensors.h"

#define S_NAME "ckpt"
#define S_COORD_MAX (1u << 20) /* largest coord.json read */
#define S_SCHED_MAX (1u << 20) /* largest schedule.bin read */
#define S_NUM 32               /* bytes of a number as metadata text */

void server_ckpt_shard_name(char *buf, size_t cap, int shard)
{
    snprintf(buf, cap, "shard-%d.safetensors", shard);
}

/* dir/name into buf; RT_ERR_ARG when too long. */
static int s_path(char *buf, size_t cap, const char *dir, const char *name)
{
    if (snprintf(buf, cap, "%s/%s", dir, name) >= (int)cap)
        return rt_err_set(RT_ERR_ARG, "%s/%s: path too long", dir, name);
    return RT_OK;
}

/* ---- shard files ------------------------------------------------------------------------ */

/* The metadata keys of a shard file, in the order of struct server_ckpt_shard's fields. */
static const char *const s_shard_keys[] = {
    "shard",       "n_shards",      "n_params",     "n_buffers", "param_offset",
    "param_count", "buffer_offset", "buffer_count", "version",   "epoch",
};
#define S_NKEYS (sizeof s_shard_keys / sizeof s_shard_keys[0])

static void s_shard_values(const struct server_ckpt_shard *h, uint64_t *v)
{
    v[0] = (uint64_t)h->shard;
    v[1] = (uint64_t)h->n_shards;
    v[2] = h->n_params;
    v[3] = h->n_buffers;
    v[4] = h->p_off;
    v[5] = h->p_cnt;
    v[6] = h->b_off;
    v[7] = h->b_cnt;
    v[8] = h->version;
    v[9] = h->epoch;
}

int server_ckpt_shard_write(const char *dir, const struct server_ckpt_shard *h, const float *w,
                            const float *mom, const float *bw)
{
    char name[SERVER_CKPT_NAME_MAX], path[RT_CKPT_PATH_MAX];
    server_ckpt_shard_name(name, sizeof name, h->shard);
    int rc = s_path(path, sizeof path, dir, name);
    if (rc)
        return rc;
    uint64_t v[S_NKEYS];
    s_shard_values(h, v);
    char num[S_NKEYS][S_NUM], fmt[S_NUM];
    const char *meta[2 * (S_NKEYS + 1) + 1];
    int k = 0;
    snprintf(fmt, sizeof fmt, "%d", SERVER_CKPT_FORMAT);
    meta[k++] = "format";
    meta[k++] = fmt;
    for (size_t i = 0; i < S_NKEYS; i++) {
        snprintf(num[i], sizeof num[i], "%" PRIu64, v[i]);
        meta[k++] = s_shard_keys[i];
        meta[k++] = num[i];
    }
    meta[k] = NULL;
    struct rt_st_tensor t[3];
    memset(t, 0, sizeof t);
    int n = 0;
    t[n].name = "params";
    t[n].ndim = 1;
    t[n].shape[0] = (int64_t)h->p_cnt;
    t[n++].data = w;
    t[n].name = "momentum";
    t[n].ndim = 1;
    t[n].shape[0] = (int64_t)h->p_cnt;
    t[n++].data = mom;
    if (h->b_cnt) {
        t[n].name = "buffers";
        t[n].ndim = 1;
        t[n].shape[0] = (int64_t)h->b_cnt;
        t[n++].data = bw;
    }
    return rt_st_write(path, t, n, meta);
}

/* Unsigned metadata value `key` of a shard file. */
static int s_meta_u64(const rt_st_t *st, const char *key, uint64_t *out)
{
    const char *v = rt_st_meta(st, key);
    char *end = NULL;
    if (!v || !*v || *v == '-')
        return rt_err_set(RT_ERR_FORMAT, "%s: metadata field '%s' missing", rt_st_path(st), key);
    unsigned long long x = strtoull(v, &end, 10);
    if (*end)
        return rt_err_set(RT_ERR_FORMAT, "%s: metadata field '%s' is '%s', not a count",
                          rt_st_path(st), key, v);
    *out = (uint64_t)x;
    return RT_OK;
}

int server_ckpt_shard_read(const char *dir, struct server_ckpt_shard *h, float *w, float *mom,
                           float *bw)
{
    char name[SERVER_CKPT_NAME_MAX], path[RT_CKPT_PATH_MAX];
    server_ckpt_shard_name(name, sizeof name, h->shard);
    int rc = s_path(path, sizeof path, dir, name);
    if (rc)
        return rc;
    rt_st_t *st = NULL;
    if ((rc = rt_st_open(path, &st)))
        return rc;
    uint64_t fmt, want[S_NKEYS], got[S_NKEYS];
    if ((rc = s_meta_u64(st, "format", &fmt)))
        goto out;
    if (fmt != SERVER_CKPT_FORMAT) {
        rc = rt_err_set(RT_ERR_VERSION, "%s: format %" PRIu64 ", this build reads %d", path, fmt,
                        SERVER_CKPT_FORMAT);
        goto out;
    }
    s_shard_values(h, want);
    for (size_t i = 0; i < S_NKEYS; i++) {
        if ((rc = s_meta_u64(st, s_shard_keys[i], &got[i])))
            goto out;
        if (i < 8 && got[i] != want[i]) {
            rc = rt_err_set(RT_ERR_SHAPE, "%s: %s is %" PRIu64 ", this run has %" PRIu64, path,
                            s_shard_keys[i], got[i], want[i]);
            goto out;
        }
    }
    int64_t pshape[1] = {(int64_t)h->p_cnt}, bshape[1] = {(int64_t)h->b_cnt};
    if ((rc = rt_st_read(st, "params", RT_ST_F32, 1, pshape, 0, w)) ||
        (rc = rt_st_read(st, "momentum", RT_ST_F32, 1, pshape, 0, mom)))
        goto out;
    if (h->b_cnt && (rc = rt_st_read(st, "buffers", RT_ST_F32, 1, bshape, 0, bw)))
        goto out;
    h->version = got[8];
    h->epoch = got[9];
out:
    rt_st_close(&st);
    return rc;
}

/* ---- the coordinator's files ------------------------------------------------------------ */

/* A double as JSON: null when not finite (JSON has no NaN); 17 digits round-trip exactly. */
static json_t *s_real(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

int server_ckpt_coord_write(const char *dir, const struct server_ckpt_coord *c)
{
    char path[RT_CKPT_PATH_MAX];
    size_t cap = server_sched_state_encoded_size(&c->sched), len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return rt_err_set(RT_ERR_NOMEM, "%s: schedule state", dir);
    int rc = server_sched_state_encode(&c->sched, buf, cap, &len);
    if (!rc)
        rc = s_path(path, sizeof path, dir, SERVER_CKPT_SCHED);
    if (!rc)
        rc = rt_ckpt_write_file(path, buf, len);
    free(buf);
    if (rc)
        return rc;
    json_t *j = json_pack("{s:i, s:I, s:I, s:i, s:I, s:I, s:s, s:i, s:o, s:o, s:I}", "format",
                          SERVER_CKPT_FORMAT, "epoch", (json_int_t)c->epoch, "step",
                          (json_int_t)c->step, "n_shards", c->n_shards, "n_params",
                          (json_int_t)c->n_params, "n_buffers", (json_int_t)c->n_buffers, "model",
                          c->model, "batch", (int)c->batch, "lr", s_real(c->lr), "gamma",
                          s_real(c->gamma), "sched_version", (json_int_t)c->sched_version);
    if (j && c->has_abs) {
        json_t *a =
            json_pack("{s:I, s:o, s:o, s:o, s:b, s:i, s:b, s:i, s:i}", "batch",
                      (json_int_t)c->abs.batch, "lr_base", s_real(c->abs.lr_base), "gamma_base",
                      s_real(c->abs.gamma_base), "lambda_ref", s_real(c->abs.lambda_ref), "has_ref",
                      c->abs.has_ref, "duration", c->abs.duration, "measuring", c->abs.measuring,
                      "increases", c->abs.increases, "last_epoch", c->abs.last_epoch);
        if (!a || json_object_set_new(j, "abs", a)) {
            json_decref(j);
            j = NULL;
        }
    }
    char *txt = j ? json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(j);
    if (!txt)
        return rt_err_set(RT_ERR_NOMEM, "%s: %s", dir, SERVER_CKPT_COORD);
    rc = s_path(path, sizeof path, dir, SERVER_CKPT_COORD);
    if (!rc)
        rc = rt_ckpt_write_file(path, txt, strlen(txt));
    free(txt);
    return rc;
}

/* Field readers of coord.json: the error names the file and the field. */
static int s_get_int(const json_t *o, const char *path, const char *key, int64_t lo, int64_t hi,
                     int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return rt_err_set(RT_ERR_FORMAT, "%s: field '%s' missing or out of range", path, key);
    *out = (int64_t)json_integer_value(v);
    return RT_OK;
}

static int s_get_real(const json_t *o, const char *path, const char *key, double *out)
{
    json_t *v = json_object_get(o, key);
    if (json_is_null(v)) {
        *out = NAN;
        return RT_OK;
    }
    if (!json_is_number(v))
        return rt_err_set(RT_ERR_FORMAT, "%s: field '%s' missing or not a number", path, key);
    *out = json_number_value(v);
    return RT_OK;
}

static int s_get_bool(const json_t *o, const char *path, const char *key, int32_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        return rt_err_set(RT_ERR_FORMAT, "%s: field '%s' missing or not true/false", path, key);
    *out = json_is_true(v);
    return RT_OK;
}

static int s_read_abs(const json_t *a, const char *path, struct rt_wire_abs *abs)
{
    int64_t b = 0, dur = 0, inc = 0, last = 0;
    int rc;
    if ((rc = s_get_int(a, path, "batch", 1, INT64_MAX, &b)) ||
        (rc = s_get_real(a, path, "lr_base", &abs->lr_base)) ||
        (rc = s_get_real(a, path, "gamma_base", &abs->gamma_base)) ||
        (rc = s_get_real(a, path, "lambda_ref", &abs->lambda_ref)) ||
        (rc = s_get_bool(a, path, "has_ref", &abs->has_ref)) ||
        (rc = s_get_int(a, path, "duration", 0, INT32_MAX, &dur)) ||
        (rc = s_get_bool(a, path, "measuring", &abs->measuring)) ||
        (rc = s_get_int(a, path, "increases", 0, INT32_MAX, &inc)) ||
        (rc = s_get_int(a, path, "last_epoch", -1, INT32_MAX, &last)))
        return rc;
    abs->batch = b;
    abs->duration = (int32_t)dur;
    abs->increases = (int32_t)inc;
    abs->last_epoch = (int32_t)last;
    return RT_OK;
}

int server_ckpt_coord_read(const char *dir, struct server_ckpt_coord *c)
{
    memset(c, 0, sizeof *c);
    char path[RT_CKPT_PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = s_path(path, sizeof path, dir, SERVER_CKPT_SCHED);
    if (!rc)
        rc = rt_ckpt_read_file(path, S_SCHED_MAX, &buf, &len);
    if (!rc && (rc = server_sched_state_decode(buf, len, &c->sched)))
        rc = rt_err_set(rc, "%s: %s", path, rt_err_msg());
    free(buf);
    buf = NULL;
    if (rc)
        return rc;
    if ((rc = s_path(path, sizeof path, dir, SERVER_CKPT_COORD)) ||
        (rc = rt_ckpt_read_file(path, S_COORD_MAX, &buf, &len)))
        return rc;
    json_error_t je;
    json_t *j = json_loadb((const char *)buf, len, 0, &je);
    free(buf);
    if (!json_is_object(j)) {
        json_decref(j);
        return rt_err_set(RT_ERR_FORMAT, "%s: line %d: %s", path, je.line,
                          j ? "not a JSON object" : je.text);
    }
    int64_t fmt = 0, epoch = 0, step = 0, ns = 0, np = 0, nb = 0, batch = 0, sv = 0;
    double lr = 0, gamma = 0;
    const char *model = json_string_value(json_object_get(j, "model"));
    if ((rc = s_get_int(j, path, "format", 0, INT32_MAX, &fmt)))
        goto out;
    if (fmt != SERVER_CKPT_FORMAT) {
        rc = rt_err_set(RT_ERR_VERSION, "%s: format %lld, this build reads %d", path,
                        (long long)fmt, SERVER_CKPT_FORMAT);
        goto out;
    }
    if ((rc = s_get_int(j, path, "epoch", 0, INT32_MAX, &epoch)) ||
        (rc = s_get_int(j, path, "step", 0, INT64_MAX, &step)) ||
        (rc = s_get_int(j, path, "n_shards", 1, INT32_MAX, &ns)) ||
        (rc = s_get_int(j, path, "n_params", 1, INT64_MAX, &np)) ||
        (rc = s_get_int(j, path, "n_buffers", 0, INT64_MAX, &nb)) ||
        (rc = s_get_int(j, path, "batch", 0, UINT32_MAX, &batch)) ||
        (rc = s_get_int(j, path, "sched_version", 0, INT64_MAX, &sv)) ||
        (rc = s_get_real(j, path, "lr", &lr)) || (rc = s_get_real(j, path, "gamma", &gamma)))
        goto out;
    if (!model) {
        rc = rt_err_set(RT_ERR_FORMAT, "%s: field 'model' missing", path);
        goto out;
    }
    json_t *a = json_object_get(j, "abs");
    if (a && !json_is_null(a)) {
        if ((rc = s_read_abs(a, path, &c->abs)))
            goto out;
        c->has_abs = 1;
    }
    c->epoch = (uint64_t)epoch;
    c->step = (uint64_t)step;
    c->n_shards = (int)ns;
    c->n_params = (uint64_t)np;
    c->n_buffers = (uint64_t)nb;
    snprintf(c->model, sizeof c->model, "%s", model);
    c->batch = (uint32_t)batch;
    c->lr = (float)lr;
    c->gamma = (float)gamma;
    c->sched_version = (uint64_t)sv;
out:
    json_decref(j);
    return rc;
}

/* ---- the manifest ----------------------------------------------------------------------- */

int server_ckpt_finish(const char *dir, const struct server_ckpt_coord *c)
{
    int n = c->n_shards, rc = RT_OK;
    if (n < 1 || n > RT_CKPT_MAX_FILES - 2)
        return rt_err_set(RT_ERR_ARG, "%s: %d shards", dir, n);
    char(*names)[SERVER_CKPT_NAME_MAX] = calloc((size_t)n + 2, sizeof *names);
    const char **files = calloc((size_t)n + 2, sizeof *files);
    json_t *meta = NULL;
    if (!names || !files) {
        rc = rt_err_set(RT_ERR_NOMEM, "%s: manifest", dir);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        char path[RT_CKPT_PATH_MAX];
        server_ckpt_shard_name(names[i], sizeof names[i], i);
        files[i] = names[i];
        if ((rc = s_path(path, sizeof path, dir, names[i])))
            goto out;
        /* present means whole (written under a temporary name, then renamed); it must also be
         * this checkpoint's, not a leftover of an earlier attempt */
        rt_st_t *st = NULL;
        uint64_t version = UINT64_MAX;
        if (rt_st_open(path, &st) || s_meta_u64(st, "version", &version) || version != c->step) {
            rt_st_close(&st);
            rc = rt_err_set(RT_ERR_STATE, "%s: not written yet for step %" PRIu64, path, c->step);
            goto out;
        }
        rt_st_close(&st);
    }
    files[n] = SERVER_CKPT_COORD;
    files[n + 1] = SERVER_CKPT_SCHED;
    meta =
        json_pack("{s:I, s:I, s:i, s:I, s:I, s:s}", "epoch", (json_int_t)c->epoch, "step",
                  (json_int_t)c->step, "n_shards", c->n_shards, "n_params", (json_int_t)c->n_params,
                  "n_buffers", (json_int_t)c->n_buffers, "model", c->model);
    if (!meta) {
        rc = rt_err_set(RT_ERR_NOMEM, "%s: manifest", dir);
        goto out;
    }
    rc = rt_ckpt_manifest_write(dir, files, n + 2, meta);
out:
    json_decref(meta);
    free(names);
    free(files);
    return rc;
}

int server_ckpt_check(const char *dir, const char *file, int n_shards, uint64_t n_params,
                      uint64_t n_buffers, const char *model, uint64_t *epoch, uint64_t *step)
{
    json_t *m = NULL;
    int rc = rt_ckpt_verify(dir, file, &m);
    if (rc)
        return rc;
    uint64_t ns = 0, np = 0, nb = 0, e = 0, s = 0;
    if ((rc = rt_ckpt_manifest_u64(m, dir, "n_shards", &ns)) ||
        (rc = rt_ckpt_manifest_u64(m, dir, "n_params", &np)) ||
        (rc = rt_ckpt_manifest_u64(m, dir, "n_buffers", &nb)) ||
        (rc = rt_ckpt_manifest_u64(m, dir, "epoch", &e)) ||
        (rc = rt_ckpt_manifest_u64(m, dir, "step", &s)))
        goto out;
    const char *mm = json_string_value(json_object_get(m, "model"));
    if (ns != (uint64_t)n_shards)
        rc = rt_err_set(RT_ERR_CONFIG, "%s/%s: n_shards is %" PRIu64 ", this run has %d shards",
                        dir, RT_CKPT_MANIFEST, ns, n_shards);
    else if (np != n_params)
        rc = rt_err_set(RT_ERR_SHAPE,
                        "%s/%s: n_params is %" PRIu64 ", this run's model has %" PRIu64, dir,
                        RT_CKPT_MANIFEST, np, n_params);
    else if (nb != n_buffers)
        rc = rt_err_set(RT_ERR_SHAPE,
                        "%s/%s: n_buffers is %" PRIu64 ", this run's model has %" PRIu64, dir,
                        RT_CKPT_MANIFEST, nb, n_buffers);
    else if (model && *model && mm && *mm && strcmp(model, mm))
        rc = rt_err_set(RT_ERR_CONFIG, "%s/%s: model is '%s', this run trains '%s'", dir,
                        RT_CKPT_MANIFEST, mm, model);
    if (!rc && epoch)
        *epoch = e;
    if (!rc && step)
        *step = s;
out:
    json_decref(m);
    return rc;
}
