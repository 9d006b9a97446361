/*
 * rt_metrics: JSON-lines event writer (jansson) and the interval progress line with ETA.
 */
#include "rt_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_prom.h"
#include "rt_tboard.h"

/* Width of the live bar in characters. */
#define PROGRESS_BAR 24
/* Longest progress line. */
#define PROGRESS_LINE 512
/* Live lines are redrawn at most this often (seconds), whatever the interval. */
#define PROGRESS_LIVE_INTERVAL 0.25

/* Whether metrics files opened from now on get a TensorBoard event file beside them. */
static atomic_int s_tensorboard;

struct rt_metrics {
    rt_tboard_t *tb;      /* the TensorBoard mirror of the numeric fields, or NULL */
    int fd;               /* the open metrics file (O_APPEND) */
    char *path;           /* its path, for messages */
    pthread_mutex_t lock; /* held from begin to end */
    json_t *cur;          /* event being built, or NULL */
    int failed;           /* a field of cur could not be added */
};

int rt_metrics_open(const char *path, int append, rt_metrics_t **out)
{
    *out = NULL;
    rt_metrics_t *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return rt_err_set(RT_ERR_NOMEM, "%s: out of memory", path);
    }
    /* always O_APPEND, truncated or not: another process (the coordinator's eviction events)
     * may append lines to the same file, and no writer must overwrite another's */
    m->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC), 0644);
    if (m->fd < 0) {
        int rc = rt_err_set(RT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        free(m->path);
        free(m);
        return rc;
    }
    pthread_mutex_init(&m->lock, NULL);
    if (atomic_load(&s_tensorboard)) {
        /* beside the metrics file: TensorBoard reads every event file of the directory */
        char dir[4096];
        const char *slash = strrchr(path, '/');
        size_t n = slash ? (size_t)(slash - path) : 0;
        snprintf(dir, sizeof dir, "%.*s", (int)(n ? n : 1), n ? path : ".");
        if (rt_tboard_open(dir, &m->tb))
            RT_WARN("metrics", "no TensorBoard events: %s", rt_err_msg());
    }
    *out = m;
    return 0;
}

void rt_metrics_set_tensorboard(int on)
{
    atomic_store(&s_tensorboard, on ? 1 : 0);
}

/* The event's numbers as TensorBoard scalars "<event>/<field>" at its step (else its epoch). */
static void s_mirror(rt_metrics_t *m, json_t *obj)
{
    const char *ev = json_string_value(json_object_get(obj, "event"));
    json_t *st = json_object_get(obj, "step");
    if (!json_is_integer(st))
        st = json_object_get(obj, "epoch");
    int64_t step = json_is_integer(st) ? (int64_t)json_integer_value(st) : 0;
    double wall = json_number_value(json_object_get(obj, "time"));
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (!json_is_number(v) || !strcmp(key, "time") || !strcmp(key, "step") ||
            !strcmp(key, "epoch"))
            continue;
        char tag[256];
        snprintf(tag, sizeof tag, "%s/%s", ev ? ev : "event", key);
        if (rt_tboard_scalar(m->tb, tag, step, wall, (float)json_number_value(v))) {
            RT_WARN("metrics", "TensorBoard events stop: %s", rt_err_msg());
            rt_tboard_close(&m->tb);
            return;
        }
    }
    if (rt_tboard_flush(m->tb)) {
        RT_WARN("metrics", "TensorBoard events stop: %s", rt_err_msg());
        rt_tboard_close(&m->tb);
    }
}

void rt_metrics_close(rt_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_metrics_t *m = *self_p;
    rt_tboard_close(&m->tb);
    close(m->fd);
    json_decref(m->cur);
    pthread_mutex_destroy(&m->lock);
    free(m->path);
    free(m);
    *self_p = NULL;
}

/* Wall-clock time in Unix seconds. */
static double s_unix_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Add a field to the event being built; a NULL value (allocation failed) marks it failed. */
static void s_field(rt_metrics_t *m, const char *key, json_t *value)
{
    RT_ASSERT(m->cur);
    if (!value || json_object_set_new(m->cur, key, value))
        m->failed = 1;
}

