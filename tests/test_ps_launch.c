/*
 * test_ps_launch: multi-process runs. `eigenbatch launch` (2 shards, 2 workers, separate processes
 * over tcp loopback and over ipc, and threads of one process over inproc) trains the synthetic
 * model to the same weights as plain SGD over the whole batch in one process, within 1e-5 relative.
 * Also: a bad option is a clear usage error, and a worker that cannot reach its shards fails
 * instead of hanging forever.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "eb_test_data.h"
#include "nn_net.h"
#include "server_sched.h"
#include "worker_synth.h"

#define P 1001
#define NB 7
#define BATCH 24
#define STEPS 6
#define LR 1e-3f
#define MOMENTUM 0.9f
#define WD 1e-4f
#define SEED 42
#define N_SAMPLES 48

static void s_reference(float *w, float *b)
{
    struct worker_synth m;
    assert_int_equal(worker_synth_init(&m, SEED, P, NB), 0);
    float *mom = calloc(P, sizeof(float)), *g = calloc(P, sizeof(float));
    worker_synth_initial(&m, w, b);
    for (uint64_t t = 0; t < STEPS; t++) {
        uint64_t per_epoch = N_SAMPLES / BATCH;
        worker_synth_grad(&m, ((t / per_epoch) << 32) + (t % per_epoch) * BATCH, BATCH, w, g, b);
        nn_sgd_step(w, mom, g, P, LR, MOMENTUM, WD);
    }
    free(mom);
    free(g);
    worker_synth_fini(&m);
}

static void s_launch_and_compare(const char *transport)
{
    char *dir = eb_test_tmpdir();
    char out[4200], cmd[9000];
    snprintf(out, sizeof out, "%s/final.bin", dir);
    snprintf(
        cmd, sizeof cmd,
        "EB_LOG=warn '%s' launch --model synth --transport %s --shards 2 --workers 2 --params %d "
        "--buffers %d --batch %d --steps %d --lr %.9g --momentum %.9g --weight-decay %.9g "
        "--samples %d --seed %d --chunk 200 --checksum crc32 --out '%s'",
        eb_test_binary(), transport, P, NB, BATCH, STEPS, (double)LR, (double)MOMENTUM, (double)WD,
        N_SAMPLES, SEED, out);
    assert_int_equal(eb_test_run(cmd), 0);
    float got[P + NB], ref_w[P], ref_b[NB];
    FILE *f = fopen(out, "rb");
    assert_non_null(f);
    assert_int_equal(fread(got, sizeof(float), P + NB, f), P + NB);
    fclose(f);
    s_reference(ref_w, ref_b);
    for (int i = 0; i < P; i++)
        if (eb_test_reldiff(got[i], ref_w[i], 1e-2) > 1e-5)
            fail_msg("%s: weight %d = %g, reference %g", transport, i, (double)got[i],
                     (double)ref_w[i]);
    for (int i = 0; i < NB; i++)
        if (eb_test_reldiff(got[P + i], ref_b[i], 1e-2) > 1e-5)
            fail_msg("%s: buffer %d = %g, reference %g", transport, i, (double)got[P + i],
                     (double)ref_b[i]);
    eb_test_rmtree(dir);
    free(dir);
}

static void test_launch_tcp(void **state)
{
    (void)state;
    s_launch_and_compare("tcp");
}

static void test_launch_ipc(void **state)
{
    (void)state;
    s_launch_and_compare("ipc");
}

static void test_launch_threads(void **state)
{
    (void)state;
    s_launch_and_compare("inproc");
}

static void test_launch_gg_schedule(void **state)
{
    (void)state;
    /* GG through the command line: the batch doubles at epoch 1, the epoch of 60 samples ends in a
     * partial step; separate processes over ipc follow shard 0's server_sched */
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_GG, 60, 3);
    c.batch = 24;
    c.base_batch = 24;
    c.micro_batch = 128;
    c.lr = LR;
    c.momentum = MOMENTUM;
    c.weight_decay = WD;
    c.rho = 0.5;
    c.n_decay = 1;
    c.decay_epochs[0] = 1;
    server_sched_t *sched = server_sched_new(&c);
    assert_non_null(sched);
    float ref_w[P], ref_b[NB];
    struct worker_synth m;
    assert_int_equal(worker_synth_init(&m, SEED, P, NB), 0);
    float *mom = calloc(P, sizeof(float)), *g = calloc(P, sizeof(float));
    worker_synth_initial(&m, ref_w, ref_b);
    int grew = 0;
    for (int64_t t = 0;; t++) {
        struct server_sched_point p;
        assert_int_equal(server_sched_at(sched, t, -1, &p), 0);
        if (p.done)
            break;
        grew |= p.batch > 24;
        worker_synth_grad(&m, ((uint64_t)p.epoch << 32) + (uint64_t)p.offset, (uint32_t)p.samples,
                          ref_w, g, ref_b);
        nn_sgd_step(ref_w, mom, g, P, (float)p.lr, MOMENTUM, WD);
    }
    assert_true(grew);
    free(mom);
    free(g);
    worker_synth_fini(&m);
    server_sched_destroy(&sched);

    char *dir = eb_test_tmpdir();
    char out[4200], cmd[9000];
    snprintf(out, sizeof out, "%s/final.bin", dir);
    snprintf(
        cmd, sizeof cmd,
        "EB_LOG=warn '%s' launch --model synth --transport ipc --shards 2 --workers 2 --params %d "
        "--buffers %d --batch 24 --lr %.9g --momentum %.9g --weight-decay %.9g "
        "--samples 60 --seed %d --method GG --epochs 3 --decay-epochs 1 --rho 0.5 "
        "--out '%s'",
        eb_test_binary(), P, NB, (double)LR, (double)MOMENTUM, (double)WD, SEED, out);
    assert_int_equal(eb_test_run(cmd), 0);
    float got[P + NB];
    FILE *f = fopen(out, "rb");
    assert_non_null(f);
    assert_int_equal(fread(got, sizeof(float), P + NB, f), P + NB);
    fclose(f);
    for (int i = 0; i < P; i++)
        if (eb_test_reldiff(got[i], ref_w[i], 1e-2) > 1e-5)
            fail_msg("GG: weight %d = %g, reference %g", i, (double)got[i], (double)ref_w[i]);
    eb_test_rmtree(dir);
    free(dir);
}

