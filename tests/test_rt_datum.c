/*
 * test_rt_datum: Datum records round-trip through pack/decode for raw, float and encoded kinds;
 * payloads that disagree with their shape and malformed bytes are errors naming the key.
 */
#include "eb_test.h"

#include <string.h>

#include "rt_datum.h"
#include "rt_err.h"

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t px[2 * 3 * 4], buf[256];
    for (int i = 0; i < 24; i++)
        px[i] = (uint8_t)(i * 10);
    float fl[6] = {0.5f, -1, 2, 3.25f, 4, 1e-3f};
    struct rt_datum in[3] = {
        {.kind = RT_DATUM_RAW,
         .channels = 2,
         .height = 3,
         .width = 4,
         .label = 9,
         .data = px,
         .data_len = 24},
        {.kind = RT_DATUM_FLOAT,
         .channels = 1,
         .height = 2,
         .width = 3,
         .label = -2,
         .float_data = fl,
         .float_len = 6},
        {.kind = RT_DATUM_ENCODED,
         .label = 3,
         .data = (const uint8_t *)"\xff\xd8jpeg",
         .data_len = 6},
    };
    for (int k = 0; k < 3; k++) {
        size_t len;
        assert_int_equal(rt_datum_pack(&in[k], buf, sizeof buf, &len), 0);
        assert_int_equal(len, rt_datum_packed_size(&in[k]));
        struct rt_datum d;
        assert_int_equal(rt_datum_decode(buf, len, "k", &d), 0);
        assert_int_equal(d.kind, in[k].kind);
        assert_int_equal(d.channels, in[k].channels);
        assert_int_equal(d.height, in[k].height);
        assert_int_equal(d.width, in[k].width);
        assert_int_equal(d.label, in[k].label);
        assert_int_equal(d.data_len, in[k].data_len);
        if (d.data_len)
            assert_memory_equal(d.data, in[k].data, d.data_len);
        assert_int_equal(d.float_len, in[k].float_len);
        if (d.float_len)
            assert_memory_equal(d.float_data, in[k].float_data, d.float_len * sizeof(float));
        rt_datum_release(&d);
        rt_datum_release(&d); /* safe twice */
        /* the same through a reused arena */
        static struct rt_datum_arena arena;
        for (int rep = 0; rep < 3; rep++) {
            assert_int_equal(rt_datum_decode_arena(buf, len, "k", &arena, &d), 0);
            assert_int_equal(d.label, in[k].label);
            assert_int_equal(d.float_len, in[k].float_len);
            if (d.data_len)
                assert_memory_equal(d.data, in[k].data, d.data_len);
            if (d.float_len)
                assert_memory_equal(d.float_data, in[k].float_data, d.float_len * sizeof(float));
            assert_true(d.data_len == 0 || (d.data >= arena.buf && d.data < arena.buf + arena.cap));
            rt_datum_release(&d);
        }
        if (rt_datum_decode_arena(buf, len / 2, "half", &arena, &d) == 0)
            rt_datum_release(&d); /* a prefix may parse; then it must release cleanly */
        else
            assert_non_null(strstr(rt_err_msg(), "half"));
        if (k == 2)
            rt_datum_arena_free(&arena);
        /* every truncation of the record is an error naming the key, never a crash */
        for (size_t cut = 1; cut < len; cut++) {
            int rc = rt_datum_decode(buf, cut, "00000042", &d);
            if (rc == 0) { /* a prefix can be a valid shorter message: then the shape breaks */
                rt_datum_release(&d);
                continue;
            }
            assert_non_null(strstr(rt_err_msg(), "00000042"));
        }
    }
    /* a too small output buffer */
    size_t len;
    assert_int_equal(rt_datum_pack(&in[0], buf, 10, &len), RT_ERR_SIZE);
}

static void test_shape_disagrees(void **state)
{
    (void)state;
    uint8_t px[10] = {0}, buf[64];
    struct rt_datum d = {
        .kind = RT_DATUM_RAW, .channels = 1, .height = 3, .width = 3, .data = px, .data_len = 10};
    size_t len;
    assert_int_equal(rt_datum_pack(&d, buf, sizeof buf, &len), RT_ERR_ARG);
    /* hand-made: channels=1 height=3 width=3 data=10 bytes */
    uint8_t raw[] = {0x08, 1, 0x10, 3, 0x18, 3, 0x22, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    struct rt_datum out;
    assert_int_equal(rt_datum_decode(raw, sizeof raw, "00000005_x.png", &out), RT_ERR_SIZE);
    assert_non_null(strstr(rt_err_msg(), "00000005_x.png"));
    raw[1] = 9; /* 9 channels */
    assert_int_equal(rt_datum_decode(raw, sizeof raw, "k9", &out), RT_ERR_SHAPE);
    uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(rt_datum_decode(junk, sizeof junk, "kj", &out), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "kj"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_shape_disagrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
