/*
 * test_ckpt: the checkpoint files (server_ckpt) and their directory protocol (rt_ckpt). Two shards'
 * files and the coordinator's (schedule with an accepted decision, ABS state with a lambda_ref that
 * needs all 17 digits) round-trip bitwise; the manifest completes a checkpoint only once every
 * shard's file of that step is there. A directory without manifest is skipped by `auto`, which
 * takes the newest complete one; a truncated or corrupted file, a missing PATH and a checkpoint of
 * another size or shard count are errors naming the file and the field. keep = N pruning keeps the
 * N newest complete checkpoints (and a newer one being written), and a run that starts at epoch E
 * removes the checkpoints after E. The ABS state travels over the wire with a decision, and the
 * coordinator keeps the newest one it was given.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_ckpt.h"
#include "rt_err.h"
#include "rt_wire.h"
#include "server_ckpt.h"
#include "server_coord.h"
#include "server_sched.h"

#define NP 1001 /* parameters (odd: the shards' ranges differ by one) */
#define NB 37   /* buffers */
#define NS 2    /* shards */

static char *s_tmp;

static int s_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A schedule with one accepted decision, as the coordinator holds it. */
static server_sched_t *s_sched(void)
{
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_ABS, 100, 6);
    c.batch = 10;
    c.base_batch = 10;
    c.batch_max = 40;
    c.micro_batch = 10;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    struct server_sched_decision d = {
        .seq = 1, .snapshot_version = 10, .epoch = 0, .batch = 20, .lr_base = 0.2, .lambda = 3.5};
    assert_int_equal(server_sched_accept(s, &d, 10, NULL), SERVER_SCHED_ACCEPTED);
    return s;
}

static const struct rt_wire_abs s_abs = {.batch = 20,
                                         .lr_base = 0.2,
                                         .gamma_base = 0.05,
                                         .lambda_ref = 0.1 + 1e-16 * 3, /* not a short decimal */
                                         .has_ref = 1,
                                         .duration = 3,
                                         .measuring = 1,
                                         .increases = 1,
                                         .last_epoch = 4};

/* Write a whole checkpoint of `epoch` at `step` under root (shards' data derived from step), the
 * manifest included unless `complete` is 0. */
static void s_write_ckpt(const char *root, uint64_t epoch, uint64_t step, int complete)
{
    char dir[4400];
    assert_int_equal(rt_ckpt_dir(dir, sizeof dir, root, epoch), 0);
    assert_int_equal(rt_ckpt_mkdirs(dir), 0);
    for (int i = 0; i < NS; i++) {
        struct server_ckpt_shard h = {.shard = i,
                                      .n_shards = NS,
                                      .n_params = NP,
                                      .n_buffers = NB,
                                      .version = step,
                                      .epoch = epoch};
        rt_wire_partition(NP, NS, i, &h.p_off, &h.p_cnt);
        rt_wire_partition(NB, NS, i, &h.b_off, &h.b_cnt);
        float w[NP], m[NP], b[NB];
        for (uint64_t k = 0; k < h.p_cnt; k++) {
            w[k] = (float)(h.p_off + k) * 0.001f + (float)step;
            m[k] = -w[k] / 3.0f;
        }
        for (uint64_t k = 0; k < h.b_cnt; k++)
            b[k] = (float)(h.b_off + k) + 0.5f;
        assert_int_equal(server_ckpt_shard_write(dir, &h, w, m, b), 0);
    }
    server_sched_t *sched = s_sched();
    struct server_ckpt_coord *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->epoch = epoch;
    c->step = step;
    c->n_shards = NS;
    c->n_params = NP;
    c->n_buffers = NB;
    snprintf(c->model, sizeof c->model, "tiny");
    c->batch = 20;
    c->lr = 0.2f;
    c->sched_version = 1;
    server_sched_get_state(sched, &c->sched);
    c->has_abs = 1;
    c->abs = s_abs;
    assert_int_equal(server_ckpt_coord_write(dir, c), 0);
    if (complete)
        assert_int_equal(server_ckpt_finish(dir, c), 0);
    free(c);
    server_sched_destroy(&sched);
}

