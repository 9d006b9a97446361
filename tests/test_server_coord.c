/*
 * test_server_coord: the coordinator's membership and shares. Slots fill in registration order and
 * refuse extras; shares are proportional and cover the batch; a step's share table is frozen at
 * its first query, so a weight change in the middle of a step cannot make shares overlap; the
 * fixed schedule counts epochs and ends on time.
 */
#include "eb_test.h"

#include <unistd.h>

#include "rt_err.h"
#include "server_coord.h"
#include "server_fixsched.h"

static void test_membership_and_frozen_shares(void **state)
{
    (void)state;
    struct server_fixsched_cfg fc = {.batch = 100, .lr = 0.5f, .n_samples = 250, .steps = 10};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    server_coord_t *c = server_coord_new(2, &sched);
    assert_non_null(c);
    struct server_coord_point pt;
    uint32_t off, cnt;
    assert_int_equal(server_coord_register(c, "a", 1.0), 0);
    /* not everyone is here yet */
    assert_int_equal(server_coord_step(c, 0, 0, &pt, &off, &cnt), RT_ERR_STATE);
    assert_int_equal(server_coord_register(c, "b", 0.0), RT_ERR_ARG);
    assert_int_equal(server_coord_register(c, "b", 1.0), 1);
    assert_int_equal(server_coord_register(c, "c", 1.0), RT_ERR_STATE);
    assert_int_equal(server_coord_registered(c), 2);
    /* step 0: equal shares; worker 0 asks first, then the weights change, then worker 1 asks */
    assert_int_equal(server_coord_step(c, 0, 0, &pt, &off, &cnt), 0);
    assert_int_equal(off, 0);
    assert_int_equal(cnt, 50);
    assert_int_equal(server_coord_set_weight(c, 0, 3.0), 0);
    assert_int_equal(server_coord_step(c, 1, 0, &pt, &off, &cnt), 0);
    assert_int_equal(off, 50);
    assert_int_equal(cnt, 50);
    /* step 1 uses the new weights, whoever asks first */
    assert_int_equal(server_coord_step(c, 1, 1, &pt, &off, &cnt), 0);
    assert_int_equal(off, 75);
    assert_int_equal(cnt, 25);
    assert_int_equal(server_coord_step(c, 0, 1, &pt, &off, &cnt), 0);
    assert_int_equal(off, 0);
    assert_int_equal(cnt, 75);
    assert_int_equal(server_coord_set_weight(c, 5, 1.0), RT_ERR_ARG);
    /* the schedule: 2 steps per epoch (250 / 100), done at step 10 */
    assert_int_equal(server_coord_step(c, 0, 5, &pt, &off, &cnt), 0);
    assert_int_equal(pt.epoch, 2);
    assert_int_equal(pt.epoch_offset, 100);
    assert_true(pt.lr == 0.5f && pt.batch == 100 && !pt.done);
    assert_int_equal(server_coord_sched(c, 10, &pt), 0);
    assert_true(pt.done);
    server_coord_destroy(&c);
    server_coord_destroy(&c);
    server_fixsched_destroy(&sched);
}

/* checkpoint.every_minutes: once the time has passed, the next step announced for the first time
 * is marked for a checkpoint, and keeps its mark whoever asks again; until the time passes again,
 * no other step is marked; never an epoch's last step. */
static void test_time_marks_a_checkpoint_step(void **state)
{
    (void)state;
    struct server_fixsched_cfg fc = {.batch = 10, .lr = 0.5f, .n_samples = 30, .steps = 30};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    server_coord_t *c = server_coord_new(1, &sched);
    assert_non_null(c);
    struct server_coord_point pt;
    server_coord_set_ckpt_minutes(c, 0.5 / 60.0); /* every half second */
    assert_int_equal(server_coord_sched(c, 0, &pt), 0);
    assert_false(pt.checkpoint); /* not due yet */
    usleep(600000);
    assert_int_equal(server_coord_sched(c, 1, &pt), 0);
    assert_true(pt.checkpoint);
    assert_int_equal(server_coord_sched(c, 1, &pt), 0); /* asked again: the same answer */
    assert_true(pt.checkpoint);
    assert_int_equal(server_coord_sched(c, 0, &pt), 0);
    assert_false(pt.checkpoint);
    assert_int_equal(server_coord_sched(c, 3, &pt), 0);
    assert_false(pt.checkpoint); /* too soon after the last mark */
    usleep(600000);
    assert_int_equal(server_coord_sched(c, 5, &pt), 0); /* an epoch's last step (3 per epoch) */
    assert_true(pt.epoch_last);
    assert_false(pt.checkpoint);
    assert_int_equal(server_coord_sched(c, 6, &pt), 0);
    assert_true(pt.checkpoint);
    server_coord_destroy(&c);
    server_fixsched_destroy(&sched);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_membership_and_frozen_shares),
        cmocka_unit_test(test_time_marks_a_checkpoint_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
