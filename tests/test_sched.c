/*
 * test_sched: the schedule mechanism (server_sched) on hand-computed tables: BL, FB, GG, ABS and
 * ABSA with stamped decisions, the verdicts (duplicate, superseded, stale, no change), participant
 * insertion out of order, state copy and its byte form (including malformed bytes).
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "server_sched.h"

/* One expected row of a schedule table. */
struct row {
    int64_t step;    /* step asked */
    int32_t epoch;   /* expected epoch */
    int64_t offset;  /* expected first sample */
    int64_t samples; /* expected samples */
    int64_t batch;   /* expected nominal batch */
    double lr;       /* expected learning rate */
    double gamma;    /* expected adversarial fraction */
};

static void s_check_rows(const server_sched_t *s, const struct row *rows, int n)
{
    for (int i = 0; i < n; i++) {
        struct server_sched_point p;
        assert_int_equal(server_sched_at(s, rows[i].step, -1, &p), RT_OK);
        if (p.epoch != rows[i].epoch || p.offset != rows[i].offset ||
            p.samples != rows[i].samples || p.batch != rows[i].batch ||
            fabs(p.lr - rows[i].lr) > 1e-12 * fabs(rows[i].lr) + 1e-15 ||
            fabs(p.gamma - rows[i].gamma) > 1e-12) {
            print_error("step %lld: got e%d off %lld n %lld B %lld lr %.17g g %g; want e%d off "
                        "%lld n %lld B %lld lr %.17g g %g\n",
                        (long long)rows[i].step, p.epoch, (long long)p.offset, (long long)p.samples,
                        (long long)p.batch, p.lr, p.gamma, rows[i].epoch, (long long)rows[i].offset,
                        (long long)rows[i].samples, (long long)rows[i].batch, rows[i].lr,
                        rows[i].gamma);
            fail();
        }
        assert_int_equal(p.done, 0);
    }
}

static void s_check_done(const server_sched_t *s, int64_t step, int32_t epochs)
{
    struct server_sched_point p;
    assert_int_equal(server_sched_at(s, step, -1, &p), RT_OK);
    assert_int_equal(p.done, 1);
    assert_int_equal(p.epoch, epochs);
    assert_int_equal(server_sched_at(s, step - 1, -1, &p), RT_OK);
    assert_int_equal(p.done, 0);
}

static void test_steps_per_epoch(void **state)
{
    (void)state;
    assert_int_equal(server_sched_steps_per_epoch(1000, 128, 0), 8);
    assert_int_equal(server_sched_steps_per_epoch(1000, 128, 1), 7);
    assert_int_equal(server_sched_steps_per_epoch(1024, 128, 0), 8);
    assert_int_equal(server_sched_steps_per_epoch(1024, 128, 1), 8);
    assert_int_equal(server_sched_steps_per_epoch(100, 128, 0), 1);
    assert_int_equal(server_sched_steps_per_epoch(100, 128, 1), 0);
    assert_int_equal(server_sched_steps_per_epoch(0, 128, 0), 0);
    assert_int_equal(server_sched_steps_per_epoch(10, 0, 0), 0);
}