static void test_round_trip(void **state)
{
    (void)state;
    char root[4300], dir[4400];
    snprintf(root, sizeof root, "%s/rt", s_tmp);
    s_write_ckpt(root, 3, 30, 1);
    assert_int_equal(rt_ckpt_dir(dir, sizeof dir, root, 3), 0);
    uint64_t epoch = 0, step = 0;
    assert_int_equal(server_ckpt_check(dir, NULL, NS, NP, NB, "tiny", &epoch, &step), 0);
    assert_int_equal(epoch, 3);
    assert_int_equal(step, 30);
    for (int i = 0; i < NS; i++) {
        struct server_ckpt_shard h = {.shard = i, .n_shards = NS, .n_params = NP, .n_buffers = NB};
        rt_wire_partition(NP, NS, i, &h.p_off, &h.p_cnt);
        rt_wire_partition(NB, NS, i, &h.b_off, &h.b_cnt);
        float w[NP], m[NP], b[NB];
        assert_int_equal(server_ckpt_shard_read(dir, &h, w, m, b), 0);
        assert_int_equal(h.version, 30);
        assert_int_equal(h.epoch, 3);
        for (uint64_t k = 0; k < h.p_cnt; k++) {
            float x = (float)(h.p_off + k) * 0.001f + 30.0f;
            assert_memory_equal(&w[k], &x, sizeof x);
            float y = -x / 3.0f;
            assert_memory_equal(&m[k], &y, sizeof y);
        }
        for (uint64_t k = 0; k < h.b_cnt; k++)
            assert_true(b[k] == (float)(h.b_off + k) + 0.5f);
        /* the layout of another run is refused, naming the field */
        h.n_params = NP + 1;
        assert_int_equal(server_ckpt_shard_read(dir, &h, w, m, b), RT_ERR_SHAPE);
        assert_non_null(strstr(rt_err_msg(), "n_params"));
        assert_non_null(strstr(rt_err_msg(), "shard-"));
    }
    struct server_ckpt_coord *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(server_ckpt_coord_read(dir, c), 0);
    assert_int_equal(c->epoch, 3);
    assert_int_equal(c->step, 30);
    assert_string_equal(c->model, "tiny");
    assert_true(c->has_abs);
    assert_memory_equal(&c->abs, &s_abs, sizeof s_abs);
    server_sched_t *want = s_sched(), *got = s_sched();
    assert_int_equal(server_sched_set_state(got, &c->sched), 0);
    assert_int_equal(server_sched_version(got), 1);
    for (int64_t t = 0; t < 60; t++) {
        struct server_sched_point a, b;
        assert_int_equal(server_sched_at(want, t, -1, &a), 0);
        assert_int_equal(server_sched_at(got, t, -1, &b), 0);
        assert_true(a.batch == b.batch && a.lr == b.lr && a.epoch == b.epoch);
    }
    server_sched_destroy(&want);
    server_sched_destroy(&got);
    free(c);
    /* a checkpoint of another model, size or shard count: named */
    assert_int_equal(server_ckpt_check(dir, NULL, NS, NP + 5, NB, NULL, NULL, NULL), RT_ERR_SHAPE);
    assert_non_null(strstr(rt_err_msg(), "MANIFEST.json: n_params is 1001"));
    assert_int_equal(server_ckpt_check(dir, NULL, NS + 1, NP, NB, NULL, NULL, NULL), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "n_shards"));
    assert_int_equal(server_ckpt_check(dir, NULL, NS, NP, NB, "other", NULL, NULL), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "model"));
}

/* The manifest waits for every shard's file of the checkpoint's step. */
static void test_finish_waits(void **state)
{
    (void)state;
    char root[4300], dir[4400], path[4500];
    snprintf(root, sizeof root, "%s/wait", s_tmp);
    s_write_ckpt(root, 1, 10, 0);
    assert_int_equal(rt_ckpt_dir(dir, sizeof dir, root, 1), 0);
    struct server_ckpt_coord *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(server_ckpt_coord_read(dir, c), 0);
    /* shard 1's file is of an earlier attempt (another step): not this checkpoint's */
    c->step = 11;
    assert_int_equal(server_ckpt_finish(dir, c), RT_ERR_STATE);
    snprintf(path, sizeof path, "%s/shard-1.safetensors", dir);
    assert_int_equal(unlink(path), 0);
    c->step = 10;
    assert_int_equal(server_ckpt_finish(dir, c), RT_ERR_STATE);
    snprintf(path, sizeof path, "%s/%s", dir, RT_CKPT_MANIFEST);
    assert_false(s_exists(path));
    assert_int_equal(rt_ckpt_verify(dir, NULL, NULL), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), "incomplete"));
    free(c);
}

