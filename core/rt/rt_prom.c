/*
 * rt_prom: the gauge registry and its HTTP endpoint (see rt_prom.h).
 */
#include "rt_prom.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef EB_HAVE_MHD
#include <microhttpd.h>
#endif

#include "rt_err.h"
#include "rt_log.h"

#define S_PREFIX "eigenbatch_" /* the namespace of every mirrored event field */
#define S_LINE_MAX (RT_PROM_NAME_MAX + RT_PROM_LABELS_MAX + RT_PROM_HELP_MAX + 64)

/* One gauge: a name, a label set and the latest value. */
struct s_gauge {
    char name[RT_PROM_NAME_MAX];     /* metric name */
    char labels[RT_PROM_LABELS_MAX]; /* label pairs without braces ("": none) */
    char help[RT_PROM_HELP_MAX];     /* help text ("": none given) */
    double value;                    /* latest value */
};

static atomic_int s_on;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static struct s_gauge s_gauges[RT_PROM_MAX_GAUGES]; /* guarded by s_lock */
static int s_n;                                     /* gauges in use */
static int s_full_logged;                           /* the registry-full warning was given */

void rt_prom_enable(void)
{
    atomic_store(&s_on, 1);
}

int rt_prom_enabled(void)
{
    return atomic_load(&s_on);
}

/* A metric name from s: letters, digits and '_' kept, anything else '_'; a leading digit is
 * prefixed with '_'. */
static void s_sanitize(char *out, size_t cap, const char *s)
{
    size_t k = 0;
    if (isdigit((unsigned char)*s) && k + 1 < cap)
        out[k++] = '_';
    for (; *s && k + 1 < cap; s++)
        out[k++] = isalnum((unsigned char)*s) || *s == '_' ? *s : '_';
    out[k] = '\0';
}

void rt_prom_set(const char *name, const char *labels, const char *help, double value)
{
    if (!atomic_load(&s_on))
        return;
    char nm[RT_PROM_NAME_MAX];
    s_sanitize(nm, sizeof nm, name);
    if (!labels)
        labels = "";
    pthread_mutex_lock(&s_lock);
    struct s_gauge *g = NULL;
    for (int i = 0; i < s_n && !g; i++)
        if (!strcmp(s_gauges[i].name, nm) && !strcmp(s_gauges[i].labels, labels))
            g = &s_gauges[i];
    if (!g && s_n < RT_PROM_MAX_GAUGES) {
        g = &s_gauges[s_n++];
        snprintf(g->name, sizeof g->name, "%s", nm);
        snprintf(g->labels, sizeof g->labels, "%s", labels);
        snprintf(g->help, sizeof g->help, "%s", help ? help : "");
    }
    if (g)
        g->value = value;
    else if (!s_full_logged) {
        s_full_logged = 1;
        RT_WARN("metrics", "Prometheus registry full (%d gauges): %s dropped", RT_PROM_MAX_GAUGES,
                nm);
    }
    pthread_mutex_unlock(&s_lock);
}

void rt_prom_event(json_t *obj)
{
    if (!atomic_load(&s_on) || !json_is_object(obj))
        return;
    const char *ev = json_string_value(json_object_get(obj, "event"));
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (!json_is_number(v) || !strcmp(key, "time"))
            continue;
        char name[RT_PROM_NAME_MAX], help[RT_PROM_HELP_MAX];
        snprintf(name, sizeof name, S_PREFIX "%s_%s", ev ? ev : "event", key);
        snprintf(help, sizeof help, "latest %s of the %s events of metrics.jsonl", key,
                 ev ? ev : "event");
        rt_prom_set(name, NULL, help, json_number_value(v));
    }
}

/* One sample line: name{labels} value (NaN and infinities as Prometheus spells them). */
static int s_sample(char *line, size_t cap, const struct s_gauge *g)
{
    char val[64];
    if (isnan(g->value))
        snprintf(val, sizeof val, "NaN");
    else if (isinf(g->value))
        snprintf(val, sizeof val, "%sInf", g->value > 0 ? "+" : "-");
    else
        snprintf(val, sizeof val, "%.17g", g->value);
    if (g->labels[0])
        return snprintf(line, cap, "%s{%s} %s\n", g->name, g->labels, val);
    return snprintf(line, cap, "%s %s\n", g->name, val);
}

