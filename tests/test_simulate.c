/*
 * test_simulate: the cost models of `eigenbatch simulate` (tools/sim_model) and the command.
 *   - Table 3 of Yao et al.: `simulate --paper-table3 --json` gives the four totals within 2% of
 *     the paper's 16666, 6150, 2666 and 3467 s (BL and GG from their schedules alone: 450,450 and
 *     166,260 updates; ABS and ABSA are backed out of their totals, so there the check is that the
 *     back-out lands and that the counts it implies are the schedule's).
 *   - the scan: the ring's communication grows with every doubling of the processes, the sharded
 *     servers' never falls, and without a per-message cost it does not depend on W at all;
 *   - the eigen service: under async decisions ABS costs its updates alone (no Hessian time),
 *     under sync every measured epoch end adds a Hessian and a snapshot, and the paper's model
 *     always adds the Hessians;
 *   - schedule rules (ABS levels, ABSA's gamma, GG's cap) and a metrics.jsonl read by the
 *     command, with errors that name the file and line or the flag.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "rt_err.h"
#include "sim_model.h"

#define S_PAPER_TOL 0.02 /* the acceptance: within 2% of the paper's totals */
#define S_EXACT 1e-12    /* sums of the same terms in another order */
#define S_OUT_MAX (1 << 20)

