/*
 * rt_prom: the process's Prometheus metrics: a registry of gauges and an HTTP endpoint that
 * serves them in the text exposition format (version 0.0.4: `# HELP`, `# TYPE`, one sample per
 * line), with Debian's libmicrohttpd.
 *
 * The registry is process-wide and off until rt_prom_enable: the coordinator sets its own gauges
 * (eigenbatch_lr, eigenbatch_batch_size, per-worker eigenbatch_worker_speed{worker="1"}, ...), and
 * every metrics.jsonl event written in the process is mirrored as it is to TensorBoard: each
 * numeric field becomes eigenbatch_<event>_<field> (the latest value), so the endpoint serves the
 * TensorBoard scalars. Setting a gauge is a short critical section; a scrape renders a copy.
 */
#ifndef RT_PROM_H
#define RT_PROM_H

#include <stddef.h>

#include <jansson.h>

#define RT_PROM_MAX_GAUGES 1024 /* gauges (name + labels) the registry holds; more are dropped */
#define RT_PROM_NAME_MAX 96     /* bytes of a metric name, with the terminator */
#define RT_PROM_LABELS_MAX 160  /* bytes of its label set ("worker=\"3\"") */
#define RT_PROM_HELP_MAX 160    /* bytes of its help text */

/* Turn the registry on (process-wide); before this rt_prom_set and rt_prom_event do nothing. */
void rt_prom_enable(void);

/* 1 when the registry is on. */
int rt_prom_enabled(void);

/* Set gauge `name` (letters, digits, '_'; other bytes become '_') with `labels` (NULL or "": none;
 * else Prometheus label pairs without the braces, values already escaped) to value; help (may be
 * NULL) describes the metric (the first help given for a name is kept). Thread-safe. */
void rt_prom_set(const char *name, const char *labels, const char *help, double value);

/* Mirror a metrics event (an object with "event" and numeric fields): each number but "time"
 * becomes eigenbatch_<event>_<field>. Thread-safe; nothing when the registry is off. */
void rt_prom_event(json_t *obj);

/* The registry in the text exposition format, NUL-terminated, into *out (caller frees) and its
 * length into *len. Returns 0 or RT_ERR_NOMEM. */
int rt_prom_render(char **out, size_t *len);

typedef struct rt_prom_http rt_prom_http_t;

/* 1 when this build can serve HTTP (libmicrohttpd was found). */
int rt_prom_http_available(void);

/* Serve the registry at http://LISTEN/metrics, LISTEN "HOST:PORT" (an IPv4 address or
 * "localhost"; "*" or "0.0.0.0" for every interface; PORT 0: a free one), from a thread of
 * libmicrohttpd's; enables the registry. Returns 0 and *out (caller owns it: rt_prom_http_stop),
 * RT_ERR_ARG for a bad LISTEN, RT_ERR_UNSUPPORTED in a build without libmicrohttpd, or RT_ERR_IO
 * when it cannot listen there. */
int rt_prom_http_start(const char *listen, rt_prom_http_t **out);

/* The port it listens on. */
int rt_prom_http_port(const rt_prom_http_t *h);

/* Stop serving and free; accepts NULL, nulls *self_p, safe twice. */
void rt_prom_http_stop(rt_prom_http_t **self_p);

#endif
