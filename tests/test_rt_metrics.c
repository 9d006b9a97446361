/*
 * test_rt_metrics: metrics.jsonl holds one valid JSON object per event, flushed per line (readable
 * before close), never interleaved across threads, NaN as null; the progress line reports counts,
 * percentage and a correct ETA once per interval, with a bar only in live mode.
 */
#include "eb_test.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "rt_metrics.h"

/* Read all lines of path as JSON objects; returns how many, fails the test on an invalid line. */
static int s_read_lines(const char *path, json_t **out, int max)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!json_is_object(o))
            fail_msg("line %d is not a JSON object: %s (%s)", n + 1, line, err.text);
        if (n < max)
            out[n] = o;
        else
            json_decref(o);
        n++;
    }
    fclose(f);
    return n;
}

static void test_events(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    rt_metrics_t *m = NULL;
    assert_int_equal(rt_metrics_open(path, 0, &m), 0);

    rt_metrics_begin(m, "step");
    rt_metrics_int(m, "step", 7);
    rt_metrics_num(m, "loss", 0.25);
    rt_metrics_num(m, "lambda", NAN);
    rt_metrics_str(m, "reason", "eig \"drop\"\n");
    rt_metrics_bool(m, "adv", 1);
    assert_int_equal(rt_metrics_end(m), 0);

    /* Flushed: readable before the writer is closed. */
    json_t *lines[4] = {0};
    assert_int_equal(s_read_lines(path, lines, 4), 1);
    json_t *o = lines[0];
    assert_string_equal(json_string_value(json_object_get(o, "event")), "step");
    assert_true(json_real_value(json_object_get(o, "time")) > 1.6e9);
    assert_int_equal(json_integer_value(json_object_get(o, "step")), 7);
    assert_true(json_real_value(json_object_get(o, "loss")) == 0.25);
    assert_true(json_is_null(json_object_get(o, "lambda")));
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "eig \"drop\"\n");
    assert_true(json_is_true(json_object_get(o, "adv")));
    /* "event" comes first on the line. */
    const char *first_key = json_object_iter_key(json_object_iter(o));
    assert_string_equal(first_key, "event");
    json_decref(o);

    json_t *ev = json_pack("{s:s, s:i}", "event", "epoch", "epoch", 3);
    assert_int_equal(rt_metrics_write(m, ev), 0);
    json_decref(ev);
    rt_metrics_close(&m);
    assert_null(m);
    rt_metrics_close(&m);

    /* Appending keeps the earlier lines; truncating drops them. */
    assert_int_equal(rt_metrics_open(path, 1, &m), 0);
    rt_metrics_begin(m, "end");
    assert_int_equal(rt_metrics_end(m), 0);
    rt_metrics_close(&m);
    assert_int_equal(s_read_lines(path, lines, 4), 3);
    assert_int_equal(json_integer_value(json_object_get(lines[1], "epoch")), 3);
    assert_non_null(json_object_get(lines[1], "time"));
    for (int i = 0; i < 3; i++)
        json_decref(lines[i]);
    assert_int_equal(rt_metrics_open(path, 0, &m), 0);
    rt_metrics_close(&m);
    assert_int_equal(s_read_lines(path, lines, 4), 0);

    snprintf(path, sizeof path, "%s/no/dir/metrics.jsonl", dir);
    assert_int_equal(rt_metrics_open(path, 0, &m), RT_ERR_IO);
    assert_non_null(strstr(rt_err_msg(), "no/dir"));
    assert_null(m);
    eb_test_rmtree(dir);
    free(dir);
}

#define WRITERS 4
#define EVENTS_EACH 200