void rt_metrics_begin(rt_metrics_t *m, const char *event)
{
    pthread_mutex_lock(&m->lock);
    RT_ASSERT(!m->cur);
    m->failed = 0;
    m->cur = json_object();
    if (!m->cur) {
        m->cur = json_null(); /* a placeholder: end reports the failure */
        m->failed = 1;
        return;
    }
    s_field(m, "event", json_string(event));
    s_field(m, "time", json_real(round(s_unix_time() * 1000.0) / 1000.0));
}

void rt_metrics_int(rt_metrics_t *m, const char *key, long long value)
{
    if (json_is_object(m->cur))
        s_field(m, key, json_integer(value));
}

void rt_metrics_num(rt_metrics_t *m, const char *key, double value)
{
    if (json_is_object(m->cur))
        s_field(m, key, isfinite(value) ? json_real(value) : json_null());
}

void rt_metrics_str(rt_metrics_t *m, const char *key, const char *value)
{
    if (json_is_object(m->cur))
        s_field(m, key, value ? json_string(value) : json_null());
}

void rt_metrics_bool(rt_metrics_t *m, const char *key, int value)
{
    if (json_is_object(m->cur))
        s_field(m, key, json_boolean(value));
}

/* Dump obj as one line and write it with one write() call; lock held by the caller. Several
 * processes append to one metrics.jsonl (the lead worker's epoch and step events, shard 0's evict
 * and rejoin events, launch's rollback events): with O_APPEND, the kernel places each write() of a
 * regular file whole at the end, so lines never interleave (stdio could split a long line into
 * several writes). 13 significant digits keep "time" (Unix seconds) to the millisecond. */
