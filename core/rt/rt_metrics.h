/*
 * rt_metrics: the run's machine-readable record and its human-readable progress line.
 *
 * metrics.jsonl holds one JSON object per line (jansson), one per event ("step", "epoch", "eigen",
 * ...), each starting with "event" and "time" (Unix seconds), each line one write() so that a crash
 * or a `tail -f` sees every finished event:
 *     {"event": "epoch", "time": 1764446955.123, "epoch": 3, "loss": 0.412, "B": 512, "lr": 0.2}
 * Non-finite numbers (a diverged loss) are written as null, since JSON has no NaN.
 *
 * The progress helper prints "train 1200/9380 12.8% 0:42 ETA 3m40s | loss 0.41 ..." once per
 * interval; when its stream is a terminal it redraws one live line with a bar instead.
 */
#ifndef RT_METRICS_H
#define RT_METRICS_H

#include <stdio.h>

#include <jansson.h>

typedef struct rt_metrics rt_metrics_t;

/* Open path for writing events (append when `append`, else truncate). The file is opened O_APPEND
 * and every event is one write() of a whole line, so several processes may append to one file
 * without interleaving partial lines. Returns 0 and sets *out
 * (caller owns it; free with rt_metrics_close), or RT_ERR_IO naming the path. */
int rt_metrics_open(const char *path, int append, rt_metrics_t **out);

/* Close (flushing) and null the caller's pointer; accepts NULL, safe twice. */
void rt_metrics_close(rt_metrics_t **self_p);

/* From now on (process-wide), each metrics file opened also gets a TensorBoard event file in its
 * directory (rt_tboard.h) holding every numeric field of every event as the scalar
 * "<event>/<field>" at the event's step (else its epoch); `output.tensorboard`. Off by default. */
void rt_metrics_set_tensorboard(int on);

/* Build one event: begin, any number of fields, end. Thread-safe: begin takes the writer's lock
 * and end releases it, so events from several threads never interleave. Field names are copied. */
void rt_metrics_begin(rt_metrics_t *m, const char *event);
void rt_metrics_int(rt_metrics_t *m, const char *key, long long value);
void rt_metrics_num(rt_metrics_t *m, const char *key, double value); /* non-finite: null */
void rt_metrics_str(rt_metrics_t *m, const char *key, const char *value);
void rt_metrics_bool(rt_metrics_t *m, const char *key, int value);
/* Write the line and flush. Returns 0, or RT_ERR_IO / RT_ERR_NOMEM (the event is lost). */
int rt_metrics_end(rt_metrics_t *m);

/* Write a ready object as one event line (adds "time" when absent; obj is borrowed). */
int rt_metrics_write(rt_metrics_t *m, json_t *obj);

typedef struct rt_progress rt_progress_t;

/* A progress reporter for `total` units of work (steps, batches) named `label`, printing to out
 * (NULL: stderr) at most once per interval_s seconds. The live bar is used when out is a terminal.
 * Returns NULL when out of memory. Caller owns it; free with rt_progress_destroy. */
rt_progress_t *rt_progress_new(const char *label, long long total, double interval_s, FILE *out);

/* Destroy and null the caller's pointer; accepts NULL, safe twice. */
void rt_progress_destroy(rt_progress_t **self_p);

/* Force the live bar on or off (tests; a terminal is detected automatically). */
void rt_progress_set_live(rt_progress_t *p, int live);

/* Report that `done` units are complete; prints when the interval has passed since the last line
 * or when done reaches total. fmt (may be NULL) formats extra text shown after the counts. */
void rt_progress_update(rt_progress_t *p, long long done, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* rt_progress_update at an explicit time now_s (seconds on rt_progress_now()'s clock) with ready
 * extra text (may be NULL). Returns 1 when a line was printed, else 0. */
int rt_progress_tick(rt_progress_t *p, long long done, double now_s, const char *extra);

/* End the progress: print a final line with the total time (and end the live line). */
void rt_progress_finish(rt_progress_t *p, const char *extra);

/* Seconds on the runtime's monotonic clock (rt_clock_now; kept for the progress callers). */
double rt_progress_now(void);

/* Format a duration: "42s", "3m40s", "2h05m", "3d04h"; "?" for a negative or non-finite value.
 * Returns buf. */
const char *rt_progress_fmt_duration(double seconds, char *buf, size_t len);

#endif
