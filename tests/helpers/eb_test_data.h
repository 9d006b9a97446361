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

#endif
