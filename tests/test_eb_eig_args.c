/*
 * test_eb_eig_args: `train` and `launch` give the eigen service the same settings. train builds
 * its configuration with eb_run_eig_cfg; launch passes eb_run_eig_args to an `eigenbatch eigensvc`
 * process, which reads them with eb_eigensvc_parse. For the defaults and for a change of every
 * abs.* key of the schema, the process's configuration equals train's; and every abs.* key either
 * changes that configuration or is one of the keys the eigen service does not use (so a key added
 * to the schema but not wired to the service fails here).
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_cli.h"
#include "eb_run.h"
#include "rt_err.h"

/* abs.* keys the eigen service does not read, and who does. */
static const char *const s_not_eig[] = {
    "abs.epsilon",        /* the workers' FGSM step */
    "abs.sync_timeout_s", /* the coordinator's wait for a decision */
    NULL,
};

/* Options of `launch` from a few --set assignments (and the base ones). */
static void s_opts(struct eb_opts *o, rt_config_t **cfg, const char *const *sets, int n)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "launch";
    static const char *const base[] = {"model.name=cnn", "data.train=/nonexistent/db",
                                       "schedule.method=ABSA", "schedule.epochs=6",
                                       "schedule.batch=32"};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        argv[argc++] = "--set";
        argv[argc++] = (char *)base[i];
    }
    for (int i = 0; i < n; i++) {
        argv[argc++] = "--set";
        argv[argc++] = (char *)sets[i];
    }
    argv[argc] = NULL;
    int help = 0;
    if (eb_opts_parse("launch", argc, argv, o, &help, cfg))
        fail_msg("eb_opts_parse refused %s", n ? sets[n - 1] : "the base options");
    assert_int_equal(eb_opts_check("launch", o), 0);
}

/* 1 when the settings the service runs with are equal. */
static int s_same(const struct eigensvc_cfg *a, const struct eigensvc_cfg *b, char *why, size_t n)
{
    const struct eig_abs_config *x = &a->abs, *y = &b->abs;
#define S_CMP(expr, name)                                                                          \
    if (!(expr)) {                                                                                 \
        snprintf(why, n, "%s", name);                                                              \
        return 0;                                                                                  \
    }
    S_CMP(!strcmp(a->model, b->model), "model");
    S_CMP(a->classes == b->classes, "classes");
    S_CMP(!strcmp(a->train_db, b->train_db), "train_db");
    S_CMP(a->hessian_batch == b->hessian_batch, "hessian_batch");
    S_CMP(a->seed == b->seed, "seed");
    S_CMP(a->block_last_k == b->block_last_k, "block_last_k");
    S_CMP(a->bn == b->bn, "bn");
    S_CMP(a->sync == b->sync, "sync");
    S_CMP(a->epochs == b->epochs, "epochs");
    S_CMP(a->power.max_iter == b->power.max_iter, "power.max_iter");
    S_CMP(a->power.tol == b->power.tol, "power.tol");
    S_CMP(a->power.seed == b->power.seed, "power.seed");
    S_CMP(x->alpha == y->alpha, "alpha");
    S_CMP(x->beta == y->beta, "beta");
    S_CMP(x->kappa == y->kappa, "kappa");
    S_CMP(x->batch0 == y->batch0, "batch0");
    S_CMP(x->batch_max == y->batch_max, "batch_max");
    S_CMP(x->lr0 == y->lr0, "lr0");
    S_CMP(x->lr_rule == y->lr_rule, "lr_rule");
    S_CMP(x->lr_cap == y->lr_cap, "lr_cap");
    S_CMP(x->adversarial == y->adversarial, "adversarial");
    S_CMP(x->gamma0 == y->gamma0, "gamma0");
    S_CMP(x->omega == y->omega, "omega");
    S_CMP(x->tau == y->tau, "tau");
    S_CMP(x->n_decay == y->n_decay, "n_decay");
    S_CMP(!memcmp(x->decay_epochs, y->decay_epochs, sizeof x->decay_epochs), "decay_epochs");
    S_CMP(x->rho == y->rho, "rho");
    S_CMP(x->timer_sets_ref == y->timer_sets_ref, "timer_sets_ref");
#undef S_CMP
    return 1;
}

/* train's configuration of options o, and the one the launched process parses from its flags. */
static void s_both(const struct eb_opts *o, struct eigensvc_cfg *train_ec,
                   struct eb_eigensvc_opts *proc)
{
    if (eb_run_eig_cfg(o, train_ec))
        fail_msg("eb_run_eig_cfg: %s", rt_err_msg());
    static struct eb_run_eig_args a;
    if (eb_run_eig_args(o, &a))
        fail_msg("eb_run_eig_args: %s", rt_err_msg());
    char *argv[EB_RUN_EIG_MAX_ARGS + 4];
    int argc = 0;
    argv[argc++] = "eigensvc";
    argv[argc++] = "--connect";
    argv[argc++] = "ipc:///tmp/none-0";
    for (int i = 0; i < a.argc; i++)
        argv[argc++] = a.argv[i];
    argv[argc] = NULL;
    int help = 0;
    if (eb_eigensvc_parse(argc, argv, proc, &help))
        fail_msg("eigensvc refused the flags launch passes");
    assert_false(help);
}