/* BL: N = 1000, B = 128 (8 steps, the last one partial: 104 samples), decay at 2 and 3 by 0.1. */
static void test_bl_partial_last_batch(void **state)
{
    (void)state;
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_BL, 1000, 4);
    c.n_decay = 2;
    c.decay_epochs[0] = 2;
    c.decay_epochs[1] = 3;
    c.rho = 0.1;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    const struct row rows[] = {
        {0, 0, 0, 128, 128, 0.1, 0},    {1, 0, 128, 128, 128, 0.1, 0},
        {7, 0, 896, 104, 128, 0.1, 0},  {8, 1, 0, 128, 128, 0.1, 0},
        {15, 1, 896, 104, 128, 0.1, 0}, {16, 2, 0, 128, 128, 0.01, 0},
        {24, 3, 0, 128, 128, 0.001, 0}, {31, 3, 896, 104, 128, 0.001, 0},
    };
    s_check_rows(s, rows, (int)(sizeof rows / sizeof rows[0]));
    s_check_done(s, 32, 4);
    struct server_sched_point p;
    assert_int_equal(server_sched_at(s, 9, -1, &p), RT_OK);
    assert_int_equal(p.step_in_epoch, 1);
    assert_int_equal(p.version, 0);
    assert_true(p.momentum == 0.9 && p.weight_decay == 5e-4);
    assert_int_equal(server_sched_at(s, -1, -1, &p), RT_ERR_ARG);
    assert_int_equal(server_sched_epoch_start(s, 2, &p), RT_OK);
    assert_int_equal(p.step, 16);
    assert_int_equal(p.offset, 0);
    assert_true(fabs(p.lr - 0.01) < 1e-15);
    assert_int_equal(server_sched_epoch_start(s, 4, &p), RT_OK); /* the run's step count */
    assert_int_equal(p.done, 1);
    assert_int_equal(p.step, 32);
    assert_int_equal(server_sched_epoch_start(s, 5, &p), RT_ERR_ARG);
    assert_int_equal(server_sched_epoch_start(s, -1, &p), RT_ERR_ARG);
    server_sched_destroy(&s);
    assert_null(s);
    server_sched_destroy(&s);
}

/* BL with drop_last: 7 full steps per epoch, the remaining 104 samples skipped. */
static void test_bl_drop_last(void **state)
{
    (void)state;
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_BL, 1000, 3);
    c.drop_last = 1;
    c.batch_max = 128;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    const struct row rows[] = {
        {6, 0, 768, 128, 128, 0.1, 0},
        {7, 1, 0, 128, 128, 0.1, 0},
        {20, 2, 768, 128, 128, 0.1, 0},
    };
    s_check_rows(s, rows, 3);
    s_check_done(s, 21, 3);
    server_sched_destroy(&s);
}

/* FB: B = 500 at base 100, lr 0.1 -> 0.5 over 2 warm-up epochs (per step), decay 0.5 at epoch 3. */
static void test_fb_warmup_and_cap(void **state)
{
    (void)state;
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_FB, 1000, 4);
    c.batch = 500;
    c.base_batch = 100;
    c.warmup_epochs = 2;
    c.n_decay = 1;
    c.decay_epochs[0] = 3;
    c.rho = 0.5;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    const struct row rows[] = {
        {0, 0, 0, 500, 500, 0.1, 0},   {1, 0, 500, 500, 500, 0.2, 0}, {2, 1, 0, 500, 500, 0.3, 0},
        {3, 1, 500, 500, 500, 0.4, 0}, {4, 2, 0, 500, 500, 0.5, 0},   {5, 2, 500, 500, 500, 0.5, 0},
        {6, 3, 0, 500, 500, 0.25, 0},
    };
    s_check_rows(s, rows, 7);
    s_check_done(s, 8, 4);
    server_sched_destroy(&s);

    c.lr_cap = 0.35; /* the cap bounds the base lr; the decay multiplies the capped value */
    s = server_sched_new(&c);
    assert_non_null(s);
    const struct row capped[] = {
        {2, 1, 0, 500, 500, 0.3, 0},
        {3, 1, 500, 500, 500, 0.35, 0},
        {4, 2, 0, 500, 500, 0.35, 0},
        {7, 3, 500, 500, 500, 0.175, 0},
    };
    s_check_rows(s, capped, 4);
    server_sched_destroy(&s);
}

/* GG: N = 1000, B 100 -> 200 -> 400 -> 800 at epochs 1..3; at 4, 1600 > B_max 1000: B = 1000 and
 * lr *= 0.5 * 1000 / 800; at 5 (B at max) plain decay lr *= 0.5. */
