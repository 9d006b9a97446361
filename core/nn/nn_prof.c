/*
 * nn_prof: the layer-pass dispatch of nn_net.c, with EB_NN_PROFILE=1 timing it: wall time per
 * layer kind and pass, each call followed by the backend's sync (so that device work is charged to
 * the layer that queued it), reported (nn_report) at exit. Serialising costs some overlap: the
 * table shows where time goes, not the unprofiled total.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn_net_impl.h"

#define S_PROF_KINDS 32

static struct {
    pthread_mutex_t mu;
    int on; /* -1: not read yet */
    int n;
    const char *kind[S_PROF_KINDS];
    double s[S_PROF_KINDS][NN_PASS_KINDS];
    long calls[S_PROF_KINDS][NN_PASS_KINDS];
} s_prof = {PTHREAD_MUTEX_INITIALIZER, -1, 0, {0}, {{0}}, {{0}}};

/* At exit, one report line per layer kind and pass that ran (the math library never prints). */
static void s_prof_dump(void)
{
    static const char *const pass[NN_PASS_KINDS] = {"forward", "rforward", "backward", "rbackward"};
    for (int k = 0; k < s_prof.n; k++)
        for (int p = 0; p < NN_PASS_KINDS; p++)
            if (s_prof.calls[k][p])
                nn_report(2, "nn profile: %s %s %.4f s, %ld calls", s_prof.kind[k], pass[p],
                          s_prof.s[k][p], s_prof.calls[k][p]);
}

static double s_prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void nn_prof_call(const struct nn_backend_ops *be, struct nn_layer *l, enum nn_pass_kind p,
                  const struct nn_ctx *ctx)
{
    void (*fn)(struct nn_layer *, const struct nn_ctx *) = p == NN_PASS_FWD    ? l->ops->forward
                                                           : p == NN_PASS_RFWD ? l->ops->rforward
                                                           : p == NN_PASS_BWD  ? l->ops->backward
                                                                               : l->ops->rbackward;
    if (s_prof.on < 0) {
        pthread_mutex_lock(&s_prof.mu);
        if (s_prof.on < 0) {
            const char *e = getenv("EB_NN_PROFILE");
            s_prof.on = e && *e && strcmp(e, "0");
            if (s_prof.on)
                atexit(s_prof_dump);
        }
        pthread_mutex_unlock(&s_prof.mu);
    }
    if (!s_prof.on) {
        fn(l, ctx);
        return;
    }
    double t0 = s_prof_now();
    fn(l, ctx);
    be->sync();
    double dt = s_prof_now() - t0;
    pthread_mutex_lock(&s_prof.mu);
    int k = 0;
    while (k < s_prof.n && strcmp(s_prof.kind[k], l->ops->kind))
        k++;
    if (k == s_prof.n && k < S_PROF_KINDS)
        s_prof.kind[s_prof.n++] = l->ops->kind;
    if (k < S_PROF_KINDS) {
        s_prof.s[k][p] += dt;
        s_prof.calls[k][p]++;
    }
    pthread_mutex_unlock(&s_prof.mu);
}