static void *s_writer(void *arg)
{
    rt_metrics_t *m = arg;
    for (int i = 0; i < EVENTS_EACH; i++) {
        rt_metrics_begin(m, "step");
        rt_metrics_int(m, "i", i);
        rt_metrics_str(m, "pad",
                       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        rt_metrics_num(m, "x", i * 0.5);
        rt_metrics_end(m);
    }
    return NULL;
}

static void test_threads_do_not_interleave(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    rt_metrics_t *m = NULL;
    assert_int_equal(rt_metrics_open(path, 0, &m), 0);
    pthread_t th[WRITERS];
    for (int t = 0; t < WRITERS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, s_writer, m), 0);
    for (int t = 0; t < WRITERS; t++)
        pthread_join(th[t], NULL);
    rt_metrics_close(&m);
    assert_int_equal(s_read_lines(path, NULL, 0), WRITERS * EVENTS_EACH);
    eb_test_rmtree(dir);
    free(dir);
}

static void test_duration_format(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(rt_progress_fmt_duration(0, b, sizeof b), "0s");
    assert_string_equal(rt_progress_fmt_duration(42.4, b, sizeof b), "42s");
    assert_string_equal(rt_progress_fmt_duration(220, b, sizeof b), "3m40s");
    assert_string_equal(rt_progress_fmt_duration(7500, b, sizeof b), "2h05m");
    assert_string_equal(rt_progress_fmt_duration(3 * 86400 + 4 * 3600, b, sizeof b), "3d04h");
    assert_string_equal(rt_progress_fmt_duration(-1, b, sizeof b), "?");
    assert_string_equal(rt_progress_fmt_duration(NAN, b, sizeof b), "?");
}

/* Read the whole stream f (rewound) into buf. */
static void s_slurp(FILE *f, char *buf, size_t len)
{
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
}

static void test_progress_lines(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    rt_progress_t *p = rt_progress_new("train", 100, 1.0, f);
    assert_non_null(p);
    rt_progress_set_live(p, 0);
    double t0 = rt_progress_now();
    /* The first update starts the ETA clock; nothing is printed within the interval. */
    assert_int_equal(rt_progress_tick(p, 0, t0, NULL), 0);
    assert_int_equal(rt_progress_tick(p, 10, t0 + 0.5, NULL), 0);
    /* 50 units in 10 s: 5 per second, 50 left: ETA 10 s. */
    assert_int_equal(rt_progress_tick(p, 50, t0 + 10, "loss 0.41"), 1);
    assert_int_equal(rt_progress_tick(p, 51, t0 + 10.5, NULL), 0);
    /* Reaching the total prints at once. */
    assert_int_equal(rt_progress_tick(p, 100, t0 + 10.6, NULL), 1);
    rt_progress_finish(p, "acc 0.91");
    rt_progress_destroy(&p);
    assert_null(p);
    rt_progress_destroy(&p);

    char out[2048];
    s_slurp(f, out, sizeof out);
    fclose(f);
    char *line2 = strchr(out, '\n');
    assert_non_null(line2);
    assert_non_null(strstr(out, "train 50/100 50.0% "));
    char *eta = strstr(out, "ETA 10s | loss 0.41\n");
    assert_true(eta && eta < line2);
    assert_non_null(strstr(line2, "train 100/100 100.0% "));
    assert_non_null(strstr(line2, "train 100/100 done in "));
    assert_non_null(strstr(line2, "| acc 0.91\n"));
    assert_null(strchr(out, '\r'));
    assert_null(strchr(out, '['));

    /* Live mode redraws one line with a bar and ends it with a newline. */
    f = tmpfile();
    p = rt_progress_new("eval", 40, 1.0, f);
    rt_progress_set_live(p, 1);
    t0 = rt_progress_now();
    rt_progress_tick(p, 0, t0, NULL);
    assert_int_equal(rt_progress_tick(p, 10, t0 + 0.3, NULL), 1);
    rt_progress_finish(p, NULL);
    rt_progress_destroy(&p);
    s_slurp(f, out, sizeof out);
    fclose(f);
    assert_non_null(strstr(out, "\reval [######..................] 10/40 25.0%"));
    assert_non_null(strstr(out, "\reval [########################] 40/40 done in"));
    assert_int_equal(out[strlen(out) - 1], '\n');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_threads_do_not_interleave),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_progress_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