static void test_gg_growth_and_bmax(void **state)
{
    (void)state;
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_GG, 1000, 7);
    c.batch = 100;
    c.base_batch = 100;
    c.batch_max = 1000;
    c.rho = 0.5;
    c.n_decay = 5;
    for (int i = 0; i < 5; i++)
        c.decay_epochs[i] = i + 1;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    const struct row rows[] = {
        {0, 0, 0, 100, 100, 0.1, 0},        {9, 0, 900, 100, 100, 0.1, 0},
        {10, 1, 0, 200, 200, 0.1, 0},       {14, 1, 800, 200, 200, 0.1, 0},
        {15, 2, 0, 400, 400, 0.1, 0},       {17, 2, 800, 200, 400, 0.1, 0},
        {18, 3, 0, 800, 800, 0.1, 0},       {19, 3, 800, 200, 800, 0.1, 0},
        {20, 4, 0, 1000, 1000, 0.0625, 0},  {21, 5, 0, 1000, 1000, 0.03125, 0},
        {22, 6, 0, 1000, 1000, 0.03125, 0},
    };
    s_check_rows(s, rows, (int)(sizeof rows / sizeof rows[0]));
    s_check_done(s, 23, 7);
    struct server_sched_point p;
    assert_int_equal(server_sched_epoch_start(s, 4, &p), RT_OK);
    assert_int_equal(p.step, 20);
    assert_int_equal(p.batch, 1000);
    assert_int_equal(server_sched_epoch_start(s, 7, &p), RT_OK);
    assert_int_equal(p.step, 23);
    server_sched_destroy(&s);
}

static struct server_sched_decision s_dec(uint64_t seq, uint64_t snap, int32_t epoch, int64_t b,
                                          double lr, double gamma)
{
    struct server_sched_decision d;
    memset(&d, 0, sizeof d);
    d.seq = seq;
    d.snapshot_version = snap;
    d.epoch = epoch;
    d.batch = b;
    d.lr_base = lr;
    d.gamma_base = gamma;
    d.lambda = NAN;
    return d;
}

static struct server_sched_config s_abs_config(enum server_sched_method m)
{
    struct server_sched_config c;
    server_sched_config_default(&c, m, 1000, 6);
    c.batch = 100;
    c.base_batch = 100;
    c.batch_max = 800;
    c.n_decay = 1;
    c.decay_epochs[0] = 4;
    c.rho = 0.1;
    return c;
}

/* ABS: decisions stamped at the next step, one of them in the middle of an epoch. */
static void test_abs_decisions_table(void **state)
{
    (void)state;
    struct server_sched_config c = s_abs_config(SERVER_SCHED_ABS);
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    struct server_sched_decision d1 = s_dec(1, 10, 0, 200, 0.2, 0), st;
    assert_int_equal(server_sched_accept(s, &d1, 10, &st), SERVER_SCHED_ACCEPTED);
    assert_int_equal(st.apply_step, 10);
    assert_int_equal(st.version, 1);
    struct server_sched_decision d2 = s_dec(2, 12, 1, 400, 0.4, 0);
    assert_int_equal(server_sched_accept(s, &d2, 12, &st), SERVER_SCHED_ACCEPTED);
    assert_int_equal(st.apply_step, 12);
    assert_int_equal(st.version, 2);
    assert_int_equal(server_sched_version(s), 2);
    const struct row rows[] = {
        {9, 0, 900, 100, 100, 0.1, 0},   {10, 1, 0, 200, 200, 0.2, 0},
        {11, 1, 200, 200, 200, 0.2, 0},  {12, 1, 400, 400, 400, 0.4, 0},
        {13, 1, 800, 200, 400, 0.4, 0},  {14, 2, 0, 400, 400, 0.4, 0},
        {17, 3, 0, 400, 400, 0.4, 0},    {20, 4, 0, 400, 400, 0.04, 0},
        {25, 5, 800, 200, 400, 0.04, 0},
    };
    s_check_rows(s, rows, (int)(sizeof rows / sizeof rows[0]));
    s_check_done(s, 26, 6);
    struct server_sched_point e;
    assert_int_equal(server_sched_epoch_start(s, 2, &e), RT_OK);
    assert_int_equal(e.step, 14);
    assert_int_equal(e.batch, 400);
    assert_int_equal(e.version, 2);
    assert_int_equal(server_sched_epoch_start(s, 6, &e), RT_OK);
    assert_int_equal(e.step, 26);

    struct server_sched_point p;
    assert_int_equal(server_sched_at(s, 11, 1, &p), RT_OK);
    assert_int_equal(p.version, 1);
    assert_int_equal(server_sched_at(s, 12, 2, &p), RT_OK);
    assert_int_equal(p.version, 2);
    assert_int_equal(p.step_in_epoch, 2);
    /* announcements that disagree with the list held */
    assert_int_equal(server_sched_at(s, 11, 2, &p), RT_ERR_STATE);
    assert_int_equal(server_sched_at(s, 12, 1, &p), RT_ERR_STATE);
    assert_int_equal(server_sched_at(s, 12, 3, &p), RT_ERR_STATE);
    assert_non_null(strstr(rt_err_msg(), "version 3"));
    server_sched_destroy(&s);
}

