/*
 * test_nn_cuda_libs: a CUDA build opens cuBLAS on first use, not at start: the process has no
 * libcublas mapped until the backend (here nn_backend_cuda_libs) asks for it, and then has it.
 * Needs no GPU. A build without CUDA says so instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_test.h"
#include "nn_backend.h"
#include "nn_base.h"

#ifdef EB_HAVE_CUDA
/* 1 when a file whose name contains `lib` is mapped into this process. */
static int s_mapped(const char *lib)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, lib) != NULL;
    fclose(f);
    return found;
}
#endif

static void test_cublas_on_first_use(void **state)
{
    (void)state;
#ifdef EB_HAVE_CUDA
    assert_false(s_mapped("libcublas")); /* neither libcublas nor libcublasLt at start */
    int rc = nn_backend_cuda_libs();
    if (rc != NN_OK)
        fail_msg("cuBLAS did not open: %s", nn_backend_why());
    assert_true(s_mapped("libcublas.so"));
    assert_int_equal(nn_backend_cuda_libs(), NN_OK); /* opened once, then the same table */
#else
    assert_int_equal(nn_backend_cuda_libs(), NN_ERR_ARG);
    assert_non_null(strstr(nn_backend_why(), "without CUDA"));
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cublas_on_first_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