/* auto skips an incomplete newest checkpoint; corrupt and truncated files are named. */
static void test_atomicity(void **state)
{
    (void)state;
    char root[4400], dir[4400], path[4500], got[4400], out[4300];
    snprintf(out, sizeof out, "%s/run", s_tmp);
    snprintf(root, sizeof root, "%s/%s", out, SERVER_CKPT_SUBDIR);
    s_write_ckpt(root, 1, 10, 1);
    s_write_ckpt(root, 2, 20, 1);
    s_write_ckpt(root, 3, 30, 0); /* a crash before its manifest */
    /* leftovers that are no checkpoints are ignored */
    snprintf(path, sizeof path, "%s/epoch-000009.tmp-1", root);
    assert_int_equal(rt_ckpt_mkdirs(path), 0);
    uint64_t e = 0;
    assert_int_equal(rt_ckpt_latest(root, got, sizeof got, &e), 0);
    assert_int_equal(e, 2);
    assert_int_equal(rt_ckpt_resolve(out, "auto", got, sizeof got, &e), 0);
    assert_int_equal(rt_ckpt_dir(dir, sizeof dir, root, 2), 0);
    assert_string_equal(got, dir);
    /* no output directory of checkpoints: a fresh start, no error */
    char empty[4300];
    snprintf(empty, sizeof empty, "%s/empty", s_tmp);
    assert_int_equal(rt_ckpt_resolve(empty, "auto", got, sizeof got, &e), 0);
    assert_string_equal(got, "");
    /* an explicit PATH must be complete */
    assert_int_equal(rt_ckpt_dir(dir, sizeof dir, root, 3), 0);
    assert_int_equal(rt_ckpt_resolve(out, dir, got, sizeof got, NULL), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), "epoch-000003"));
    snprintf(path, sizeof path, "%s/nowhere", s_tmp);
    assert_true(rt_ckpt_resolve(out, path, got, sizeof got, NULL) < 0);
    assert_non_null(strstr(rt_err_msg(), "nowhere"));
    /* one flipped byte in a shard file */
    assert_int_equal(rt_ckpt_dir(dir, sizeof dir, root, 2), 0);
    snprintf(path, sizeof path, "%s/shard-0.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 200, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(ch ^ 1, f);
    fclose(f);
    assert_int_equal(rt_ckpt_verify(dir, NULL, NULL), RT_ERR_CHECKSUM);
    assert_non_null(strstr(rt_err_msg(), "shard-0.safetensors"));
    assert_int_equal(rt_ckpt_resolve(out, dir, got, sizeof got, NULL), RT_ERR_CHECKSUM);
    /* auto now falls back to epoch 1 */
    assert_int_equal(rt_ckpt_latest(root, got, sizeof got, &e), 0);
    assert_int_equal(e, 1);
    /* a truncated coordinator file */
    assert_int_equal(rt_ckpt_dir(dir, sizeof dir, root, 1), 0);
    snprintf(path, sizeof path, "%s/%s", dir, SERVER_CKPT_COORD);
    assert_int_equal(truncate(path, 10), 0);
    assert_int_equal(rt_ckpt_verify(dir, NULL, NULL), RT_ERR_SIZE);
    assert_non_null(strstr(rt_err_msg(), SERVER_CKPT_COORD));
    assert_int_equal(rt_ckpt_latest(root, got, sizeof got, &e), RT_ERR_NOTFOUND);
    /* and read directly (bypassing the manifest) it is a format error naming the file */
    struct server_ckpt_coord *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(server_ckpt_coord_read(dir, c), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), SERVER_CKPT_COORD));
    free(c);
}