static void test_launch_matches_train(void **state)
{
    (void)state;
    /* every abs.* key and the schedule keys the rule depends on, all off their defaults */
    static const char *const sets[] = {"abs.alpha=3.5",
                                       "abs.beta=3",
                                       "abs.kappa=4",
                                       "abs.gamma=0.3",
                                       "abs.omega=1.5",
                                       "abs.tau=5",
                                       "abs.block_last_k=2",
                                       "abs.bn=train",
                                       "abs.preset=accurate",
                                       "abs.decisions=sync",
                                       "abs.hessian_batch=64",
                                       "schedule.base_batch=16",
                                       "schedule.lr=0.05",
                                       "schedule.lr_cap=0.4",
                                       "schedule.batch_max=256",
                                       "schedule.decay_epochs=[2, 4]",
                                       "schedule.rho=0.5",
                                       "train.seed=7"};
    int n = (int)(sizeof sets / sizeof sets[0]);
    struct eb_opts o;
    rt_config_t *cfg = NULL;
    s_opts(&o, &cfg, sets, n);
    struct eigensvc_cfg ec;
    struct eb_eigensvc_opts *proc = calloc(1, sizeof *proc);
    s_both(&o, &ec, proc);
    /* train's configuration says what the keys say */
    assert_true(ec.abs.alpha == 3.5 && ec.abs.beta == 3 && ec.abs.kappa == 4);
    assert_true(ec.abs.gamma0 == 0.3 && ec.abs.omega == 1.5 && ec.abs.tau == 5);
    assert_true(ec.abs.adversarial == 1 && ec.abs.lr0 == 0.05 * 32 / 16);
    assert_true(ec.abs.lr_cap == 0.4 && ec.abs.batch_max == 256 && ec.abs.rho == 0.5);
    assert_true(ec.abs.n_decay == 2 && ec.abs.decay_epochs[1] == 4);
    assert_int_equal(ec.block_last_k, 2);
    assert_int_equal(ec.hessian_batch, 64);
    assert_int_equal(ec.bn, NN_BN_TRAIN);
    assert_int_equal(ec.sync, 1);
    assert_int_equal(ec.seed, 7);
    struct eig_power_config acc;
    eig_power_config_preset(&acc, EIG_POWER_ACCURATE);
    assert_int_equal(ec.power.max_iter, acc.max_iter);
    char why[64];
    if (!s_same(&ec, &proc->cfg, why, sizeof why))
        fail_msg("the launched eigen service's %s differs from train's", why);
    eb_eigensvc_opts_free(proc);
    free(proc);
    rt_config_destroy(&cfg);
}

/* A value of key different from its default, as --set text. */
static void s_other(const struct rt_config_key *k, char *out, size_t n)
{
    if (!strcmp(k->key, "abs.bn"))
        snprintf(out, n, "%s=train", k->key);
    else if (!strcmp(k->key, "abs.preset"))
        snprintf(out, n, "%s=accurate", k->key);
    else if (!strcmp(k->key, "abs.decisions"))
        snprintf(out, n, "%s=sync", k->key);
    else if (k->type == RT_CFG_INT)
        snprintf(out, n, "%s=%ld", k->key, k->def ? strtol(k->def, NULL, 10) + 2 : 2);
    else if (k->type == RT_CFG_FLOAT)
        snprintf(out, n, "%s=%.17g", k->key, k->def ? strtod(k->def, NULL) * 1.25 : 0.25);
    else
        fail_msg("%s: no test value for this type of key", k->key);
}

static void test_every_abs_key_reaches_the_service(void **state)
{
    (void)state;
    struct eb_opts base_o, o;
    rt_config_t *base_cfg = NULL, *cfg = NULL; /* base's strings point into base_cfg */
    s_opts(&base_o, &base_cfg, NULL, 0);
    struct eigensvc_cfg base;
    struct eb_eigensvc_opts *proc = calloc(1, sizeof *proc);
    s_both(&base_o, &base, proc);
    char why[64];
    if (!s_same(&base, &proc->cfg, why, sizeof why))
        fail_msg("defaults: the launched eigen service's %s differs from train's", why);
    eb_eigensvc_opts_free(proc);
    int n_keys = 0;
    for (int i = 0; i < eb_run_schema_len; i++) {
        const struct rt_config_key *k = &eb_run_schema[i];
        if (strncmp(k->key, "abs.", 4))
            continue;
        n_keys++;
        int exempt = 0;
        for (int j = 0; s_not_eig[j]; j++)
            exempt |= !strcmp(s_not_eig[j], k->key);
        char set[128];
        s_other(k, set, sizeof set);
        const char *sets[] = {set};
        s_opts(&o, &cfg, sets, 1);
        struct eigensvc_cfg ec;
        s_both(&o, &ec, proc);
        if (!s_same(&ec, &proc->cfg, why, sizeof why))
            fail_msg("%s: the launched eigen service's %s differs from train's", set, why);
        int changed = !s_same(&base, &ec, why, sizeof why);
        if (!exempt && !changed)
            fail_msg("%s does not reach the eigen service", set);
        if (exempt && changed)
            fail_msg("%s is listed as not for the eigen service but changes its %s", set, why);
        eb_eigensvc_opts_free(proc);
        rt_config_destroy(&cfg);
    }
    assert_true(n_keys >= 12);
    free(proc);
    rt_config_destroy(&base_cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_launch_matches_train),
        cmocka_unit_test(test_every_abs_key_reaches_the_service),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
