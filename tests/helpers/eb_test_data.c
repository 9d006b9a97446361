/*
 * eb_test_data: synthetic datasets written through rt_db / rt_datum.
 */
#include "eb_test_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_test.h"
#include "rt_datum.h"
#include "rt_db.h"
#include "rt_err.h"

uint8_t eb_test_pixel(size_t i, size_t k)
{
    return (uint8_t)((i * 37 + k * 11 + (k * k) % 7) & 0xff);
}

void eb_test_make_raw_db(const char *dir, size_t n, int c, int h, int w)
{
    eb_test_make_raw_db_bad(dir, n, c, h, w, NULL, 0);
}

static int s_listed(size_t i, const size_t *list, int n)
{
    for (int k = 0; k < n; k++)
        if (list[k] == i)
            return 1;
    return 0;
}

void eb_test_make_raw_db_bad(const char *dir, size_t n, int c, int h, int w, const size_t *bad,
                             int nbad)
{
    rt_db_writer_t *wr = NULL;
    assert_int_equal(rt_db_writer_new(dir, 0, &wr), 0);
    size_t px = (size_t)c * h * w;
    uint8_t *data = malloc(px);
    uint8_t *buf = malloc(px + 64);
    assert_non_null(data);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < px; k++)
            data[k] = eb_test_pixel(i, k);
        struct rt_datum d = {.kind = RT_DATUM_RAW,
                             .channels = c,
                             .height = h,
                             .width = w,
                             .label = (int)i,
                             .data = data,
                             .data_len = px};
        size_t len;
        assert_int_equal(rt_datum_pack(&d, buf, px + 64, &len), 0);
        if (s_listed(i, bad, nbad)) {
            static const char junk[] = "not a datum";
            memcpy(buf, junk, sizeof junk - 1);
            len = sizeof junk - 1;
        }
        char key[16];
        int kl = snprintf(key, sizeof key, "%08zu", i);
        assert_int_equal(rt_db_writer_put(wr, key, (size_t)kl, buf, len), 0);
    }
    int rc = rt_db_writer_finish(wr);
    if (rc)
        fprintf(stderr, "%s\n", rt_err_msg());
    assert_int_equal(rc, 0);
    rt_db_writer_destroy(&wr);
    free(data);
    free(buf);
}

static uint64_t s_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int eb_test_sample_read(void *user, uint64_t epoch, uint64_t first, uint32_t n, float *x,
                        int32_t *y)
{
    (void)user;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t base = s_mix((epoch << 40) ^ (first + k));
        for (int j = 0; j < EB_TEST_SAMPLE_FLOATS; j++)
            x[(size_t)k * EB_TEST_SAMPLE_FLOATS + (size_t)j] =
                (float)(s_mix(base + (uint64_t)j) >> 40) / (float)(1 << 24);
        y[k] = (int32_t)(s_mix(base ^ 0xabcdefull) % EB_TEST_SAMPLE_CLASSES);
    }
    return 0;
}