int rt_prom_render(char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    pthread_mutex_lock(&s_lock);
    int n = s_n;
    size_t cap = (size_t)(n + 1) * 2 * S_LINE_MAX + 1;
    char *buf = malloc(cap);
    uint8_t *done = calloc((size_t)n + 1, 1);
    if (!buf || !done) {
        pthread_mutex_unlock(&s_lock);
        free(buf);
        free(done);
        return rt_err_set(RT_ERR_NOMEM, "metrics page");
    }
    size_t k = 0;
    buf[0] = '\0';
    /* one HELP and TYPE per name, then every label set of that name */
    for (int i = 0; i < n; i++) {
        if (done[i])
            continue;
        const struct s_gauge *g = &s_gauges[i];
        k += (size_t)snprintf(buf + k, cap - k, "# HELP %s %s\n# TYPE %s gauge\n", g->name,
                              g->help[0] ? g->help : g->name, g->name);
        for (int j = i; j < n; j++)
            if (!done[j] && !strcmp(s_gauges[j].name, g->name)) {
                done[j] = 1;
                k += (size_t)s_sample(buf + k, cap - k, &s_gauges[j]);
            }
    }
    pthread_mutex_unlock(&s_lock);
    free(done);
    *out = buf;
    *len = k;
    return RT_OK;
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

struct rt_prom_http {
    void *daemon; /* struct MHD_Daemon */
    int port;     /* bound port */
};

/* LISTEN "HOST:PORT" into an IPv4 socket address. */
static int s_parse_listen(const char *listen, struct sockaddr_in *sa)
{
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon)
        return rt_err_set(RT_ERR_ARG, "metrics.listen '%s': expected HOST:PORT", listen);
    char host[256];
    if ((size_t)(colon - listen) >= sizeof host)
        return rt_err_set(RT_ERR_ARG, "metrics.listen '%s': host too long", listen);
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535)
        return rt_err_set(RT_ERR_ARG, "metrics.listen '%s': bad port", listen);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (!host[0] || !strcmp(host, "*"))
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (!strcmp(host, "localhost"))
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return rt_err_set(RT_ERR_ARG, "metrics.listen '%s': '%s' is not an IPv4 address", listen,
                          host);
    return RT_OK;
}

#ifdef EB_HAVE_MHD

int rt_prom_http_available(void)
{
    return 1;
}

/* GET /metrics (or /): the registry; anything else 404. */
static enum MHD_Result s_answer(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_len, void **req)
{
    (void)cls, (void)version, (void)upload, (void)upload_len, (void)req;
    struct MHD_Response *resp;
    unsigned code = MHD_HTTP_OK;
    char *page = NULL;
    size_t len = 0;
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        static const char msg[] = "only GET\n";
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        resp = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/metrics") && strcmp(url, "/")) {
        static const char msg[] = "not found: the metrics are at /metrics\n";
        code = MHD_HTTP_NOT_FOUND;
        resp = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    } else if (rt_prom_render(&page, &len)) {
        return MHD_NO;
    } else {
        resp = MHD_create_response_from_buffer(len, page, MHD_RESPMEM_MUST_FREE);
    }
    if (!resp) {
        free(page);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result r = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return r;
}

int rt_prom_http_start(const char *listen, rt_prom_http_t **out)
{
    *out = NULL;
    struct sockaddr_in sa;
    int rc = s_parse_listen(listen, &sa);
    if (rc)
        return rc;
    rt_prom_http_t *h = calloc(1, sizeof *h);
    if (!h)
        return rt_err_set(RT_ERR_NOMEM, "metrics endpoint");
    rt_prom_enable();
    errno = 0;
    h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, s_answer, NULL,
                                 MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
    if (!h->daemon) {
        int e = errno;
        free(h);
        return rt_err_set(RT_ERR_IO, "metrics.listen %s: cannot listen there%s%s", listen,
                          e ? ": " : "", e ? strerror(e) : "");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? (int)di->port : (int)ntohs(sa.sin_port);
    *out = h;
    return RT_OK;
}

void rt_prom_http_stop(rt_prom_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    MHD_stop_daemon((*self_p)->daemon);
    free(*self_p);
    *self_p = NULL;
}

#else /* a build without libmicrohttpd */

int rt_prom_http_available(void)
{
    return 0;
}

int rt_prom_http_start(const char *listen, rt_prom_http_t **out)
{
    *out = NULL;
    struct sockaddr_in sa;
    int rc = s_parse_listen(listen, &sa);
    if (rc)
        return rc;
    return rt_err_set(RT_ERR_UNSUPPORTED,
                      "metrics.listen %s: this build has no HTTP server (libmicrohttpd-dev was not "
                      "found when it was configured)",
                      listen);
}

void rt_prom_http_stop(rt_prom_http_t **self_p)
{
    if (self_p)
        *self_p = NULL;
}

#endif

int rt_prom_http_port(const rt_prom_http_t *h)
{
    return h ? h->port : 0;
}
