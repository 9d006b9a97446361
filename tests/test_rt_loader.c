/*
 * test_rt_loader: the loader's sampling contract (every sample exactly once per epoch across
 * workers with random proportional shares, batch size changes and a short last batch), its
 * determinism (same seed, any thread count or share gives the same samples), and its transforms
 * (pixel/255, crop with padding, flip, random-resized crop, normalisation, evaluation reads).
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "rt_loader.h"

#define S_MAX_WORKERS 6

/* Fixture: a small raw dataset in a temporary directory. */
struct s_fix {
    char *tmp;    /* temporary directory */
    char db[512]; /* database path */
    size_t n;     /* records */
};

static int s_setup(void **state)
{
    struct s_fix *f = calloc(1, sizeof *f);
    f->tmp = eb_test_tmpdir();
    snprintf(f->db, sizeof f->db, "%s/db", f->tmp);
    f->n = 203; /* not a multiple of any batch size used: the last batch is short */
    eb_test_make_raw_db(f->db, f->n, 1, 8, 6);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    struct s_fix *f = *state;
    eb_test_rmtree(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

static rt_loader_t *s_open(const char *db, uint64_t seed, int threads, int pad, bool flip)
{
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.seed = seed;
    o.threads = threads;
    o.crop_pad = pad;
    o.flip = flip;
    o.max_batch = 64;
    rt_loader_t *l = NULL;
    int rc = rt_loader_new(db, &o, &l);
    if (rc)
        fprintf(stderr, "%s\n", rt_err_msg());
    assert_int_equal(rc, 0);
    return l;
}

/* Random share vectors, worker counts and batch sizes: every record once per epoch. */
static void test_each_sample_once_per_epoch(void **state)
{
    struct s_fix *f = *state;
    srand(12345);
    int *seen = calloc(f->n, sizeof *seen);
    rt_loader_t *w[S_MAX_WORKERS];
    int trials = getenv("EB_SANITIZED") ? 3 : 8;
    for (int trial = 0; trial < trials; trial++) {
        int nw = 1 + rand() % S_MAX_WORKERS;
        for (int r = 0; r < nw; r++) /* a mix of synchronous and prefetching workers */
            w[r] = s_open(f->db, 99, r % 3, 1, true);
        struct rt_loader_cursor cur = {0, 0};
        for (uint64_t ep = 0; ep < 2; ep++) {
            memset(seen, 0, f->n * sizeof *seen);
            size_t steps = 0, total = 0;
            size_t batch = 1 + (size_t)(rand() % 64);
            uint64_t epoch = ep;
            while (cur.epoch == ep) {
                if (steps++ % 3 == 2) /* the global batch size changes mid-epoch */
                    batch = 1 + (size_t)(rand() % 64);
                size_t pos;
                size_t b = rt_loader_advance(w[0], &cur, batch, &epoch, &pos);
                assert_int_equal(epoch, ep);
                assert_int_equal(pos, total);
                assert_true(b >= 1 && b <= batch);
                total += b;
                double wt[S_MAX_WORKERS];
                size_t bounds[S_MAX_WORKERS + 1];
                for (int r = 0; r < nw; r++)
                    wt[r] = (rand() % 4 == 0) ? 0.0 : 0.1 + (rand() % 100) / 10.0;
                wt[rand() % nw] += 1.0; /* never all zero */
                rt_loader_split(b, wt, nw, bounds);
                assert_int_equal(bounds[0], 0);
                assert_int_equal(bounds[nw], b);
                for (int r = 0; r < nw; r++) {
                    assert_true(bounds[r] <= bounds[r + 1]);
                    struct rt_loader_req q = {.epoch = epoch,
                                              .start = pos + bounds[r],
                                              .count = bounds[r + 1] - bounds[r],
                                              .augment = true};
                    assert_int_equal(rt_loader_submit(w[r], &q), 0);
                    struct rt_loader_batch out;
                    assert_int_equal(rt_loader_wait(w[r], &out), 0);
                    assert_int_equal(out.count, q.count);
                    for (size_t i = 0; i < out.count; i++) {
                        assert_true(out.y[i] >= 0 && (size_t)out.y[i] < f->n);
                        assert_int_equal((size_t)out.y[i], out.index[i]); /* label = index */
                        seen[out.y[i]]++;
                    }
                    rt_loader_release(w[r], &out);
                }
            }
            assert_int_equal(total, f->n);
            for (size_t i = 0; i < f->n; i++)
                assert_int_equal(seen[i], 1);
        }
        for (int r = 0; r < nw; r++)
            rt_loader_destroy(&w[r]);
        assert_null(w[0]);
    }
    free(seen);
}

/* Load the whole epoch through one loader in `parts` requests queued ahead; return the samples
 * indexed by record (n x sample floats) so that runs can be compared per record. */
static float *s_epoch_by_record(const struct s_fix *f, rt_loader_t *l, uint64_t epoch, size_t batch,
                                bool caller_buffers)
{
    int c, h, w;
    rt_loader_shape(l, &c, &h, &w);
    size_t sample = (size_t)c * h * w;
    float *by_rec = calloc(f->n * sample, sizeof *by_rec);
    float *xbuf = malloc(4 * batch * sample * sizeof *xbuf);
    int32_t *ybuf = malloc(4 * batch * sizeof *ybuf);
    size_t pos = 0, queued = 0, k = 0;
    while (pos < f->n) {
        /* up to 3 requests in flight */
        while (queued < f->n && queued - pos < 3 * batch) {
            size_t cnt = batch < f->n - queued ? batch : f->n - queued;
            struct rt_loader_req q = {
                .epoch = epoch, .start = queued, .count = cnt, .augment = true};
            if (caller_buffers) {
                q.x = xbuf + (k % 4) * batch * sample;
                q.y = ybuf + (k % 4) * batch;
                k++;
            }
            assert_int_equal(rt_loader_submit(l, &q), 0);
            queued += cnt;
        }
        struct rt_loader_batch b;
        assert_int_equal(rt_loader_wait(l, &b), 0);
        assert_int_equal(b.start, pos);
        for (size_t i = 0; i < b.count; i++) {
            assert_int_equal(b.index[i], rt_loader_perm_index(l, epoch, pos + i));
            memcpy(by_rec + (size_t)b.y[i] * sample, b.x + i * sample, sample * sizeof(float));
        }
        pos += b.count;
        rt_loader_release(l, &b);
    }
    free(xbuf);
    free(ybuf);
    return by_rec;
}

/* Same seed: the same permutation and the same augmented pixels, whatever the thread count,
 * batch split or buffer ownership; another seed or epoch differs. */
static void test_same_seed_same_batches(void **state)
{
    struct s_fix *f = *state;
    size_t sample = 8 * 6;
    rt_loader_t *a = s_open(f->db, 7, 0, 2, true);
    rt_loader_t *b = s_open(f->db, 7, 3, 2, true);
    rt_loader_t *c = s_open(f->db, 8, 1, 2, true);
    for (size_t p = 0; p < f->n; p++)
        assert_int_equal(rt_loader_perm_index(a, 1, p), rt_loader_perm_index(b, 1, p));
    size_t same_pos = 0;
    for (size_t p = 0; p < f->n; p++)
        same_pos += rt_loader_perm_index(a, 1, p) == rt_loader_perm_index(c, 1, p);
    assert_true(same_pos < f->n / 4);
    float *xa = s_epoch_by_record(f, a, 1, 16, false);
    float *xb = s_epoch_by_record(f, b, 1, 5, true);
    float *xc = s_epoch_by_record(f, c, 1, 16, false);
    float *xa2 = s_epoch_by_record(f, a, 2, 16, false);
    assert_memory_equal(xa, xb, f->n * sample * sizeof(float));
    assert_memory_not_equal(xa, xc, f->n * sample * sizeof(float));
    assert_memory_not_equal(xa, xa2, f->n * sample * sizeof(float));
    free(xa);
    free(xb);
    free(xc);
    free(xa2);
    rt_loader_destroy(&a);
    rt_loader_destroy(&b);
    rt_loader_destroy(&c);
    rt_loader_destroy(&c); /* safe twice */
}

/* Output = the record at some offset within the padding, possibly mirrored; both flips occur. */
static void test_crop_pad_flip(void **state)
{
    struct s_fix *f = *state;
    const int H = 8, W = 6, P = 2;
    rt_loader_t *l = s_open(f->db, 3, 0, P, true);
    struct rt_loader_req q = {.epoch = 0, .start = 0, .count = 64, .augment = true};
    assert_int_equal(rt_loader_submit(l, &q), 0);
    struct rt_loader_batch b;
    assert_int_equal(rt_loader_wait(l, &b), 0);
    int flips = 0, shifted = 0;
    for (size_t s = 0; s < b.count; s++) {
        const float *x = b.x + s * H * W;
        size_t rec = b.index[s];
        int matches = 0;
        for (int fl = 0; fl < 2; fl++)
            for (int oy = -P; oy <= P; oy++)
                for (int ox = -P; ox <= P; ox++) {
                    bool ok = true;
                    for (int y = 0; y < H && ok; y++)
                        for (int xx = 0; xx < W && ok; xx++) {
                            int sy = y + oy, sx = fl ? ox + W - 1 - xx : ox + xx;
                            float want = (sy >= 0 && sy < H && sx >= 0 && sx < W)
                                             ? eb_test_pixel(rec, (size_t)sy * W + sx) / 255.0f
                                             : 0.0f;
                            ok = fabsf(x[y * W + xx] - want) < 1e-6f;
                        }
                    if (ok) {
                        matches++;
                        flips += fl;
                        shifted += oy != 0 || ox != 0;
                    }
                }
        assert_true(matches >= 1);
    }
    assert_true(flips > 5 && flips < 59);
    assert_true(shifted > 20);
    rt_loader_release(l, &b);
    rt_loader_destroy(&l);
}

/* Evaluation reads in key order are the records / 255, normalised when asked. */
static void test_read_eval_normalised(void **state)
{
    struct s_fix *f = *state;
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.threads = 0;
    o.normalize = true;
    o.mean[0] = 0.25f;
    o.std[0] = 0.5f;
    o.crop_pad = 4;
    o.flip = true;
    rt_loader_t *l = NULL;
    assert_int_equal(rt_loader_new(f->db, &o, &l), 0);
    float x[5 * 48];
    int32_t y[5];
    assert_int_equal(rt_loader_read(l, 198, 5, x, y), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(y[i], 198 + i);
        for (int k = 0; k < 48; k++) {
            float want = (eb_test_pixel(198 + (size_t)i, (size_t)k) / 255.0f - 0.25f) / 0.5f;
            assert_true(fabsf(x[i * 48 + k] - want) < 1e-5f);
        }
    }
    assert_int_equal(rt_loader_read(l, 200, 5, x, y), RT_ERR_ARG);
    /* the same records through the queue in key order, prefetched */
    struct rt_loader_req qo = {
        .epoch = 3, .start = 198, .count = 5, .in_order = true, .x = x + 0, .y = y};
    float x2[5 * 48];
    memcpy(x2, x, sizeof x2);
    memset(x, 0, sizeof x2);
    assert_int_equal(rt_loader_submit(l, &qo), 0);
    struct rt_loader_batch bo;
    assert_int_equal(rt_loader_wait(l, &bo), 0);
    assert_ptr_equal(bo.x, x);
    assert_memory_equal(x, x2, sizeof x2);
    for (int i = 0; i < 5; i++)
        assert_int_equal(bo.index[i], 198 + i);
    rt_loader_release(l, &bo);
    /* queue limits and range checks */
    struct rt_loader_req q = {.epoch = 0, .start = 200, .count = 4};
    assert_int_equal(rt_loader_submit(l, &q), RT_ERR_ARG);
    struct rt_loader_batch b;
    assert_int_equal(rt_loader_wait(l, &b), RT_ERR_STATE);
    q.start = 0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(rt_loader_submit(l, &q), 0);
    assert_int_equal(rt_loader_submit(l, &q), RT_ERR_STATE); /* queue_depth 4 */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rt_loader_wait(l, &b), 0);
        rt_loader_release(l, &b);
    }
    rt_loader_destroy(&l);
}

