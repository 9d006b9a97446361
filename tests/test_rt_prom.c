/*
 * test_rt_prom: the Prometheus endpoint (rt_prom, metrics.listen). The registry renders the text
 * exposition format (one HELP and TYPE per name, every label set, NaN spelled as Prometheus
 * does) and mirrors metrics events as eigenbatch_<event>_<field>; its HTTP endpoint serves it at
 * /metrics and 404 elsewhere (fetched with python3's urllib, an independent client); a running
 * cluster's coordinator serves the schedule, loss, images/s and per-worker speed mid-run
 * (`launch`, processes over tcp), and an embedded run (`train`) also the scalars TensorBoard
 * gets (test accuracy, ...); in a run of separate processes the lead worker reports its test-set
 * evaluations to the coordinator, which serves them (test_status checks `status` shows them).
 * Ports are free loopback ports.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_test.h"
#include "eb_test_data.h"
#include "rt_err.h"
#include "rt_prom.h"

#define POLL_US 100000 /* between fetches */
#define TRIES 900      /* at most 90 s of fetches */

/* GET url with python3's urllib: the body (caller frees), or NULL on any failure. */
static char *s_fetch(const char *url)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys, urllib.request as u; "
             "r = u.urlopen(sys.argv[1], timeout=5); "
             "assert r.headers['Content-Type'].startswith('text/plain; version=0.0.4'); "
             "sys.stdout.write(r.read().decode())\" '%s' 2>/dev/null",
             url);
    FILE *f = popen(cmd, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    int st = pclose(f);
    if (!buf || st != 0) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* The value of the sample line starting with `series ` in page (NAN when absent). */
static double s_sample(const char *page, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = page; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

/* Occurrences of needle in hay. */
static int s_count(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        c++;
    return c;
}

static void test_registry_and_http(void **state)
{
    (void)state;
    rt_prom_enable();
    rt_prom_set("eigenbatch_lr", NULL, "learning rate", 0.25);
    rt_prom_set("eigenbatch_worker_speed", "worker=\"0\"", "speed", 100);
    rt_prom_set("eigenbatch_worker_speed", "worker=\"1\"", "speed", 50);
    rt_prom_set("eigenbatch_worker_speed", "worker=\"1\"", "speed", 60); /* replaces */
    rt_prom_set("eigenbatch_loss", NULL, NULL, NAN);
    json_t *ev = json_pack("{s:s, s:f, s:i, s:f, s:s}", "event", "epoch", "time", 1.5, "batch_size",
                           256, "test_accuracy", 0.875, "note", "text");
    rt_prom_event(ev);
    json_decref(ev);
    char *page;
    size_t len;
    assert_int_equal(rt_prom_render(&page, &len), 0);
    assert_int_equal(strlen(page), len);
    assert_int_equal(s_count(page, "# TYPE eigenbatch_worker_speed gauge\n"), 1);
    assert_int_equal(s_count(page, "# HELP eigenbatch_worker_speed speed\n"), 1);
    assert_true(s_sample(page, "eigenbatch_worker_speed{worker=\"1\"}") == 60);
    assert_true(s_sample(page, "eigenbatch_worker_speed{worker=\"0\"}") == 100);
    assert_true(s_sample(page, "eigenbatch_lr") == 0.25);
    assert_non_null(strstr(page, "\neigenbatch_loss NaN\n"));
    assert_true(s_sample(page, "eigenbatch_epoch_test_accuracy") == 0.875);
    assert_true(s_sample(page, "eigenbatch_epoch_batch_size") == 256);
    assert_null(strstr(page, "epoch_time")); /* "time" is not a scalar */
    assert_null(strstr(page, "epoch_note")); /* nor is text */
    free(page);

    rt_prom_http_t *h = NULL;
    assert_int_equal(rt_prom_http_start("127.0.0.1:x", &h), RT_ERR_ARG);
    assert_int_equal(rt_prom_http_start("no-port", &h), RT_ERR_ARG);
    assert_int_equal(rt_prom_http_start("127.0.0.1:0", &h), 0);
    int port = rt_prom_http_port(h);
    assert_true(port > 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    char *body = s_fetch(url);
    assert_non_null(body);
    assert_true(s_sample(body, "eigenbatch_worker_speed{worker=\"1\"}") == 60);
    free(body);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/elsewhere", port);
    assert_null(s_fetch(url)); /* 404 */
    rt_prom_http_stop(&h);
    assert_null(h);
    rt_prom_http_stop(&h); /* safe twice */
}

/* Fetch url until `series` appears in it while process pid runs; the page (caller frees). */
static char *s_wait_for(int pid, const char *url, const char *series)
{
    for (int t = 0; t < TRIES && eb_test_running(pid); t++) {
        char *page = s_fetch(url);
        if (page && !isnan(s_sample(page, series)))
            return page;
        free(page);
        usleep(POLL_US);
    }
    fail_msg("%s never served %s", url, series);
    return NULL;
}

static void test_launch_serves_metrics(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), cmd[8192], url[128];
    int port = eb_test_free_port();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port + 4);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn exec '%s' launch --model synth --transport tcp --port %d --shards 2 "
             "--workers 2 --params 400000 --steps 40 --batch 32 --lr 0.05 "
             "--metrics-listen 127.0.0.1:%d --output-dir '%s/run' >/dev/null 2>&1",
             eb_test_binary(), port, port + 4, tmp);
    int pid = eb_test_spawn(cmd);
    /* a listen address without a port is a configuration error (exit 2), said before any start */
    char bad[4300];
    snprintf(bad, sizeof bad, "'%s' launch --model synth --metrics-listen 9100 2>/dev/null",
             eb_test_binary());
    assert_int_equal(eb_test_run(bad), 2);
    /* the speeds arrive with the workers' second schedule queries */
    char *page = s_wait_for(pid, url, "eigenbatch_worker_speed{worker=\"1\"}");
    assert_true(s_sample(page, "eigenbatch_lr") > 0.0499 &&
                s_sample(page, "eigenbatch_lr") < 0.0501);
    assert_true(s_sample(page, "eigenbatch_batch_size") == 32);
    assert_true(s_sample(page, "eigenbatch_gamma") == 0);
    assert_true(s_sample(page, "eigenbatch_step") >= 1);
    assert_true(s_sample(page, "eigenbatch_images_per_second") >= 0);
    assert_true(isfinite(s_sample(page, "eigenbatch_loss")));
    assert_true(s_sample(page, "eigenbatch_worker_speed{worker=\"0\"}") >= 0);
    double share = s_sample(page, "eigenbatch_worker_share{worker=\"0\"}") +
                   s_sample(page, "eigenbatch_worker_share{worker=\"1\"}");
    assert_true(fabs(share - 1) < 1e-9);
    assert_int_equal(s_count(page, "# TYPE eigenbatch_lr gauge\n"), 1);
    free(page);
    assert_int_equal(eb_test_wait(pid), 0);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* The run lasts long enough for the page to be fetched mid-run: 40 epochs of this set took
 * 0.7 s, short enough on a loaded machine for the run to end between two fetches. */
static void test_train_serves_tensorboard_scalars(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[4200], cmd[12000], url[128];
    snprintf(db, sizeof db, "%s/db", tmp);
    eb_test_make_raw_db(db, 64, 1, 8, 8);
    int port = eb_test_free_port();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn exec '%s' train --model cnn --classes 64 --batch 16 --micro-batch 16 "
             "--lr 0.01 --progress-s 0 --checkpoint-every 0 --data '%s' --test '%s' --epochs 300 "
             "--metrics-listen 127.0.0.1:%d --output-dir '%s/run' >/dev/null 2>&1",
             eb_test_binary(), db, db, port, tmp);
    int pid = eb_test_spawn(cmd);
    char *page = s_wait_for(pid, url, "eigenbatch_epoch_test_accuracy");
    double acc = s_sample(page, "eigenbatch_epoch_test_accuracy");
    assert_true(acc >= 0 && acc <= 1);
    assert_true(s_sample(page, "eigenbatch_epoch_batch_size") == 16);
    assert_true(s_sample(page, "eigenbatch_epoch_lr") > 0);
    assert_false(isnan(s_sample(page, "eigenbatch_epoch_images_per_s")));
    assert_false(isnan(s_sample(page, "eigenbatch_epoch_loss")));
    assert_false(isnan(s_sample(page, "eigenbatch_epoch_train_accuracy")));
    assert_true(s_sample(page, "eigenbatch_batch_size") == 16); /* the coordinator's own */
    free(page);
    assert_int_equal(eb_test_wait(pid), 0);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_launch_serves_test_accuracy(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[4200], cmd[12000], url[128];
    snprintf(db, sizeof db, "%s/db", tmp);
    eb_test_make_raw_db(db, 64, 1, 8, 8);
    int port = eb_test_free_port();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port + 4);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn exec '%s' launch --model cnn --classes 64 --transport tcp --port %d "
             "--shards 2 --workers 2 --batch 16 --micro-batch 8 --lr 0.01 --progress-s 0 "
             "--checkpoint-every 0 --data '%s' --test '%s' --epochs 30 "
             "--metrics-listen 127.0.0.1:%d --output-dir '%s/run' >/dev/null 2>&1",
             eb_test_binary(), port, db, db, port + 4, tmp);
    int pid = eb_test_spawn(cmd);
    char *page = s_wait_for(pid, url, "eigenbatch_test_accuracy");
    double acc = s_sample(page, "eigenbatch_test_accuracy");
    assert_true(acc >= 0 && acc <= 1);
    assert_true(s_sample(page, "eigenbatch_test_samples") == 64);
    assert_true(s_sample(page, "eigenbatch_test_epoch") >= 0);
    assert_true(isfinite(s_sample(page, "eigenbatch_test_loss")));
    free(page);
    assert_int_equal(eb_test_wait(pid), 0);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    if (!rt_prom_http_available()) {
        print_message("built without libmicrohttpd: skipped\n");
        return EB_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_and_http),
        cmocka_unit_test(test_launch_serves_metrics),
        cmocka_unit_test(test_train_serves_tensorboard_scalars),
        cmocka_unit_test(test_launch_serves_test_accuracy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
