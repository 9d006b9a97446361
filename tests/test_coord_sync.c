/*
 * test_coord_sync: the coordinator's side of the eigen service. Under the ABS schedule the last
 * step of each epoch is flagged (epoch_last, what shards use to snapshot the next epoch's start);
 * with `decisions: sync` the first step of epoch e >= 1 is refused (RT_ERR_STATE, the worker asks
 * again) until a decision for epoch e - 1 has arrived, whatever its verdict, so that an accepted
 * decision is stamped exactly at that step; without sync nothing is held. A stale or superseded
 * decision leaves the schedule unchanged, and server_coord_last_decision reports what it holds.
 */
#include <time.h>

#include "eb_test.h"

#include "rt_err.h"
#include "server_coord.h"
#include "server_sched.h"

#define N 40    /* samples per epoch */
#define BATCH 8 /* 5 steps per epoch */

static server_sched_t *s_sched(void)
{
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_ABS, N, 4);
    c.batch = BATCH;
    c.base_batch = BATCH;
    c.batch_max = 4 * BATCH;
    c.micro_batch = BATCH;
    c.lr = 0.1;
    server_sched_t *s = server_sched_new(&c);
    assert_non_null(s);
    return s;
}

static void test_sync_holds_epoch_start(void **state)
{
    (void)state;
    server_sched_t *sched = s_sched();
    struct server_coord_sched cs;
    server_coord_use_sched(&cs, sched);
    server_coord_t *c = server_coord_new(1, &cs);
    assert_non_null(c);
    server_coord_set_sync(c, 1, 0);
    assert_int_equal(server_coord_register(c, "w", 1.0), 0);
    struct server_coord_point pt;
    uint32_t off, cnt;
    struct rt_wire_decision held;
    assert_int_equal(server_coord_last_decision(c, &held), RT_ERR_STATE);
    for (uint64_t t = 0; t < 5; t++) {
        assert_int_equal(server_coord_step(c, 0, t, &pt, &off, &cnt), 0);
        assert_int_equal(pt.epoch, 0);
        assert_int_equal(pt.epoch_last, t == 4);
    }
    /* step 5 starts epoch 1: held until the decision of epoch 0 */
    assert_int_equal(server_coord_step(c, 0, 5, &pt, &off, &cnt), RT_ERR_STATE);
    assert_int_equal(server_coord_step(c, 0, 5, &pt, &off, &cnt), RT_ERR_STATE);
    assert_int_equal(server_coord_next_step(c), 5);
    struct rt_wire_decision d = {.seq = 1,
                                 .snapshot_version = 5,
                                 .epoch = 0,
                                 .batch = 2 * BATCH,
                                 .lr_base = 0.2,
                                 .gamma_base = 0,
                                 .lambda = 3.0};
    uint64_t apply = 0, version = 0;
    assert_int_equal(server_coord_decide(c, &d, &apply, &version), SERVER_SCHED_ACCEPTED);
    assert_int_equal(apply, 5); /* exactly the epoch start */
    assert_int_equal(version, 1);
    assert_int_equal(server_coord_step(c, 0, 5, &pt, &off, &cnt), 0);
    assert_int_equal(pt.epoch, 1);
    assert_int_equal(pt.batch, 2 * BATCH);
    assert_int_equal(cnt, 2 * BATCH);
    /* epoch 1 has 40 / 16 = 3 steps (the last partial): 5, 6, 7 */
    assert_int_equal(server_coord_step(c, 0, 6, &pt, &off, &cnt), 0);
    assert_false(pt.epoch_last);
    assert_int_equal(server_coord_step(c, 0, 7, &pt, &off, &cnt), 0);
    assert_true(pt.epoch_last);
    assert_int_equal(pt.samples, N - 2 * 2 * BATCH);
    assert_int_equal(server_coord_step(c, 0, 8, &pt, &off, &cnt), RT_ERR_STATE);
    /* a decision that changes nothing also releases the epoch start */
    d = (struct rt_wire_decision){.seq = 2,
                                  .snapshot_version = 8,
                                  .epoch = 1,
                                  .batch = 2 * BATCH,
                                  .lr_base = 0.2,
                                  .gamma_base = 0};
    assert_int_equal(server_coord_decide(c, &d, &apply, &version), SERVER_SCHED_NOCHANGE);
    assert_int_equal(server_coord_step(c, 0, 8, &pt, &off, &cnt), 0);
    assert_int_equal(pt.epoch, 2);
    /* a stale decision (computed before the increase) changes nothing; the held one is reported */
    d = (struct rt_wire_decision){.seq = 3,
                                  .snapshot_version = 2,
                                  .epoch = 1,
                                  .batch = 4 * BATCH,
                                  .lr_base = 0.4,
                                  .gamma_base = 0};
    assert_int_equal(server_coord_decide(c, &d, &apply, &version), SERVER_SCHED_STALE);
    assert_int_equal(server_coord_last_decision(c, &held), 0);
    assert_true(held.seq == 1 && held.batch == 2 * BATCH && held.apply_step == 5);
    assert_int_equal(held.sched_version, 1);
    assert_true(held.lambda == 3.0);
    server_coord_destroy(&c);
    server_sched_destroy(&sched);
}