static void test_prune(void **state)
{
    (void)state;
    char root[4300], dir[4400];
    snprintf(root, sizeof root, "%s/prune", s_tmp);
    s_write_ckpt(root, 1, 10, 0); /* debris of a crash, older than the complete ones */
    for (uint64_t e = 2; e <= 6; e++)
        s_write_ckpt(root, e, 10 * e, 1);
    s_write_ckpt(root, 7, 70, 0); /* being written */
    assert_int_equal(rt_ckpt_prune(root, 2), 0);
    for (uint64_t e = 1; e <= 7; e++) {
        assert_int_equal(rt_ckpt_dir(dir, sizeof dir, root, e), 0);
        assert_int_equal(s_exists(dir), e >= 5);
    }
    /* a run that starts at epoch 5 will write 6 and 7 again: they go */
    assert_int_equal(rt_ckpt_remove_after(root, RT_CKPT_KEY(5, 0)), 0);
    uint64_t eps[16];
    int n = 0;
    assert_int_equal(rt_ckpt_list(root, eps, 16, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(eps[0], RT_CKPT_KEY(5, 0));
}

/* Checkpoints within an epoch: named epoch-NNNNNN-step-SSSSSSSSSSSS, ordered after their epoch's
 * start and before the next epoch's; the newest complete one is found; a run resuming from one
 * removes the later ones only; other names are not checkpoints. */
static void test_mid_epoch_names(void **state)
{
    (void)state;
    char root[4300], dir[4400], got[4400];
    snprintf(root, sizeof root, "%s/mid", s_tmp);
    assert_int_equal(rt_ckpt_dir_key(dir, sizeof dir, root, RT_CKPT_KEY(3, 1234)), 0);
    assert_non_null(strstr(dir, "/epoch-000003-step-000000001234"));
    uint64_t key = 0;
    assert_int_equal(rt_ckpt_dir_parse(dir, &key), 0);
    assert_true(key == RT_CKPT_KEY(3, 1234));
    assert_int_equal(rt_ckpt_dir_parse("/x/epoch-000003/", &key), 0);
    assert_true(key == RT_CKPT_KEY(3, 0));
    assert_int_equal(rt_ckpt_dir_parse("/x/epoch-000003-step-", &key), RT_ERR_FORMAT);
    assert_int_equal(rt_ckpt_dir_parse("/x/epoch-000003.tmp", &key), RT_ERR_FORMAT);
    assert_int_equal(rt_ckpt_dir_parse("/x/my-checkpoint", &key), RT_ERR_FORMAT);
    /* epoch 3's start, two checkpoints within epoch 3, epoch 4's start (incomplete) */
    const uint64_t keys[] = {RT_CKPT_KEY(3, 0), RT_CKPT_KEY(3, 1234), RT_CKPT_KEY(3, 1300),
                             RT_CKPT_KEY(4, 0)};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rt_ckpt_dir_key(dir, sizeof dir, root, keys[i]), 0);
        assert_int_equal(rt_ckpt_mkdirs(dir), 0);
        if (i < 3) {
            char f[4500];
            snprintf(f, sizeof f, "%s/data.bin", dir);
            assert_int_equal(rt_ckpt_write_file(f, "x", 1), 0);
            const char *files[] = {"data.bin"};
            assert_int_equal(rt_ckpt_manifest_write(dir, files, 1, NULL), 0);
        }
    }
    uint64_t eps[16], e = 99;
    int n = 0;
    assert_int_equal(rt_ckpt_list(root, eps, 16, &n), 0);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++)
        assert_true(eps[i] == keys[3 - i]);
    assert_int_equal(rt_ckpt_latest(root, got, sizeof got, &e), 0);
    assert_non_null(strstr(got, "epoch-000003-step-000000001300"));
    assert_int_equal(e, 3);
    assert_int_equal(rt_ckpt_remove_after(root, RT_CKPT_KEY(3, 1234)), 0);
    assert_int_equal(rt_ckpt_list(root, eps, 16, &n), 0);
    assert_int_equal(n, 2);
    assert_true(eps[0] == RT_CKPT_KEY(3, 1234) && eps[1] == RT_CKPT_KEY(3, 0));
}

