/*
 * sgemm_peak: this machine's OpenBLAS sgemm throughput, the yardstick of the NN core's GFLOP/s.
 *
 *     eb_sgemm_peak [--size N] [--threads T[,T...]] [--seconds S]
 *
 * For each thread count, multiplies two N x N float matrices (C = A B, row-major, no transpose)
 * repeatedly for at least S seconds after one warm-up call, and prints one JSON line:
 *     {"n": 2048, "threads": 1, "reps": 9, "gflops_best": 96.1, "gflops_mean": 95.4}
 * (2 N^3 flops per call; "best" is the fastest single call, the peak). The last line is a summary
 * {"sgemm_peak": {"1": 96.1, "2": 185.0}, "n": 2048, "openblas": "..."} with the best values.
 * Defaults: N = 2048, threads 1 and 2, S = 1.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Default matrix size, thread list and minimum measuring time. */
#define PEAK_DEFAULT_N 2048
#define PEAK_DEFAULT_SECONDS 1.0
#define PEAK_MAX_THREADS 16

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void s_usage(FILE *f)
{
    fprintf(f, "usage: eb_sgemm_peak [--size N] [--threads T[,T...]] [--seconds S]\n");
}

/* Parse "1,2,4" into threads[]; returns the count, or -1. */
static int s_parse_threads(const char *s, int *threads)
{
    int n = 0;
    while (*s) {
        char *end = NULL;
        long t = strtol(s, &end, 10);
        if (end == s || t < 1 || t > 1024 || n == PEAK_MAX_THREADS || (*end && *end != ','))
            return -1;
        threads[n++] = (int)t;
        s = *end ? end + 1 : end;
    }
    return n;
}

int main(int argc, char **argv)
{
    long n = PEAK_DEFAULT_N;
    double seconds = PEAK_DEFAULT_SECONDS;
    int threads[PEAK_MAX_THREADS] = {1, 2}, nthreads = 2;
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            s_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--size") && val) {
            n = strtol(val, &end, 10);
            if (*end || n < 16 || n > 32768)
                goto bad;
        } else if (!strcmp(argv[i], "--seconds") && val) {
            seconds = strtod(val, &end);
            if (*end || !(seconds > 0 && seconds < 3600))
                goto bad;
        } else if (!strcmp(argv[i], "--threads") && val) {
            nthreads = s_parse_threads(val, threads);
            if (nthreads < 1)
                goto bad;
        } else {
            goto bad;
        }
        i++;
        continue;
    bad:
        fprintf(stderr, "eb_sgemm_peak: invalid option '%s'%s%s\n", argv[i], val ? " " : "",
                val ? val : "");
        s_usage(stderr);
        return 2;
    }

    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "eb_sgemm_peak: cannot allocate three %ldx%ld matrices\n", n, n);
        free(a);
        free(b);
        free(c);
        return 1;
    }
    unsigned s = 1;
    for (size_t i = 0; i < nn; i++) {
        s = s * 1103515245u + 12345u;
        a[i] = (float)((s >> 16) & 0x7fff) / 32768.0f - 0.5f;
        b[i] = (float)((s >> 8) & 0x7fff) / 32768.0f - 0.5f;
    }
    double flop = 2.0 * (double)n * (double)n * (double)n;
    double best[PEAK_MAX_THREADS];
    for (int k = 0; k < nthreads; k++) {
        openblas_set_num_threads(threads[k]);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a,
                    (int)n, b, (int)n, 0.0f, c, (int)n); /* warm-up */
        double total = 0, fastest = 1e30;
        int reps = 0;
        while (total < seconds || reps < 3) {
            double t0 = s_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a,
                        (int)n, b, (int)n, 0.0f, c, (int)n);
            double dt = s_now() - t0;
            total += dt;
            fastest = dt < fastest ? dt : fastest;
            reps++;
        }
        best[k] = flop / fastest * 1e-9;
        printf("{\"n\": %ld, \"threads\": %d, \"reps\": %d, \"gflops_best\": %.2f, "
               "\"gflops_mean\": %.2f}\n",
               n, threads[k], reps, best[k], flop * reps / total * 1e-9);
        fflush(stdout);
    }
    printf("{\"sgemm_peak\": {");
    for (int k = 0; k < nthreads; k++)
        printf("%s\"%d\": %.2f", k ? ", " : "", threads[k], best[k]);
    printf("}, \"n\": %ld, \"openblas\": \"%s\"}\n", n, openblas_get_config());
    free(a);
    free(b);
    free(c);
    return 0;
}
