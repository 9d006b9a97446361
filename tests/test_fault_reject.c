/*
 * test_fault_reject: a worker whose gradient is NaN, infinite or over fault.max_grad_norm never
 * changes the weights. Two shards, three workers (threads, inproc); worker 2 pushes a bad gradient
 * at every step. Each shard rejects its push (logged with the worker and the peer, a "reject"
 * event in metrics.jsonl), the step completes from the other two workers' gradients, and after
 * fault.max_rejects rejected steps in a row the coordinator evicts it (an "evict" event with the
 * reason). The run ends normally, and its final weights are bitwise equal to those of a run with
 * workers 0 and 1 alone: the test's model computes each worker's gradient on samples chosen by its
 * id and step, not by its share, so that workers 0 and 1 push the same gradients in both runs.
 */
#include "eb_test.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_embed.h"
#include "rt_err.h"
#include "rt_metrics.h"
#include "server_fixsched.h"
#include "worker_synth.h"

#define P 300          /* parameters of the synthetic model */
#define NB 4           /* its buffers */
#define PER_WORKER 10  /* samples each worker computes a step on */
#define STEPS 8        /* steps of the run */
#define MAX_REJECTS 3  /* rejected steps in a row that evict */
#define BAD 2          /* the faulty worker's id */
#define NORM_BOUND 1e4 /* fault.max_grad_norm of the norm case: far above an honest gradient */

enum s_fault { S_NONE, S_NAN, S_INF, S_HUGE };

struct s_worker {
    struct worker_synth m; /* the honest computation */
    enum s_fault fault;    /* what worker BAD does to its gradient */
};

static int s_compute(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct s_worker *k = user;
    uint64_t first = (st->step * 3 + (uint64_t)st->worker) * PER_WORKER;
    *loss = worker_synth_grad(&k->m, first, PER_WORKER, params, grads, buffers);
    *samples = PER_WORKER;
    if (st->worker == BAD)
        for (int i = 0; i < P; i++)
            grads[i] = k->fault == S_NAN   ? NAN
                       : k->fault == S_INF ? (i % 2 ? INFINITY : -INFINITY)
                                           : grads[i] * 1e7f + 1e3f;
    return RT_OK;
}

static int s_init(void *user, float *params, float *buffers)
{
    struct s_worker *k = user;
    worker_synth_initial(&k->m, params, buffers);
    return RT_OK;
}

/* Run nw workers (worker BAD spoils its gradient with `fault`); final weights into w and b. */
static int s_run(int nw, enum s_fault fault, float norm_bound, rt_metrics_t *metrics, float *w,
                 float *b)
{
    struct s_worker k[3];
    struct worker_compute cb[3];
    memset(k, 0, sizeof k);
    for (int i = 0; i < nw; i++) {
        assert_int_equal(worker_synth_init(&k[i].m, 9, P, NB), 0);
        k[i].fault = fault;
        cb[i] = (struct worker_compute){.user = &k[i], .init = s_init, .compute = s_compute};
    }
    struct server_fixsched_cfg fc = {
        .batch = 3 * PER_WORKER, .lr = 0.01f, .n_samples = 1000, .steps = STEPS};
    struct server_coord_sched cs;
    assert_int_equal(server_fixsched_new(&fc, &cs), 0);
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = nw,
        .transport = "inproc",
        .where = "reject",
        .n_params = P,
        .n_buffers = NB,
        .momentum = 0.9f,
        .weight_decay = 1e-4f,
        .sched = &cs,
        .compute = cb,
        .worker_timeout_ms = 20000,
        .evict_ms = 20000,
        .max_grad_norm = norm_bound,
        .max_rejects = MAX_REJECTS,
        .metrics = metrics,
        .chunk_floats = 64, /* several chunks per shard */
    };
    int rc = cluster_embed_run(&cc, w, b, NULL);
    server_fixsched_destroy(&cs);
    for (int i = 0; i < nw; i++)
        worker_synth_fini(&k[i].m);
    return rc;
}

static void test_bad_gradients_never_change_the_weights(void **state)
{
    (void)state;
    float ref_w[P], ref_b[NB], w[P], b[NB];
    /* the reference: workers 0 and 1 alone (and, with the norm bound, no honest push rejected) */
    assert_int_equal(s_run(2, S_NONE, 0, NULL, ref_w, ref_b), 0);
    float bound_w[P], bound_b[NB];
    assert_int_equal(s_run(2, S_NONE, NORM_BOUND, NULL, bound_w, bound_b), 0);
    assert_memory_equal(bound_w, ref_w, sizeof ref_w);
    const enum s_fault faults[] = {S_NAN, S_INF, S_HUGE};
    const char *names[] = {"NaN", "Inf", "over-norm"};
    for (int f = 0; f < 3; f++) {
        char *tmp = eb_test_tmpdir(), path[4200];
        snprintf(path, sizeof path, "%s/metrics.jsonl", tmp);
        rt_metrics_t *metrics = NULL;
        assert_int_equal(rt_metrics_open(path, 0, &metrics), 0);
        int rc = s_run(3, faults[f], faults[f] == S_HUGE ? NORM_BOUND : 0, metrics, w, b);
        rt_metrics_close(&metrics);
        if (rc)
            fail_msg("%s: the run failed: %s", names[f], rt_err_msg());
        for (int i = 0; i < P; i++)
            if (memcmp(&w[i], &ref_w[i], sizeof w[i]))
                fail_msg("%s: weight %d is %.9g, without the faulty worker %.9g", names[f], i,
                         (double)w[i], (double)ref_w[i]);
        assert_memory_equal(b, ref_b, sizeof b);
        /* rejected MAX_REJECTS steps in a row (each step once, whichever shard told first), then
         * evicted for it */
        json_t *rej = eb_test_events(path, "reject");
        assert_int_equal(json_array_size(rej), MAX_REJECTS);
        for (size_t i = 0; i < json_array_size(rej); i++) {
            json_t *e = json_array_get(rej, i);
            assert_int_equal(json_integer_value(json_object_get(e, "worker")), BAD);
            assert_int_equal(json_integer_value(json_object_get(e, "step")), (json_int_t)i);
            assert_non_null(json_object_get(e, "peer"));
            const char *why = json_string_value(json_object_get(e, "reason"));
            assert_non_null(why);
            if (!strstr(why, faults[f] == S_HUGE ? "norm" : "not finite"))
                fail_msg("%s: the reject event says: %s", names[f], why);
        }
        json_decref(rej);
        json_t *ev = eb_test_events(path, "evict");
        assert_int_equal(json_array_size(ev), 1);
        json_t *e = json_array_get(ev, 0);
        assert_int_equal(json_integer_value(json_object_get(e, "worker")), BAD);
        assert_string_equal(json_string_value(json_object_get(e, "reason")), "rejected pushes");
        json_decref(ev);
        eb_test_rmtree(tmp);
        free(tmp);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_gradients_never_change_the_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
