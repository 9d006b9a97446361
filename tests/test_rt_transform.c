/*
 * test_rt_transform: per-sample transforms on hand-made records: plain random crop of a larger
 * raw image, BGR to RGB swap, evaluation centre crop, shape checks naming the key, float_data
 * limits, reproducibility from the seed.
 */
#include "eb_test.h"

#include <math.h>
#include <string.h>

#include "rt_err.h"
#include "rt_rng.h"
#include "rt_transform.h"

static void s_spec(struct rt_transform_spec *sp, int c, int rh, int rw, int h, int w)
{
    memset(sp, 0, sizeof *sp);
    sp->channels = c;
    sp->rec_height = rh;
    sp->rec_width = rw;
    sp->height = h;
    sp->width = w;
    sp->rrc_scale[0] = 0.08f;
    sp->rrc_scale[1] = 1.0f;
    sp->rrc_ratio[0] = 0.75f;
    sp->rrc_ratio[1] = 4.0f / 3.0f;
    sp->eval_crop = 1.0f;
    for (int i = 0; i < 4; i++)
        sp->a[i] = 1.0f; /* output = pixel value, easy to compare */
}

static void test_random_crop_and_centre(void **state)
{
    (void)state;
    rt_transform_t *x = rt_transform_new();
    assert_non_null(x);
    uint8_t px[10 * 12];
    for (int i = 0; i < 120; i++)
        px[i] = (uint8_t)i;
    struct rt_datum d = {.kind = RT_DATUM_RAW,
                         .channels = 1,
                         .height = 10,
                         .width = 12,
                         .data = px,
                         .data_len = 120};
    struct rt_transform_spec sp;
    s_spec(&sp, 1, 10, 12, 6, 8);
    float out[48];
    int origins[2] = {0, 0};
    for (uint64_t k = 0; k < 50; k++) {
        assert_int_equal(rt_transform_apply(x, &sp, &d, "k", k, true, out), 0);
        int oy = (int)out[0] / 12, ox = (int)out[0] % 12; /* window origin from its first pixel */
        assert_true(oy <= 4 && ox <= 4);
        for (int y = 0; y < 6; y++)
            for (int xx = 0; xx < 8; xx++)
                assert_true(out[y * 8 + xx] == (float)((oy + y) * 12 + ox + xx));
        origins[oy == 0 && ox == 0 ? 0 : 1]++;
    }
    assert_true(origins[1] > 30);
    /* evaluation: the centre box of aspect 8:6 covering the image, resized (12x9 box -> 8x6) */
    assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 0, false, out), 0);
    float again[48];
    assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 99, false, again), 0);
    assert_memory_equal(out, again, sizeof out); /* no randomness in evaluation */
    /* the same seed reproduces a training sample */
    sp.rrc = true;
    sp.flip = true;
    assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 1234, true, out), 0);
    assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 1234, true, again), 0);
    assert_memory_equal(out, again, sizeof out);
    rt_transform_destroy(&x);
    rt_transform_destroy(&x);
}

static void test_bgr_and_shape_errors(void **state)
{
    (void)state;
    rt_transform_t *x = rt_transform_new();
    uint8_t px[3 * 2 * 2] = {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}; /* planes B=1, G=2, R=3 */
    struct rt_datum d = {
        .kind = RT_DATUM_RAW, .channels = 3, .height = 2, .width = 2, .data = px, .data_len = 12};
    struct rt_transform_spec sp;
    s_spec(&sp, 3, 2, 2, 2, 2);
    float out[12];
    assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 0, false, out), 0);
    assert_true(out[0] == 1.0f && out[8] == 3.0f);
    sp.raw_bgr = true;
    assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 0, false, out), 0);
    assert_true(out[0] == 3.0f && out[4] == 2.0f && out[8] == 1.0f);
    s_spec(&sp, 3, 2, 3, 2, 3);
    assert_int_equal(rt_transform_apply(x, &sp, &d, "00000009_odd.png", 0, false, out),
                     RT_ERR_SHAPE);
    assert_non_null(strstr(rt_err_msg(), "00000009_odd.png"));
    /* float records are not resized */
    float fv[4] = {0.5f, 1, 2, 3};
    struct rt_datum f = {.kind = RT_DATUM_FLOAT,
                         .channels = 1,
                         .height = 2,
                         .width = 2,
                         .float_data = fv,
                         .float_len = 4};
    s_spec(&sp, 1, 2, 2, 4, 4);
    assert_int_equal(rt_transform_apply(x, &sp, &f, "fk", 0, false, out), RT_ERR_UNSUPPORTED);
    assert_non_null(strstr(rt_err_msg(), "fk"));
    s_spec(&sp, 1, 2, 2, 2, 2);
    sp.flip = true;
    int flipped = 0;
    for (uint64_t k = 0; k < 40; k++) {
        assert_int_equal(rt_transform_apply(x, &sp, &f, "fk", k, true, out), 0);
        assert_true((out[0] == 0.5f && out[1] == 1) || (out[0] == 1 && out[1] == 0.5f));
        flipped += out[0] == 1;
    }
    assert_true(flipped > 5 && flipped < 35);
    rt_transform_destroy(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_crop_and_centre),
        cmocka_unit_test(test_bgr_and_shape_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