/* Run `eigenbatch ARGS` with stdout into *out (caller frees) and stderr into *err; exit status. */
static int s_run(const char *args, char **out, char **err)
{
    char *tmp = eb_test_tmpdir(), cmd[8192], errpath[4200];
    snprintf(errpath, sizeof errpath, "%s/stderr", tmp);
    snprintf(cmd, sizeof cmd, "'%s' simulate %s 2>'%s'", eb_test_binary(), args, errpath);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *buf = calloc(1, S_OUT_MAX);
    assert_non_null(buf);
    size_t n = fread(buf, 1, S_OUT_MAX - 1, p);
    buf[n] = '\0';
    int st = pclose(p);
    FILE *f = fopen(errpath, "r");
    char *e = calloc(1, S_OUT_MAX);
    assert_non_null(e);
    if (f) {
        size_t k = fread(e, 1, S_OUT_MAX - 1, f);
        e[k] = '\0';
        fclose(f);
    }
    eb_test_rmtree(tmp);
    free(tmp);
    *out = buf;
    if (err)
        *err = e;
    else
        free(e);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static json_t *s_run_json(const char *args)
{
    char *out = NULL, *err = NULL;
    int st = s_run(args, &out, &err);
    if (st != 0)
        fail_msg("simulate %s: status %d: %s", args, st, err);
    json_error_t jerr;
    json_t *root = json_loads(out, 0, &jerr);
    if (!json_is_object(root))
        fail_msg("simulate %s: not a JSON object: %s (%s)", args, jerr.text, out);
    free(out);
    free(err);
    return root;
}

static void test_paper_table3(void **state)
{
    (void)state;
    static const char *const names[] = {"BL", "GG", "ABS", "ABSA"};
    static const double paper[] = {16666, 6150, 2666, 3467};
    json_t *root = s_run_json("--paper-table3 --json");
    json_t *rows = json_object_get(root, "table3");
    assert_int_equal(json_array_size(rows), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *r = json_array_get(rows, i);
        assert_string_equal(json_string_value(json_object_get(r, "method")), names[i]);
        json_t *a = json_object_get(r, "paper_model");
        double total = json_number_value(json_object_get(a, "total_s"));
        if (!(fabs(total - paper[i]) <= S_PAPER_TOL * paper[i]))
            fail_msg("%s: %g s, the paper %g s", names[i], total, paper[i]);
    }
    /* BL and GG are not fitted: their update counts follow from ImageNet's size alone */
    assert_true(
        json_number_value(json_object_get(json_object_get(json_array_get(rows, 0), "paper_model"),
                                          "updates")) == 90.0 * 5005);
    assert_true(
        json_number_value(json_object_get(json_object_get(json_array_get(rows, 1), "paper_model"),
                                          "updates")) == 30.0 * 5005 + 30 * 501 + 20 * 51 + 10 * 6);
    json_decref(root);

    /* the text table prints the same totals */
    char *out = NULL;
    assert_int_equal(s_run("--paper-table3", &out, NULL), 0);
    assert_non_null(strstr(out, "16666"));
    assert_non_null(strstr(out, "backed out"));
    free(out);
}

/* The module's own view of the ABS back-out: the schedule it solves for has the counts the
 * paper's model needs, its levels are the doubling ones, and it is an ABS schedule. */
static void test_backout(void **state)
{
    (void)state;
    for (int m = SIM_ABS; m <= SIM_ABSA; m++) {
        struct sim_plan pl;
        struct sim_sched s = {0};
        struct sim_design d;
        struct sim_cost c;
        assert_int_equal(sim_paper_plan(m, &pl), 0);
        assert_int_equal(sim_plan_sched(&pl, &s), 0);
        sim_paper_design(&d, SIM_PAPER_PROCS);
        sim_cost(&d, &s, &c);
        assert_true(eb_test_reldiff(c.total_s, sim_paper_total(m), 0) < 1e-9);
        assert_true(pl.grow_every > 1 && pl.grow_every < pl.epochs / 6);
        assert_true(s.phase[0].batch == SIM_PAPER_BATCH);
        assert_true(s.phase[s.n - 1].batch == SIM_PAPER_BATCH_MAX);
        /* one Hessian per epoch end below B_max: 6 levels of grow_every epochs */
        assert_true(eb_test_reldiff(c.hessians, 6 * pl.grow_every, 0) < 1e-9);
        assert_int_equal(s.adversarial, m == SIM_ABSA);
        sim_sched_clear(&s);
        sim_sched_clear(&s); /* safe twice */
    }
    /* a total no schedule reaches is refused */
    struct sim_plan pl;
    struct sim_design d;
    assert_int_equal(sim_paper_plan(SIM_ABS, &pl), 0);
    sim_paper_design(&d, SIM_PAPER_PROCS);
    assert_int_equal(sim_backout_grow_every(&d, &pl, 1.0), RT_ERR_ARG);
}

static void test_comm_monotonic(void **state)
{
    (void)state;
    struct sim_design ring, ps;
    sim_paper_design(&ring, 8);
    /* the paper's 1.5e-2 s at 512 processes comes out of the alpha-beta ring */
    ring.procs = SIM_PAPER_PROCS;
    assert_true(eb_test_reldiff(sim_update_comm(&ring), SIM_PAPER_COMM_S, 0) < 1e-12);
    memset(&ps, 0, sizeof ps);
    ps.kind = SIM_MODEL_PS;
    ps.bytes = 4 * SIM_RESNET18_PARAMS;
    sim_here_hw(&ps.hw);
    assert_true(ps.hw.msg_s > 0);
    double prev_ring = -1, prev_ps = -1;
    for (double p = 8; p <= 4096; p *= 2) {
        ring.procs = ps.procs = p;
        double r = sim_update_comm(&ring), s = sim_update_comm(&ps);
        if (!(r > prev_ring))
            fail_msg("ring comm %g s at %g processes, %g s at half", r, p, prev_ring);
        if (!(s >= prev_ps))
            fail_msg("sharded comm %g s at %g workers, %g s at half", s, p, prev_ps);
        prev_ring = r;
        prev_ps = s;
    }
    /* one shard per worker and no per-message cost: the same time for every W */
    ps.hw.msg_s = 0;
    ps.procs = 8;
    double c8 = sim_update_comm(&ps);
    ps.procs = 4096;
    assert_true(eb_test_reldiff(sim_update_comm(&ps), c8, 0) < S_EXACT);
    assert_true(eb_test_reldiff(c8, 2 * (ps.bytes / ps.hw.bw + ps.hw.latency_s), 0) < S_EXACT);
    /* fewer shards than workers: a shard's link carries W / S gradients */
    ps.shards = 1;
    ps.procs = 4;
    assert_true(eb_test_reldiff(sim_update_comm(&ps),
                                2 * (4 * ps.bytes / ps.hw.bw + ps.hw.latency_s), 0) < S_EXACT);
}

static void test_eigen_off_path(void **state)
{
    (void)state;
    struct sim_plan pl;
    struct sim_sched s = {0};
    assert_int_equal(sim_paper_plan(SIM_ABS, &pl), 0);
    assert_int_equal(sim_plan_sched(&pl, &s), 0);
    assert_true(sim_sched_hessians(&s) > 0);
    struct sim_design d;
    memset(&d, 0, sizeof d);
    d.kind = SIM_MODEL_PS;
    d.procs = SIM_PAPER_PROCS;
    d.bytes = 4 * SIM_RESNET18_PARAMS;
    sim_here_hw(&d.hw);
    assert_true(d.hw.hessian_s > 0);
    /* async: the update time alone */
    double updates_only = 0;
    for (size_t i = 0; i < s.n; i++)
        updates_only +=
            s.phase[i].updates *
            (sim_update_compute(&d, s.phase[i].batch, s.phase[i].gamma, 0) + sim_update_comm(&d));
    struct sim_cost async, sync, ring;
    sim_cost(&d, &s, &async);
    assert_true(async.hessian_s == 0);
    assert_true(eb_test_reldiff(async.total_s, updates_only, 0) < S_EXACT);
    /* sync: each measured epoch end waits for a Hessian and a snapshot */
    d.sync = 1;
    sim_cost(&d, &s, &sync);
    double wait = d.hw.hessian_s + d.bytes / d.hw.bw + d.hw.latency_s;
    assert_true(eb_test_reldiff(sync.total_s - async.total_s, sim_sched_hessians(&s) * wait, 0) <
                1e-9);
    /* the paper's model: always on the path */
    sim_paper_design(&d, SIM_PAPER_PROCS);
    sim_cost(&d, &s, &ring);
    assert_true(eb_test_reldiff(ring.hessian_s, sim_sched_hessians(&s) * SIM_PAPER_HESSIAN_S, 0) <
                S_EXACT);
    sim_sched_clear(&s);
}

static void test_plan_rules(void **state)
{
    (void)state;
    struct sim_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.method = SIM_ABSA;
    pl.samples = 1000;
    pl.epochs = 40;
    pl.batch = 100;
    pl.batch_max = 400;
    pl.beta = 2;
    pl.grow_every = 10;
    pl.gamma = 0.2;
    pl.omega = 2;
    pl.tau = 15;
    struct sim_sched s = {0};
    assert_int_equal(sim_plan_sched(&pl, &s), 0);
    /* 10 epochs at 100 (gamma 0.2), 5 at 200 (0.1), 5 at 200 after tau, 20 at 400 */
    assert_int_equal(s.n, 4);
    static const double batch[] = {100, 200, 200, 400}, gamma[] = {0.2, 0.1, 0, 0};
    static const double updates[] = {100, 25, 25, 60}, hess[] = {10, 5, 5, 0};
    for (size_t i = 0; i < 4; i++) {
        assert_true(s.phase[i].batch == batch[i]);
        assert_true(s.phase[i].gamma == gamma[i]);
        assert_true(s.phase[i].updates == updates[i]);
        assert_true(s.phase[i].hessians == hess[i]);
    }
    /* GG: x10 at 10 and 20 epochs, capped at 5000; ceil(1000 / B) updates per epoch */
    memset(&pl, 0, sizeof pl);
    pl.method = SIM_GG;
    pl.samples = 1000;
    pl.epochs = 30;
    pl.batch = 64;
    pl.batch_max = 5000;
    pl.gg_factor = 10;
    pl.decay[0] = 10;
    pl.decay[1] = 20;
    pl.n_decay = 2;
    assert_int_equal(sim_plan_sched(&pl, &s), 0);
    assert_int_equal(s.n, 3);
    assert_true(s.phase[2].batch == 5000);
    assert_true(sim_sched_updates(&s) == 10 * 16 + 10 * 2 + 10 * 1);
    assert_true(sim_sched_hessians(&s) == 0);
    /* inconsistent rules are refused, not asserted */
    pl.decay[1] = 5;
    assert_int_equal(sim_plan_sched(&pl, &s), RT_ERR_ARG);
    assert_int_equal(s.n, 0);
    sim_sched_clear(&s);
}

static void test_metrics(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), path[4200], args[8400];
    snprintf(path, sizeof path, "%s/metrics.jsonl", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"event\":\"step\",\"epoch\":0,\"step\":5,\"batch_size\":128}\n"
               "{\"event\":\"eig\",\"epoch\":0,\"measured\":true,\"batch_size\":128}\n"
               "{\"event\":\"epoch\",\"epoch\":0,\"step\":10,\"batch_size\":128,\"gamma\":0.2}\n"
               "{\"event\":\"eig\",\"epoch\":1,\"measured\":true}\n"
               "{\"event\":\"epoch\",\"epoch\":1,\"step\":20,\"batch_size\":128,\"gamma\":0.2}\n"
               "{\"event\":\"resume\",\"epoch\":1}\n"
               "\n"
               "{\"event\":\"eig\",\"epoch\":2,\"measured\":false}\n"
               "{\"event\":\"epoch\",\"epoch\":2,\"step\":25,\"batch_size\":256,\"gamma\":0}\n");
    fclose(f);
    snprintf(args, sizeof args, "--metrics '%s' --name r1 --procs 8,16 --json", path);
    json_t *root = s_run_json(args);
    json_t *sc = json_array_get(json_object_get(root, "schedules"), 0);
    assert_string_equal(json_string_value(json_object_get(sc, "name")), "r1");
    assert_true(json_number_value(json_object_get(sc, "updates")) == 25);
    assert_true(json_number_value(json_object_get(sc, "hessians")) == 2);
    assert_true(json_is_true(json_object_get(sc, "adversarial")));
    /* 2 process counts x 2 models */
    assert_int_equal(json_array_size(json_object_get(root, "scan")), 4);
    json_decref(root);

    /* a damaged line is an error naming the file and the line */
    f = fopen(path, "a");
    assert_non_null(f);
    fprintf(f, "{\"event\":\"epoch\", truncated\n");
    fclose(f);
    snprintf(args, sizeof args, "--metrics '%s'", path);
    char *out = NULL, *err = NULL, want[4300];
    assert_int_equal(s_run(args, &out, &err), 2);
    snprintf(want, sizeof want, "%s:10:", path);
    if (!strstr(err, want))
        fail_msg("the error does not name %s: %s", want, err);
    free(out);
    free(err);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *args; /* command line */
        const char *says; /* the error names this */
    } cases[] = {
        {"--procs 8,x", "--procs"},
        {"--epochs 5", "--method"},
        {"--method XYZ", "--method"},
        {"--epochs -1 --method BL", "--epochs"},
        {"--hw gpu", "--hw"},
        {"--decisions maybe", "--decisions"},
        {"--metrics /nonexistent/metrics.jsonl", "/nonexistent/metrics.jsonl"},
        {"--frobnicate", "--frobnicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL, *err = NULL;
        int st = s_run(cases[i].args, &out, &err);
        if (st != 2 || !strstr(err, cases[i].says))
            fail_msg("simulate %s: status %d, stderr '%s' (expected 2 naming %s)", cases[i].args,
                     st, err, cases[i].says);
        free(out);
        free(err);
    }
}