static void test_abs_verdicts(void **state)
{
    (void)state;
    struct server_sched_config c = s_abs_config(SERVER_SCHED_ABS);
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    struct server_sched_decision d1 = s_dec(5, 10, 0, 200, 0.2, 0), d;
    assert_int_equal(server_sched_accept(s, &d1, 10, NULL), SERVER_SCHED_ACCEPTED);
    /* idempotent: the same decision again changes nothing */
    assert_int_equal(server_sched_accept(s, &d1, 11, NULL), SERVER_SCHED_DUPLICATE);
    assert_int_equal(server_sched_version(s), 1);
    /* older sequence number than one seen: superseded */
    d = s_dec(4, 9, 0, 400, 0.4, 0);
    assert_int_equal(server_sched_accept(s, &d, 11, NULL), SERVER_SCHED_SUPERSEDED);
    /* computed on the snapshot before the increase (version 9 < step 10): stale */
    d = s_dec(6, 9, 0, 400, 0.4, 0);
    assert_int_equal(server_sched_accept(s, &d, 11, NULL), SERVER_SCHED_STALE);
    /* at the increase's step it is not stale; same values: no change, no new version */
    d = s_dec(7, 10, 1, 200, 0.2, 0);
    assert_int_equal(server_sched_accept(s, &d, 12, NULL), SERVER_SCHED_NOCHANGE);
    assert_int_equal(server_sched_version(s), 1);
    assert_int_equal(server_sched_accept(s, &d, 12, NULL), SERVER_SCHED_DUPLICATE);
    /* malformed decisions are errors naming the value */
    d = s_dec(8, 20, 1, 100, 0.1, 0);
    assert_int_equal(server_sched_accept(s, &d, 20, NULL), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "batch 100 below"));
    /* bounds from the configuration: the rule never raises the lr beyond the configured one
     * scaled with the batch (a rogue decision), nor goes below the batch in force */
    d = s_dec(8, 20, 1, 400, 1e30, 0);
    assert_int_equal(server_sched_accept(s, &d, 20, NULL), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "lr 1e+30 above"));
    d = s_dec(8, 20, 1, 400, 0.4 * (1 + 1e-3), 0);
    assert_int_equal(server_sched_accept(s, &d, 20, NULL), RT_ERR_FORMAT);
    d = s_dec(8, 20, 1, 50, 0.05, 0);
    assert_int_equal(server_sched_accept(s, &d, 20, NULL), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "batch 50 below"));
    assert_int_equal(server_sched_version(s), 1);
    d = s_dec(8, 20, 1, 1600, 0.2, 0);
    assert_int_equal(server_sched_accept(s, &d, 20, NULL), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "1600"));
    d = s_dec(8, 20, 1, 400, NAN, 0);
    assert_int_equal(server_sched_accept(s, &d, 20, NULL), RT_ERR_FORMAT);
    d = s_dec(8, 20, 1, 400, 0.4, 0.1); /* gamma under ABS */
    assert_int_equal(server_sched_accept(s, &d, 20, NULL), RT_ERR_FORMAT);
    /* next_step must not go back */
    d = s_dec(8, 20, 1, 400, 0.4, 0);
    assert_int_equal(server_sched_accept(s, &d, 5, NULL), RT_ERR_STATE);
    assert_int_equal(server_sched_accept(s, &d, 20, NULL), SERVER_SCHED_ACCEPTED);
    assert_string_equal(server_sched_verdict_str(SERVER_SCHED_STALE),
                        "stale: snapshot older than the last batch increase");
    server_sched_destroy(&s);

    /* methods without decisions refuse them */
    struct server_sched_config bl;
    server_sched_config_default(&bl, SERVER_SCHED_BL, 1000, 3);
    s = server_sched_new(&bl);
    assert_non_null(s);
    assert_int_equal(server_sched_accept(s, &d1, 0, NULL), RT_ERR_STATE);
    assert_non_null(strstr(rt_err_msg(), "BL"));
    server_sched_destroy(&s);
}