/* Random-resized crop: output size, constant images stay constant, determinism. */
static void test_random_resized_crop(void **state)
{
    struct s_fix *f = *state;
    char db[600];
    snprintf(db, sizeof db, "%s/rrc", f->tmp);
    eb_test_make_raw_db(db, 20, 3, 30, 40);
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.threads = 2;
    o.rrc = true;
    o.flip = true;
    o.out_height = 16;
    o.out_width = 12;
    rt_loader_t *l = NULL;
    assert_int_equal(rt_loader_new(db, &o, &l), 0);
    int c, h, w;
    rt_loader_shape(l, &c, &h, &w);
    assert_int_equal(c, 3);
    assert_int_equal(h, 16);
    assert_int_equal(w, 12);
    struct rt_loader_req q = {.epoch = 4, .start = 0, .count = 20, .augment = true};
    assert_int_equal(rt_loader_submit(l, &q), 0);
    struct rt_loader_batch b;
    assert_int_equal(rt_loader_wait(l, &b), 0);
    for (size_t i = 0; i < 20 * 3 * 16 * 12; i++)
        assert_true(b.x[i] >= 0.0f && b.x[i] <= 1.0f);
    float *first = malloc(20 * 3 * 16 * 12 * sizeof *first);
    memcpy(first, b.x, 20 * 3 * 16 * 12 * sizeof *first);
    rt_loader_release(l, &b);
    assert_int_equal(rt_loader_submit(l, &q), 0);
    assert_int_equal(rt_loader_wait(l, &b), 0);
    assert_memory_equal(first, b.x, 20 * 3 * 16 * 12 * sizeof *first);
    rt_loader_release(l, &b);
    /* evaluation: centre crop resized, deterministic too */
    float ev[3 * 16 * 12];
    int32_t y;
    assert_int_equal(rt_loader_read(l, 3, 1, ev, &y), 0);
    assert_int_equal(y, 3);
    free(first);
    rt_loader_destroy(&l);
}