/* --method: the rules on the command line give the module's schedule; the default scan has the
 * four paper schedules on ten process counts; --plot writes a PNG when gnuplot is installed. */
static void test_scan(void **state)
{
    (void)state;
    json_t *root = s_run_json("--method ABS --epochs 30 --batch 128 --batch-max 512 "
                              "--samples 60000 --grow-every 10 --json");
    json_t *sc = json_array_get(json_object_get(root, "schedules"), 0);
    assert_true(json_number_value(json_object_get(sc, "updates")) == 10.0 * (469 + 235 + 118));
    assert_true(json_number_value(json_object_get(sc, "hessians")) == 20);
    json_decref(root);
    root = s_run_json("--json");
    assert_int_equal(json_array_size(json_object_get(root, "schedules")), 4);
    assert_int_equal(json_array_size(json_object_get(root, "scan")), 10 * 4 * 2);
    json_decref(root);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        return;
    char *tmp = eb_test_tmpdir(), args[4300];
    snprintf(args, sizeof args, "--plot '%s/t.png'", tmp);
    char *out = NULL;
    assert_int_equal(s_run(args, &out, NULL), 0);
    free(out);
    snprintf(args, sizeof args, "%s/t.png", tmp);
    FILE *f = fopen(args, "rb");
    assert_non_null(f);
    unsigned char sig[4] = {0};
    assert_int_equal(fread(sig, 1, 4, f), 4);
    fclose(f);
    assert_memory_equal(sig, "\x89PNG", 4);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paper_table3),   cmocka_unit_test(test_backout),
        cmocka_unit_test(test_comm_monotonic), cmocka_unit_test(test_eigen_off_path),
        cmocka_unit_test(test_plan_rules),     cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