/* APPLY_NEXT_EPOCH: a decision seen mid-epoch is stamped at the next epoch's first step. */
static void test_apply_next_epoch(void **state)
{
    (void)state;
    struct server_sched_config c = s_abs_config(SERVER_SCHED_ABS);
    c.apply = SERVER_SCHED_APPLY_NEXT_EPOCH;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    struct server_sched_decision d = s_dec(1, 10, 0, 200, 0.2, 0), st;
    assert_int_equal(server_sched_accept(s, &d, 12, &st), SERVER_SCHED_ACCEPTED);
    assert_int_equal(st.apply_step, 20); /* epoch 1 = steps 10..19 at B = 100 */
    /* a decision computed before that increase takes effect is stale */
    d = s_dec(2, 10, 1, 400, 0.4, 0);
    assert_int_equal(server_sched_accept(s, &d, 15, &st), SERVER_SCHED_STALE);
    struct server_sched_point p;
    assert_int_equal(server_sched_at(s, 19, -1, &p), RT_OK);
    assert_int_equal(p.batch, 100);
    assert_int_equal(p.version, 0);
    assert_int_equal(server_sched_at(s, 20, -1, &p), RT_OK);
    assert_int_equal(p.batch, 200);
    assert_int_equal(p.version, 1);
    assert_int_equal(p.epoch, 2);
    /* epoch 2 = steps 20..24 at B = 200: seen at 23, applied at 25 */
    d = s_dec(3, 20, 2, 400, 0.4, 0);
    assert_int_equal(server_sched_accept(s, &d, 23, &st), SERVER_SCHED_ACCEPTED);
    assert_int_equal(st.apply_step, 25);
    /* at an epoch's first step the decision applies right there (epoch 3 = 25..27 at 400) */
    d = s_dec(4, 25, 3, 800, 0.8, 0);
    assert_int_equal(server_sched_accept(s, &d, 28, &st), SERVER_SCHED_ACCEPTED);
    assert_int_equal(st.apply_step, 28);
    assert_int_equal(server_sched_at(s, 28, 3, &p), RT_OK);
    assert_int_equal(p.epoch, 4);
    assert_int_equal(p.batch, 800);
    server_sched_destroy(&s);
}

/* apply_lead: the stamp leaves time for the decision to reach every participant. */
static void test_apply_lead(void **state)
{
    (void)state;
    struct server_sched_config c = s_abs_config(SERVER_SCHED_ABS);
    c.apply_lead = 4;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    struct server_sched_decision d = s_dec(1, 10, 0, 200, 0.2, 0), st;
    assert_int_equal(server_sched_accept(s, &d, 11, &st), SERVER_SCHED_ACCEPTED);
    assert_int_equal(st.apply_step, 15);
    server_sched_destroy(&s);

    c.apply = SERVER_SCHED_APPLY_NEXT_EPOCH;
    c.apply_lead = 1;
    s = server_sched_new(&c);
    assert_non_null(s);
    /* seen at step 9 (epoch 0's last); 9 + 1 = 10 starts epoch 1 */
    assert_int_equal(server_sched_accept(s, &d, 9, &st), SERVER_SCHED_ACCEPTED);
    assert_int_equal(st.apply_step, 10);
    /* seen at 20 (epoch 3 = 20..24 at 200): 21 is inside it, so the next epoch start, 25 */
    d = s_dec(2, 20, 1, 400, 0.4, 0);
    assert_int_equal(server_sched_accept(s, &d, 20, &st), SERVER_SCHED_ACCEPTED);
    assert_int_equal(st.apply_step, 25);
    server_sched_destroy(&s);

    c.apply_lead = -1;
    assert_int_equal(server_sched_config_check(&c), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "apply_lead"));
}

