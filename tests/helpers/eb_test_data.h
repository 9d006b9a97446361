/*
 * eb_test_data: small LMDB datasets for the data-path tests.
 */
#ifndef EB_TEST_DATA_H
#define EB_TEST_DATA_H

#include <stddef.h>
#include <stdint.h>

/* Pixel k (CHW order) of record i of the synthetic raw datasets. */
uint8_t eb_test_pixel(size_t i, size_t k);

/* Write n raw records of shape c x h x w under keys %08d with our writer: pixels
 * eb_test_pixel(i, k), label i. Fails the test on error. */
void eb_test_make_raw_db(const char *dir, size_t n, int c, int h, int w);

/* The same, except that the records whose indices are in bad[0..nbad) hold bytes that are no
 * Datum ("not a datum"). */
void eb_test_make_raw_db_bad(const char *dir, size_t n, int c, int h, int w, const size_t *bad,
                             int nbad);

/* Deterministic random samples for worker tests: sample `first + k` of `epoch` gets
 * EB_TEST_SAMPLE_FLOATS uniform floats in [0, 1) and a label in [0, EB_TEST_SAMPLE_CLASSES), the
 * same for the same (epoch, position) in every call. Shaped as worker_nn's source read callback
 * (user unused); returns 0. */
#define EB_TEST_SAMPLE_FLOATS 64 /* 1 x 8 x 8 */
#define EB_TEST_SAMPLE_CLASSES 4
int eb_test_sample_read(void *user, uint64_t epoch, uint64_t first, uint32_t n, float *x,
                        int32_t *y);

#endif