static void test_async_holds_nothing(void **state)
{
    (void)state;
    server_sched_t *sched = s_sched();
    struct server_coord_sched cs;
    server_coord_use_sched(&cs, sched);
    server_coord_t *c = server_coord_new(1, &cs);
    assert_non_null(c);
    assert_int_equal(server_coord_register(c, "w", 1.0), 0);
    struct server_coord_point pt;
    uint32_t off, cnt;
    for (uint64_t t = 0; t < 8; t++)
        assert_int_equal(server_coord_step(c, 0, t, &pt, &off, &cnt), 0);
    assert_int_equal(pt.epoch, 1);
    /* a decision now applies from the next step nobody has asked about */
    struct rt_wire_decision d = {.seq = 1,
                                 .snapshot_version = 5,
                                 .epoch = 0,
                                 .batch = 2 * BATCH,
                                 .lr_base = 0.2,
                                 .gamma_base = 0,
                                 .lambda = 3.0};
    uint64_t apply = 0, version = 0;
    assert_int_equal(server_coord_decide(c, &d, &apply, &version), SERVER_SCHED_ACCEPTED);
    assert_int_equal(apply, 8);
    server_coord_destroy(&c);
    server_sched_destroy(&sched);
}

/* A dead eigen service: after the sync timeout the held epoch starts anyway, and the next epoch
 * start is held again (for a decision of its own). */
static void test_sync_hold_times_out(void **state)
{
    (void)state;
    server_sched_t *sched = s_sched();
    struct server_coord_sched cs;
    server_coord_use_sched(&cs, sched);
    server_coord_t *c = server_coord_new(1, &cs);
    assert_non_null(c);
    server_coord_set_sync(c, 1, 150);
    assert_int_equal(server_coord_register(c, "w", 1.0), 0);
    struct server_coord_point pt;
    uint32_t off, cnt;
    for (uint64_t t = 0; t < 5; t++)
        assert_int_equal(server_coord_step(c, 0, t, &pt, &off, &cnt), 0);
    assert_int_equal(server_coord_step(c, 0, 5, &pt, &off, &cnt), RT_ERR_STATE);
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(server_coord_step(c, 0, 5, &pt, &off, &cnt), RT_ERR_STATE); /* 50 ms < 150 */
    ts.tv_nsec = 150 * 1000000L;
    nanosleep(&ts, NULL);
    assert_int_equal(server_coord_step(c, 0, 5, &pt, &off, &cnt), 0);
    assert_int_equal(pt.epoch, 1);
    for (uint64_t t = 6; t < 10; t++)
        assert_int_equal(server_coord_step(c, 0, t, &pt, &off, &cnt), 0);
    assert_int_equal(server_coord_step(c, 0, 10, &pt, &off, &cnt), RT_ERR_STATE);
    server_coord_destroy(&c);
    server_sched_destroy(&sched);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_holds_epoch_start),
        cmocka_unit_test(test_async_holds_nothing),
        cmocka_unit_test(test_sync_hold_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
