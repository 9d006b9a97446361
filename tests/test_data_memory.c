/*
 * test_data_memory: the loader's memory stays under the bound it states. A child process writes
 * 50 JPEG records of 2000x1500 (so that its buffers never count in this process's peak); this
 * process then trains two epochs of random-resized 224x224 crops through the prefetching loader
 * and evaluates every record (Resize 256 + CenterCrop 224), and checks the peak resident memory
 * (VmHWM) against the resident memory before the loader plus the stated bound plus a margin.
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_datum.h"
#include "rt_db.h"
#include "rt_err.h"
#include "rt_jpeg.h"
#include "rt_loader.h"

#define S_N 50       /* records */
#define S_IMG_W 2000 /* stored image size */
#define S_IMG_H 1500
#define S_OUT 224       /* output side */
#define S_BATCH 8       /* samples per request */
#define S_MARGIN_MIB 24 /* allocator slack, thread stacks, the test's own buffers */

/* kB value of `field` in /proc/self/status. */
static long s_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = atol(line + n + 1);
    fclose(f);
    return v;
}

/* In a child: the database of S_N large JPEGs, labels i % 10. */
static void s_make_db(const char *dir)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0) {
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        return;
    }
    rt_db_writer_t *w = NULL;
    rt_jpeg_t *j = rt_jpeg_new();
    uint8_t *px = malloc((size_t)S_IMG_W * S_IMG_H * 3);
    if (rt_db_writer_new(dir, false, &w) || !j || !px)
        _exit(1);
    uint8_t *rec = NULL;
    for (int i = 0; i < S_N; i++) {
        for (int y = 0; y < S_IMG_H; y++)
            for (int x = 0; x < S_IMG_W; x++) {
                uint32_t n = (uint32_t)(x * 73856093u ^ y * 19349663u ^ i * 83492791u);
                uint8_t *p = px + ((size_t)y * S_IMG_W + x) * 3;
                p[0] = (uint8_t)((x + i * 13) / 8 + (n & 15));
                p[1] = (uint8_t)((y + i * 7) / 6 + (n >> 8 & 15));
                p[2] = (uint8_t)(((x / 50 + y / 50) % 2) * 120 + (n >> 16 & 31));
            }
        const uint8_t *jpeg;
        size_t len, plen;
        if (rt_jpeg_encode(j, px, S_IMG_W, S_IMG_H, 3, 90, &jpeg, &len))
            _exit(1);
        struct rt_datum d = {.kind = RT_DATUM_ENCODED,
                             .channels = 3,
                             .height = S_IMG_H,
                             .width = S_IMG_W,
                             .label = i % 10,
                             .data = jpeg,
                             .data_len = len};
        size_t need = rt_datum_packed_size(&d);
        free(rec);
        rec = malloc(need);
        char key[16];
        snprintf(key, sizeof key, "%08d", i);
        if (!rec || rt_datum_pack(&d, rec, need, &plen) || rt_db_writer_put(w, key, 8, rec, plen))
            _exit(1);
    }
    if (rt_db_writer_finish(w))
        _exit(1);
    _exit(0);
}

static void test_peak_under_bound(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char db[600];
    snprintf(db, sizeof db, "%s/big", tmp);
    s_make_db(db);
    float *x = malloc(sizeof(float) * 3 * S_OUT * S_OUT * S_BATCH);
    int32_t y[S_BATCH];
    long before_kb = s_status_kb("VmRSS");
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.threads = 2;
    o.queue_depth = 4;
    o.max_batch = S_BATCH;
    o.out_height = o.out_width = S_OUT;
    o.rrc = true;
    o.flip = true;
    o.eval_resize = 256;
    o.max_pixels = (long)S_IMG_W * S_IMG_H;
    o.normalize = true;
    for (int c = 0; c < 3; c++)
        o.std[c] = 0.25f;
    rt_loader_t *l = NULL;
    assert_int_equal(rt_loader_new(db, &o, &l), 0);
    size_t bound = rt_loader_memory_bound(l);
    /* two epochs of training batches, the queue kept full */
    size_t submitted = 0, got = 0, total = 2 * S_N;
    while (got < total) {
        while (submitted < total) {
            struct rt_loader_req r = {
                .epoch = submitted / S_N,
                .start = submitted % S_N,
                .count = S_BATCH < S_N - submitted % S_N ? S_BATCH : S_N - submitted % S_N,
                .augment = true};
            if (rt_loader_submit(l, &r) == RT_ERR_STATE)
                break;
            submitted += r.count;
        }
        struct rt_loader_batch b;
        assert_int_equal(rt_loader_wait(l, &b), 0);
        got += b.count;
        rt_loader_release(l, &b);
    }
    for (size_t first = 0; first < S_N; first += S_BATCH) /* evaluation, on this thread */
        assert_int_equal(
            rt_loader_read(l, first, S_N - first < S_BATCH ? S_N - first : S_BATCH, x, y), 0);
    long peak_kb = s_status_kb("VmHWM");
    rt_loader_destroy(&l);
    double limit = before_kb / 1024.0 + bound / 1048576.0 + S_MARGIN_MIB;
    print_message("resident before the loader %.1f MiB, stated bound %.1f MiB, peak %.1f MiB "
                  "(limit %.1f MiB; %d images of %dx%d)\n",
                  before_kb / 1024.0, bound / 1048576.0, peak_kb / 1024.0, limit, S_N, S_IMG_W,
                  S_IMG_H);
    assert_true(peak_kb / 1024.0 <= limit);
    free(x);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peak_under_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