/* ABSA: gamma from the decisions, 0 from tau on and at B_max. */
static void test_absa_gamma(void **state)
{
    (void)state;
    struct server_sched_config c = s_abs_config(SERVER_SCHED_ABSA);
    c.tau = 3;
    c.gamma0 = 0.2;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    struct server_sched_decision d = s_dec(1, 10, 0, 200, 0.2, 0.1);
    assert_int_equal(server_sched_accept(s, &d, 10, NULL), SERVER_SCHED_ACCEPTED);
    const struct row rows[] = {
        {0, 0, 0, 100, 100, 0.1, 0.2},
        {10, 1, 0, 200, 200, 0.2, 0.1},
        {15, 2, 0, 200, 200, 0.2, 0.1},
        {20, 3, 0, 200, 200, 0.2, 0.0}, /* tau */
    };
    s_check_rows(s, rows, 4);
    server_sched_destroy(&s);

    c.tau = 6;
    s = server_sched_new(&c);
    assert_non_null(s);
    d = s_dec(1, 10, 0, 800, 0.8, 0.05); /* B_max: gamma 0 whatever the decision says */
    assert_int_equal(server_sched_accept(s, &d, 10, NULL), SERVER_SCHED_ACCEPTED);
    const struct row at_max[] = {{9, 0, 900, 100, 100, 0.1, 0.2}, {10, 1, 0, 800, 800, 0.8, 0.0}};
    s_check_rows(s, at_max, 2);
    server_sched_destroy(&s);
}

/* Participants: stamped decisions out of order, duplicated, contradicting. */
static void test_insert_out_of_order(void **state)
{
    (void)state;
    struct server_sched_config c = s_abs_config(SERVER_SCHED_ABS);
    server_sched_t *coord = server_sched_new(&c), *part = server_sched_new(&c);
    assert_non_null(coord);
    assert_non_null(part);
    struct server_sched_decision st[3];
    struct server_sched_decision d = s_dec(1, 10, 0, 200, 0.2, 0);
    assert_int_equal(server_sched_accept(coord, &d, 10, &st[0]), SERVER_SCHED_ACCEPTED);
    d = s_dec(2, 15, 1, 400, 0.4, 0);
    assert_int_equal(server_sched_accept(coord, &d, 15, &st[1]), SERVER_SCHED_ACCEPTED);
    d = s_dec(3, 20, 2, 800, 0.8, 0);
    assert_int_equal(server_sched_accept(coord, &d, 21, &st[2]), SERVER_SCHED_ACCEPTED);

    assert_int_equal(server_sched_insert(part, &st[2]), SERVER_SCHED_PENDING);
    assert_int_equal(server_sched_version(part), 0);
    struct server_sched_point p;
    assert_int_equal(server_sched_at(part, 16, 2, &p), RT_ERR_STATE); /* must catch up */
    assert_int_equal(server_sched_insert(part, &st[0]), SERVER_SCHED_ACCEPTED);
    assert_int_equal(server_sched_insert(part, &st[0]), SERVER_SCHED_DUPLICATE);
    assert_int_equal(server_sched_version(part), 1);
    assert_int_equal(server_sched_insert(part, &st[1]), SERVER_SCHED_ACCEPTED);
    assert_int_equal(server_sched_version(part), 3); /* the pending one joined */
    for (int64_t t = 0; t < 40; t++) {
        struct server_sched_point a, b;
        assert_int_equal(server_sched_at(coord, t, -1, &a), RT_OK);
        assert_int_equal(server_sched_at(part, t, a.version, &b), RT_OK);
        assert_memory_equal(&a, &b, sizeof a);
    }
    /* same version, other contents: refused, nothing changes */
    struct server_sched_decision bad = st[1];
    bad.batch = 300;
    bad.lr_base = st[1].lr_base * 300.0 / (double)st[1].batch; /* within the lr bound */
    assert_int_equal(server_sched_insert(part, &bad), RT_ERR_STATE);
    /* going back in steps or batches relative to a neighbour: refused */
    server_sched_t *p2 = server_sched_new(&c);
    assert_non_null(p2);
    assert_int_equal(server_sched_insert(p2, &st[1]), SERVER_SCHED_PENDING);
    bad = st[0];
    bad.apply_step = 16;
    assert_int_equal(server_sched_insert(p2, &bad), RT_ERR_STATE);
    bad = st[0];
    bad.version = 0;
    assert_int_equal(server_sched_insert(p2, &bad), RT_ERR_FORMAT);
    bad.version = 1;
    bad.batch = 50; /* below the initial batch (the lr scaled with it: within its bound) */
    bad.lr_base = 0.05;
    assert_int_equal(server_sched_insert(p2, &bad), RT_ERR_STATE);
    server_sched_destroy(&p2);
    server_sched_destroy(&part);
    server_sched_destroy(&coord);
}