static int s_write_line(rt_metrics_t *m, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(13));
    size_t n = text ? strlen(text) : 0;
    char *line = text ? realloc(text, n + 2) : NULL;
    if (!line) {
        free(text);
        return rt_err_set(RT_ERR_NOMEM, "%s: cannot serialise an event", m->path);
    }
    line[n++] = '\n';
    line[n] = '\0';
    size_t done = 0;
    while (done < n) {
        /* a short write (a full disk) ends the line with the rest: better than losing it */
        ssize_t w = write(m->fd, line + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    free(line);
    if (done < n)
        return rt_err_set(RT_ERR_IO, "%s: write failed: %s", m->path, strerror(errno));
    if (m->tb)
        s_mirror(m, obj);
    rt_prom_event(obj); /* the Prometheus endpoint's copy (when one is served) */
    return 0;
}

int rt_metrics_end(rt_metrics_t *m)
{
    RT_ASSERT(m->cur);
    int rc = m->failed ? rt_err_set(RT_ERR_NOMEM, "%s: cannot build an event", m->path)
                       : s_write_line(m, m->cur);
    json_decref(m->cur);
    m->cur = NULL;
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int rt_metrics_write(rt_metrics_t *m, json_t *obj)
{
    if (!json_is_object(obj))
        return rt_err_set(RT_ERR_ARG, "%s: an event must be a JSON object", m->path);
    pthread_mutex_lock(&m->lock);
    int rc = 0;
    if (!json_object_get(obj, "time")) {
        json_t *copy = json_copy(obj);
        if (!copy || json_object_set_new(copy, "time", json_real(s_unix_time())))
            rc = rt_err_set(RT_ERR_NOMEM, "%s: cannot build an event", m->path);
        else
            rc = s_write_line(m, copy);
        json_decref(copy);
    } else {
        rc = s_write_line(m, obj);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* ---- progress ---------------------------------------------------------------------------- */

struct rt_progress {
    char *label;          /* what is progressing ("train", "eval") */
    long long total;      /* units of work in all */
    double interval;      /* seconds between lines */
    FILE *out;            /* where lines go */
    int live;             /* redraw one line with a bar (terminal) */
    int live_drawn;       /* a live line is on screen (needs a newline before other output) */
    double start;         /* rt_progress_now() at creation */
    double last;          /* time of the last printed line */
    double first_t;       /* time of the first update (ETA excludes the start-up before it) */
    long long first_done; /* units done at the first update, -1 before it */
};

double rt_progress_now(void)
{
    return rt_clock_now();
}

const char *rt_progress_fmt_duration(double s, char *buf, size_t len)
{
    if (!isfinite(s) || s < 0 || s > 1e9) {
        snprintf(buf, len, "?");
        return buf;
    }
    long long t = llround(s);
    if (t < 60)
        snprintf(buf, len, "%llds", t);
    else if (t < 3600)
        snprintf(buf, len, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(buf, len, "%lldh%02lldm", t / 3600, (t % 3600) / 60);
    else
        snprintf(buf, len, "%lldd%02lldh", t / 86400, (t % 86400) / 3600);
    return buf;
}

rt_progress_t *rt_progress_new(const char *label, long long total, double interval_s, FILE *out)
{
    rt_progress_t *p = calloc(1, sizeof *p);
    if (!p || !(p->label = strdup(label ? label : ""))) {
        free(p);
        return NULL;
    }
    p->total = total;
    p->interval = interval_s;
    p->out = out ? out : stderr;
    p->live = isatty(fileno(p->out));
    p->start = p->last = rt_progress_now();
    p->first_done = -1;
    return p;
}

void rt_progress_destroy(rt_progress_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_progress_t *p = *self_p;
    if (p->live_drawn)
        fputc('\n', p->out);
    free(p->label);
    free(p);
    *self_p = NULL;
}

void rt_progress_set_live(rt_progress_t *p, int live)
{
    p->live = live;
}

/* Seconds left, from the rate since the first update (or since the start when that is all). */
static double s_eta(const rt_progress_t *p, long long done, double now)
{
    if (done >= p->total)
        return 0;
    double rate = -1;
    if (p->first_done >= 0 && done > p->first_done && now > p->first_t)
        rate = (double)(done - p->first_done) / (now - p->first_t);
    else if (done > 0 && now > p->start)
        rate = (double)done / (now - p->start);
    return rate > 0 ? (double)(p->total - done) / rate : -1;
}

static void s_print(rt_progress_t *p, long long done, double now, const char *extra, int final)
{
    char line[PROGRESS_LINE], el[32], eta[32];
    double frac = p->total > 0 ? (double)done / (double)p->total : 0;
    if (frac > 1)
        frac = 1;
    rt_progress_fmt_duration(now - p->start, el, sizeof el);
    size_t k = 0;
    if (p->live) {
        char bar[PROGRESS_BAR + 1];
        int fill = (int)(frac * PROGRESS_BAR);
        for (int i = 0; i < PROGRESS_BAR; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[PROGRESS_BAR] = '\0';
        k = (size_t)snprintf(line, sizeof line, "\r%s [%s]", p->label, bar);
    } else {
        k = (size_t)snprintf(line, sizeof line, "%s", p->label);
    }
    if (k < sizeof line) {
        if (final)
            k += (size_t)snprintf(line + k, sizeof line - k, " %lld/%lld done in %s", done,
                                  p->total, el);
        else
            k += (size_t)snprintf(line + k, sizeof line - k, " %lld/%lld %.1f%% %s ETA %s", done,
                                  p->total, 100.0 * frac, el,
                                  rt_progress_fmt_duration(s_eta(p, done, now), eta, sizeof eta));
    }
    if (k < sizeof line && extra && *extra)
        snprintf(line + k, sizeof line - k, " | %s", extra);
    if (p->live) {
        fputs(line, p->out);
        fputs("\033[K", p->out);
        if (final)
            fputc('\n', p->out);
        p->live_drawn = !final;
    } else {
        fputs(line, p->out);
        fputc('\n', p->out);
    }
    fflush(p->out);
}

int rt_progress_tick(rt_progress_t *p, long long done, double now_s, const char *extra)
{
    if (p->first_done < 0) {
        p->first_done = done;
        p->first_t = now_s;
    }
    double every =
        p->live && p->interval > PROGRESS_LIVE_INTERVAL ? PROGRESS_LIVE_INTERVAL : p->interval;
    if (now_s - p->last < every && done < p->total)
        return 0;
    p->last = now_s;
    s_print(p, done, now_s, extra, 0);
    return 1;
}

void rt_progress_update(rt_progress_t *p, long long done, const char *fmt, ...)
{
    char extra[PROGRESS_LINE] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(extra, sizeof extra, fmt, ap);
        va_end(ap);
    }
    rt_progress_tick(p, done, rt_progress_now(), extra);
}

void rt_progress_finish(rt_progress_t *p, const char *extra)
{
    s_print(p, p->total, rt_progress_now(), extra, 1);
}