static void test_split_proportional(void **state)
{
    (void)state;
    double wt[3] = {1.0, 2.0, 1.0};
    size_t b[4];
    rt_loader_split(100, wt, 3, b);
    assert_int_equal(b[1], 25);
    assert_int_equal(b[2], 75);
    assert_int_equal(b[3], 100);
    double w2[2] = {0.0, 3.0};
    rt_loader_split(7, w2, 2, b);
    assert_int_equal(b[1], 0);
    assert_int_equal(b[2], 7);
}

/* Records that are no Datum: the first stops a request, naming its key, unless
 * data.skip_bad_records tolerates it; then its samples come from the next record that decodes,
 * the batch's index says which, and the budget counts distinct records. */
static void test_bad_records(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char db[512];
    snprintf(db, sizeof db, "%s/bad", tmp);
    static const size_t bad[3] = {5, 30, 31}; /* 30, 31: consecutive, so 31 is tried too */
    eb_test_make_raw_db_bad(db, 40, 1, 4, 4, bad, 3);
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.max_batch = 40;
    for (int threads = 0; threads <= 2; threads += 2) {
        o.threads = threads;
        /* none tolerated: the request fails with the record's key */
        o.max_bad = 0;
        rt_loader_t *l = NULL;
        assert_int_equal(rt_loader_new(db, &o, &l), 0);
        struct rt_loader_req q = {.epoch = 0, .start = 0, .count = 40, .in_order = true};
        struct rt_loader_batch b;
        assert_int_equal(rt_loader_submit(l, &q), 0);
        assert_true(rt_loader_wait(l, &b) < 0);
        assert_non_null(strstr(rt_err_msg(), "0000000"));
        assert_int_equal(rt_loader_bad_records(l), 0);
        rt_loader_destroy(&l);
        /* two tolerated, three there: fails on the third, saying why */
        o.max_bad = 2;
        assert_int_equal(rt_loader_new(db, &o, &l), 0);
        assert_int_equal(rt_loader_submit(l, &q), 0);
        assert_true(rt_loader_wait(l, &b) < 0);
        assert_non_null(strstr(rt_err_msg(), "data.skip_bad_records 2"));
        assert_int_equal(rt_loader_bad_records(l), 2);
        rt_loader_destroy(&l);
        /* three tolerated: every position filled, from the next good record */
        o.max_bad = 3;
        assert_int_equal(rt_loader_new(db, &o, &l), 0);
        for (int epoch = 0; epoch < 2; epoch++) { /* the second finds them known: no new count */
            q.epoch = (uint64_t)epoch;
            q.in_order = epoch == 0;
            assert_int_equal(rt_loader_submit(l, &q), 0);
            assert_int_equal(rt_loader_wait(l, &b), 0);
            for (size_t i = 0; i < 40; i++) {
                size_t want = rt_loader_perm_index(l, q.epoch, i);
                if (q.in_order)
                    want = i;
                if (want == 5)
                    want = 6;
                else if (want == 30 || want == 31)
                    want = 32;
                assert_int_equal(b.index[i], want);
                assert_int_equal(b.y[i], (int32_t)want);
                for (size_t k = 0; k < 16; k++)
                    assert_true(fabsf(b.x[i * 16 + k] - eb_test_pixel(want, k) / 255.0f) < 1e-6f);
            }
            rt_loader_release(l, &b);
            assert_int_equal(rt_loader_bad_records(l), 3);
        }
        float x[10 * 16];
        int32_t y[10];
        assert_int_equal(rt_loader_read(l, 0, 10, x, y), 0);
        assert_int_equal(y[5], 6);
        rt_loader_destroy(&l);
    }
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_proportional),
        cmocka_unit_test(test_each_sample_once_per_epoch),
        cmocka_unit_test(test_same_seed_same_batches),
        cmocka_unit_test(test_crop_pad_flip),
        cmocka_unit_test(test_read_eval_normalised),
        cmocka_unit_test(test_random_resized_crop),
        cmocka_unit_test(test_bad_records),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