static void test_launch_zoo_model_on_lmdb(void **state)
{
    (void)state;
    /* a real model on an LMDB dataset through the same processes: mlp, 40 records of 1x8x8 */
    char *tmp = eb_test_tmpdir(), db[4200], out[4200], cmd[9000];
    snprintf(db, sizeof db, "%s/db", tmp);
    snprintf(out, sizeof out, "%s/final.bin", tmp);
    eb_test_make_raw_db(db, 40, 1, 8, 8);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' launch --transport tcp --shards 2 --workers 2 --model cnn "
             "--data '%s' --classes 40 --batch 16 --micro-batch 4 --steps 4 --lr 0.05 "
             "--out '%s'",
             eb_test_binary(), db, out);
    assert_int_equal(eb_test_run(cmd), 0);
    nn_net_t *net = nn_zoo_new("cnn", 1, 8, 8, 40, 4, NULL);
    assert_non_null(net);
    size_t want = (nn_net_param_count(net) + nn_net_buffer_count(net)) * sizeof(float);
    FILE *f = fopen(out, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    assert_int_equal((size_t)ftell(f), want);
    /* the weights moved away from the initialisation */
    float *got = malloc(want);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fread(got, 1, want, f), want);
    fclose(f);
    nn_net_init(net, 1);
    double moved = 0;
    for (size_t i = 0; i < nn_net_param_count(net); i++)
        moved = fmax(moved, fabs((double)got[i] - nn_net_params(net)[i]));
    assert_true(moved > 1e-4);
    free(got);
    nn_net_destroy(&net);
    /* a model that does not fit the data is a clear error */
    snprintf(cmd, sizeof cmd,
             "EB_LOG=error '%s' launch --transport tcp --model cnn --data '%s/missing' 2>/dev/null",
             eb_test_binary(), tmp);
    assert_int_equal(eb_test_run(cmd), 1);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_bad_options(void **state)
{
    (void)state;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' launch --shards 0 2>/dev/null", eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 2);
    snprintf(cmd, sizeof cmd, "'%s' server --shard 0 2>/dev/null", eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 2);
    snprintf(cmd, sizeof cmd, "'%s' worker --params x 2>/dev/null", eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 2);
    /* a worker whose shard never answers gives up (env configuration, short timeout) */
    int port = eb_test_free_port();
    snprintf(cmd, sizeof cmd,
             "EB_CONNECT=tcp://127.0.0.1:%d EB_MODEL=synth EB_PARAMS=10 EB_TIMEOUT_MS=500 "
             "timeout 20 '%s' worker 2>/dev/null",
             port, eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_launch_tcp),
        cmocka_unit_test(test_launch_ipc),
        cmocka_unit_test(test_launch_threads),
        cmocka_unit_test(test_launch_gg_schedule),
        cmocka_unit_test(test_launch_zoo_model_on_lmdb),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