static void s_assert_same_schedule(const server_sched_t *a, const server_sched_t *b, int64_t steps)
{
    for (int64_t t = 0; t < steps; t++) {
        struct server_sched_point x, y;
        assert_int_equal(server_sched_at(a, t, -1, &x), RT_OK);
        assert_int_equal(server_sched_at(b, t, -1, &y), RT_OK);
        assert_memory_equal(&x, &y, sizeof x);
    }
}

static void test_state_roundtrip(void **state)
{
    (void)state;
    struct server_sched_config c = s_abs_config(SERVER_SCHED_ABSA);
    c.lr_cap = 0.5;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    struct server_sched_decision d = s_dec(1, 10, 0, 200, 0.2, 0.1);
    d.lambda = 3.5;
    assert_int_equal(server_sched_accept(s, &d, 10, NULL), SERVER_SCHED_ACCEPTED);
    d = s_dec(2, 17, 1, 400, 0.4, 0.05);
    assert_int_equal(server_sched_accept(s, &d, 18, NULL), SERVER_SCHED_ACCEPTED);

    struct server_sched_state *st = calloc(1, sizeof *st), *back = calloc(1, sizeof *back);
    assert_non_null(st);
    assert_non_null(back);
    server_sched_get_state(s, st);
    assert_int_equal(st->n_decisions, 2);

    /* plain struct copy to a late joiner configured differently */
    struct server_sched_config other;
    server_sched_config_default(&other, SERVER_SCHED_BL, 50, 1);
    server_sched_t *late = server_sched_new(&other);
    assert_non_null(late);
    assert_int_equal(server_sched_set_state(late, st), RT_OK);
    s_assert_same_schedule(s, late, 40);
    /* the late joiner knows the sequence numbers seen: a replay is a duplicate */
    assert_int_equal(server_sched_accept(late, &d, 30, NULL), SERVER_SCHED_DUPLICATE);

    /* byte form */
    size_t cap = server_sched_state_encoded_size(st), len = 0;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    assert_int_equal(server_sched_state_encode(st, buf, cap - 1, &len), RT_ERR_SIZE);
    assert_int_equal(server_sched_state_encode(st, buf, cap, &len), RT_OK);
    assert_int_equal(len, cap);
    assert_int_equal(server_sched_state_decode(buf, len, back), RT_OK);
    server_sched_t *restored = server_sched_new(&other);
    assert_non_null(restored);
    assert_int_equal(server_sched_set_state(restored, back), RT_OK);
    s_assert_same_schedule(s, restored, 40);

    /* malformed bytes: each is an error code, never a crash */
    for (size_t cut = 0; cut < len; cut += 7)
        assert_int_equal(server_sched_state_decode(buf, cut, back), RT_ERR_TRUNCATED);
    buf[0] ^= 0xff;
    assert_int_equal(server_sched_state_decode(buf, len, back), RT_ERR_FORMAT);
    buf[0] ^= 0xff;
    buf[4] = 9;
    assert_int_equal(server_sched_state_decode(buf, len, back), RT_ERR_VERSION);
    buf[4] = 1;
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(server_sched_state_decode(longer, len + 1, back), RT_ERR_SIZE);
    free(longer);
    /* random single-byte corruption: decoding either succeeds on a valid state or fails cleanly */
    srand(7);
    for (int i = 0; i < 2000; i++) {
        size_t at = (size_t)rand() % len;
        uint8_t save = buf[at];
        buf[at] = (uint8_t)rand();
        int rc = server_sched_state_decode(buf, len, back);
        assert_true(rc == RT_OK || rc < 0);
        if (rc == RT_OK)
            assert_int_equal(server_sched_set_state(restored, back), RT_OK);
        buf[at] = save;
    }
    /* decisions out of order in a state: refused, schedule unchanged */
    server_sched_get_state(s, st);
    st->decisions[1].apply_step = 3;
    assert_int_equal(server_sched_set_state(late, st), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "out of order"));
    st->decisions[1].apply_step = 18;
    st->format = 2;
    assert_int_equal(server_sched_set_state(late, st), RT_ERR_VERSION);
    s_assert_same_schedule(s, late, 40);

    free(buf);
    free(st);
    free(back);
    server_sched_destroy(&restored);
    server_sched_destroy(&late);
    server_sched_destroy(&s);
}

