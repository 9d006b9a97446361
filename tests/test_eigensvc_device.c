/*
 * test_eigensvc_device: the eigen service's own device (eigensvc.device). Without CUDA in the
 * build or without a device, asking for cuda is refused by eigensvc_new with RT_ERR_ARG and a
 * one-line reason (the same that `eigenbatch eigensvc --eig-device cuda` prints on stderr, the
 * one line besides the log's, exiting non-zero); an unknown device string is refused the same way;
 * "cpu" and NULL build the service. Where a device exists (a CUDA build on a GPU machine) the cuda
 * service is built instead and its refusal is not checked.
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eigensvc.h"
#include "nn_backend.h"
#include "rt_err.h"

#define N 32 /* records of the tiny dataset */
#define C 1
#define H 4
#define W_ 4
#define HB 8 /* Hessian batch */
#define OUT_MAX 4096

static char *s_tmp;
static char s_db[4200];

static void s_cfg(struct eigensvc_cfg *ec, const char *const *eps, const char *device)
{
    *ec = (struct eigensvc_cfg){.n_shards = 1,
                                .endpoints = eps,
                                .model = "mlp",
                                .classes = N,
                                .train_db = s_db,
                                .hessian_batch = HB,
                                .seed = 7,
                                .bn = NN_BN_EVAL,
                                .timeout_ms = 1000,
                                .device = device};
    eig_power_config_preset(&ec->power, EIG_POWER_PAPER);
    eig_abs_config_default(&ec->abs, 2, 0);
}

/* One line: non-empty, no newline. */
static void s_assert_one_line(const char *msg)
{
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    assert_null(strchr(msg, '\n'));
}

static int s_have_cuda(void)
{
    const struct nn_backend_ops *be;
    return nn_backend_get("cuda", &be) == NN_OK;
}

static void test_cuda_refused_or_built(void **state)
{
    (void)state;
    const char *eps[1] = {"tcp://127.0.0.1:1"};
    struct eigensvc_cfg ec;
    eigensvc_t *svc = NULL;
    s_cfg(&ec, eps, "cuda");
    int rc = eigensvc_new(&ec, &svc);
    if (s_have_cuda()) {
        assert_int_equal(rc, 0);
        assert_non_null(svc);
        eigensvc_destroy(&svc);
        return;
    }
    assert_int_equal(rc, RT_ERR_ARG);
    assert_null(svc);
    s_assert_one_line(rt_err_msg());
    assert_non_null(strstr(rt_err_msg(), "eigensvc.device cuda"));
    assert_non_null(strstr(rt_err_msg(), "CUDA"));
}

static void test_bad_device_and_cpu(void **state)
{
    (void)state;
    const char *eps[1] = {"tcp://127.0.0.1:1"};
    struct eigensvc_cfg ec;
    eigensvc_t *svc = NULL;
    s_cfg(&ec, eps, "gpu0");
    assert_int_equal(eigensvc_new(&ec, &svc), RT_ERR_ARG);
    assert_null(svc);
    s_assert_one_line(rt_err_msg());
    assert_non_null(strstr(rt_err_msg(), "unknown device 'gpu0'"));
    s_cfg(&ec, eps, "cuda:999");
    assert_int_equal(eigensvc_new(&ec, &svc), RT_ERR_ARG);
    s_assert_one_line(rt_err_msg());
    const char *devs[] = {"cpu", NULL};
    for (int i = 0; i < 2; i++) {
        s_cfg(&ec, eps, devs[i]);
        assert_int_equal(eigensvc_new(&ec, &svc), 0);
        eigensvc_destroy(&svc);
        assert_null(svc);
    }
}

/* The command line: --eig-device cuda reaches the service; the process prints one line. */
static void test_command_line(void **state)
{
    (void)state;
    const char *bin = getenv("EB_BINARY");
    if (!bin || s_have_cuda())
        skip();
    char cmd[9000], out[OUT_MAX];
    snprintf(cmd, sizeof cmd,
             "%s eigensvc --model mlp --classes %d --data %s --method ABS --hessian-batch %d "
             "--connect tcp://127.0.0.1:1 --eig-device cuda 2>&1 >/dev/null",
             bin, N, s_db, HB);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = '\0';
    int status = pclose(p);
    assert_true(status != 0);
    /* besides the log's timestamped lines (the loader's INFO), exactly one line: the reason */
    int lines = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '2' && strchr(l, 'T') == l + 10)
            continue; /* "2026-12-03T..." */
        lines++;
        assert_non_null(strstr(l, "eigensvc.device cuda"));
        assert_non_null(strstr(l, "CUDA"));
    }
    assert_int_equal(lines, 1);
}

static int s_setup(void **state)
{
    (void)state;
    s_tmp = eb_test_tmpdir();
    snprintf(s_db, sizeof s_db, "%s/db", s_tmp);
    eb_test_make_raw_db(s_db, N, C, H, W_);
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
        cmocka_unit_test(test_cuda_refused_or_built),
        cmocka_unit_test(test_bad_device_and_cpu),
        cmocka_unit_test(test_command_line),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