/* The ABS state over the wire with a decision, and in the coordinator. */
static void test_abs_state_travels(void **state)
{
    (void)state;
    struct rt_wire_msg m, r;
    rt_wire_msg_init(&m, RT_WIRE_DECISION, -1, "eigensvc");
    m.decision.seq = 5;
    m.decision.epoch = 4;
    m.decision.batch = 20;
    m.decision.lr_base = 0.2;
    m.decision.has_abs = 1;
    m.decision.abs = s_abs;
    uint8_t buf[RT_WIRE_MAX_HEADER];
    size_t len = 0;
    assert_int_equal(rt_wire_encode(&m, buf, sizeof buf, &len), 0);
    const void *parts[1] = {buf};
    size_t sizes[1] = {len};
    struct rt_wire_limits lim = {0, 0, 0};
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &lim, &r, NULL, NULL), 0);
    assert_true(r.decision.has_abs);
    assert_memory_equal(&r.decision.abs, &s_abs, sizeof s_abs);
    /* the ABS query and its answer (the state in `held`) */
    rt_wire_msg_init(&m, RT_WIRE_ABS_QUERY, -1, "eigensvc");
    assert_int_equal(rt_wire_encode(&m, buf, sizeof buf, &len), 0);
    sizes[0] = len;
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &lim, &r, NULL, NULL), 0);
    assert_int_equal(r.type, RT_WIRE_ABS_QUERY);
    rt_wire_msg_init(&m, RT_WIRE_ACK, 0, "shard-0");
    m.has_held = 1;
    m.held.has_abs = 1;
    m.held.abs = s_abs;
    assert_int_equal(rt_wire_encode(&m, buf, sizeof buf, &len), 0);
    sizes[0] = len;
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &lim, &r, NULL, NULL), 0);
    assert_true(r.has_held && r.held.has_abs);
    assert_memory_equal(&r.held.abs, &s_abs, sizeof s_abs);

    /* the coordinator keeps the state of decisions it took or found unchanged */
    server_sched_t *sched = s_sched();
    struct server_coord_sched cs;
    server_coord_use_sched(&cs, sched);
    server_coord_t *c = server_coord_new(1, &cs);
    assert_non_null(c);
    struct rt_wire_abs a;
    assert_int_equal(server_coord_get_abs(c, &a), RT_ERR_STATE);
    struct rt_wire_decision d = {.seq = 2,
                                 .snapshot_version = 20,
                                 .epoch = 1,
                                 .batch = 40,
                                 .lr_base = 0.4,
                                 .has_abs = 1,
                                 .abs = s_abs};
    d.abs.last_epoch = 1;
    uint64_t apply, version;
    /* the schedule's decision was stamped at step 10: the coordinator has announced up to it */
    server_coord_resume(c, 11, NULL);
    assert_int_equal(server_coord_decide(c, &d, &apply, &version), SERVER_SCHED_ACCEPTED);
    assert_int_equal(apply, 11);
    assert_int_equal(server_coord_get_abs(c, &a), 0);
    assert_int_equal(a.last_epoch, 1);
    /* an older epoch's state does not replace a newer one */
    struct rt_wire_abs old = s_abs;
    old.last_epoch = 0;
    server_coord_set_abs(c, &old);
    assert_int_equal(server_coord_get_abs(c, &a), 0);
    assert_int_equal(a.last_epoch, 1);
    /* resuming: the checkpoint's state, and decisions stamped from the resumed step on */
    server_coord_resume(c, 50, &s_abs);
    assert_int_equal(server_coord_get_abs(c, &a), 0);
    assert_memory_equal(&a, &s_abs, sizeof a);
    assert_int_equal(server_coord_next_step(c), 50);
    server_coord_destroy(&c);
    server_sched_destroy(&sched);
}

static int s_setup(void **state)
{
    (void)state;
    s_tmp = eb_test_tmpdir();
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    eb_test_rmtree(s_tmp);
    free(s_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_finish_waits),
        cmocka_unit_test(test_atomicity),       cmocka_unit_test(test_prune),
        cmocka_unit_test(test_mid_epoch_names), cmocka_unit_test(test_abs_state_travels),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