static void test_config_errors_name_field(void **state)
{
    (void)state;
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_BL, 1000, 10);
    assert_int_equal(server_sched_config_check(&c), RT_OK);
    struct server_sched_config b = c;
    b.dataset_size = 0;
    assert_int_equal(server_sched_config_check(&b), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "dataset_size"));
    b = c;
    b.batch_max = 64;
    assert_null(server_sched_new(&b));
    assert_non_null(strstr(rt_err_msg(), "batch_max"));
    b = c;
    b.n_decay = 2;
    b.decay_epochs[0] = 5;
    b.decay_epochs[1] = 5;
    assert_int_equal(server_sched_config_check(&b), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "decay epochs must increase"));
    b.decay_epochs[1] = 10;
    assert_int_equal(server_sched_config_check(&b), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "decay epoch 10"));
    b = c;
    b.rho = 0.0;
    assert_int_equal(server_sched_config_check(&b), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "rho"));
    b = c;
    b.momentum = 1.0;
    assert_int_equal(server_sched_config_check(&b), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "momentum"));
    b = c;
    b.drop_last = 1; /* batch_max 16384 > 1000 samples */
    assert_int_equal(server_sched_config_check(&b), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "drop_last"));
    b = c;
    b.lr = NAN;
    assert_int_equal(server_sched_config_check(&b), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "lr"));

    enum server_sched_method m;
    assert_int_equal(server_sched_method_parse("absa", &m), RT_OK);
    assert_int_equal(m, SERVER_SCHED_ABSA);
    assert_string_equal(server_sched_method_name(SERVER_SCHED_GG), "GG");
    assert_int_equal(server_sched_method_parse("SGD", &m), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "SGD"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_per_epoch),
        cmocka_unit_test(test_bl_partial_last_batch),
        cmocka_unit_test(test_bl_drop_last),
        cmocka_unit_test(test_fb_warmup_and_cap),
        cmocka_unit_test(test_gg_growth_and_bmax),
        cmocka_unit_test(test_abs_decisions_table),
        cmocka_unit_test(test_abs_verdicts),
        cmocka_unit_test(test_apply_next_epoch),
        cmocka_unit_test(test_apply_lead),
        cmocka_unit_test(test_absa_gamma),
        cmocka_unit_test(test_insert_out_of_order),
        cmocka_unit_test(test_state_roundtrip),
        cmocka_unit_test(test_config_errors_name_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
