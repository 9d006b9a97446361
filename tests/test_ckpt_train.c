/*
 * test_ckpt_train: checkpoints and `--resume` through the real `eigenbatch train` binary, on a tiny
 * LMDB. An ABS run with `abs.decisions: sync` (deterministic: one worker, so no order of summed
 * pushes) trained E epochs straight ends with exactly the weights (bitwise) of a run stopped after
 * E1 epochs and resumed with `--resume auto` to E; the eigen service's decisions after the resume
 * (eigenvalue, lambda_ref, batch, lr) equal the straight run's, so the ABS state came through the
 * checkpoint; metrics.jsonl is appended to. `auto` skips a newest checkpoint without manifest
 * (naming it) and resumes from the one before, again to the same weights. A corrupted shard file,
 * a missing PATH and a checkpoint of another model are errors naming the file and the field.
 * keep = 2 leaves the two newest checkpoints. A run killed (SIGKILL) in the middle resumes to the
 * same weights too, and `launch` passes --resume on to its processes.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "eb_test_data.h"

#define N_REC 192 /* records of the tiny dataset (label i: N_REC classes) */
#define SIDE 8    /* 1 x 8 x 8 images */
#define EPOCHS 5  /* the whole run */
#define SPLIT 3   /* the interrupted run stops after this many epochs */

static char *s_tmp;     /* the test's temporary directory */
static char s_db[4200]; /* the tiny LMDB */
static char s_cfg[4300]; /* the run's configuration */

static int s_run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Whole file as a string (caller frees); NULL when it does not exist. */
static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

/* `eigenbatch train` on the configuration into out with extra arguments; stderr into err (may be
 * NULL: shown only on failure). Returns the exit status. */
static int s_train(const char *out, const char *extra, const char *err)
{
    char cmd[32768], errp[4400];
    if (!err) {
        snprintf(errp, sizeof errp, "%s/last-err.txt", s_tmp);
        err = errp;
    }
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' train --config '%s' --output-dir '%s' %s >/dev/null 2>'%s'",
             eb_test_binary(), s_cfg, out, extra, err);
    return s_run(cmd);
}

/* Run and require success (printing stderr otherwise). */
static void s_train_ok(const char *out, const char *extra)
{
    char err[4400];
    snprintf(err, sizeof err, "%s/ok-err.txt", s_tmp);
    int rc = s_train(out, extra, err);
    if (rc) {
        char *msg = s_slurp(err);
        fprintf(stderr, "train %s failed (%d):\n%s\n", extra, rc, msg ? msg : "");
        free(msg);
    }
    assert_int_equal(rc, 0);
}

static void s_assert_same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    assert_non_null(fa);
    assert_non_null(fb);
    int ca, cb;
    long pos = 0;
    do {
        ca = fgetc(fa);
        cb = fgetc(fb);
        if (ca != cb)
            fprintf(stderr, "%s and %s differ at byte %ld\n", a, b, pos);
        assert_int_equal(ca, cb);
        pos++;
    } while (ca != EOF);
    fclose(fa);
    fclose(fb);
}

/* The "eig" events of a metrics file with epoch >= from, as one JSON array (caller decrefs), the
 * fields that the ABS state decides. Also counts the "epoch" and "resume" events. */
static json_t *s_eig_events(const char *dir, int from, int *n_epoch, int *n_resume)
{
    char path[4400], line[16384];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    json_t *out = json_array();
    *n_epoch = *n_resume = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        const char *ev = json_string_value(json_object_get(j, "event"));
        assert_non_null(ev);
        *n_epoch += !strcmp(ev, "epoch");
        *n_resume += !strcmp(ev, "resume");
        if (!strcmp(ev, "eig") && json_integer_value(json_object_get(j, "epoch")) >= from) {
            json_t *e = json_object();
            const char *keys[] = {"epoch", "eigenvalue", "lambda_ref", "batch_size", "lr",
                                  "apply_step", NULL};
            for (int k = 0; keys[k]; k++) {
                json_t *v = json_object_get(j, keys[k]);
                json_object_set(e, keys[k], v ? v : json_null());
            }
            json_array_append_new(out, e);
        }
        json_decref(j);
    }
    fclose(f);
    return out;
}

static int s_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Straight vs. interrupted and resumed, twice (the second time from an older checkpoint because
 * the newest lacks its manifest); then keep = 2. */
static void test_resume_same_weights(void **state)
{
    (void)state;
    char a[4300], b[4300], wa[4400], wb[4400], extra[4400], path[4500], err[4400];
    snprintf(a, sizeof a, "%s/straight", s_tmp);
    snprintf(b, sizeof b, "%s/resumed", s_tmp);
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d", EPOCHS);
    s_train_ok(a, extra);
    /* the interrupted run: the same configuration, stopped after SPLIT epochs */
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d", SPLIT);
    s_train_ok(b, extra);
    snprintf(path, sizeof path, "%s/checkpoints/epoch-%06d/MANIFEST.json", b, SPLIT);
    assert_true(s_exists(path));
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d --resume auto", EPOCHS);
    s_train_ok(b, extra);
    snprintf(wa, sizeof wa, "%s/weights.safetensors", a);
    snprintf(wb, sizeof wb, "%s/weights.safetensors", b);
    s_assert_same_file(wa, wb);
    /* the decisions after the resume are the straight run's: the ABS state came through */
    int ea, eb, ra, rb;
    json_t *ja = s_eig_events(a, SPLIT - 1, &ea, &ra), *jb = s_eig_events(b, SPLIT - 1, &eb, &rb);
    assert_true(json_array_size(ja) >= 2);
    if (!json_equal(ja, jb)) {
        char *x = json_dumps(ja, 0), *y = json_dumps(jb, 0);
        fprintf(stderr, "straight %s\nresumed  %s\n", x, y);
        free(x);
        free(y);
    }
    assert_true(json_equal(ja, jb));
    json_decref(ja);
    json_decref(jb);
    /* metrics.jsonl was appended to: every epoch's event, and the resume event */
    assert_int_equal(ea, EPOCHS);
    assert_int_equal(ra, 0);
    assert_int_equal(eb, EPOCHS);
    assert_int_equal(rb, 1);
    /* keep = 2 (the default): the two newest of the EPOCHS checkpoints remain */
    for (int e = 1; e <= EPOCHS; e++) {
        snprintf(path, sizeof path, "%s/checkpoints/epoch-%06d", b, e);
        assert_int_equal(s_exists(path), e > EPOCHS - 2);
    }

    /* the newest checkpoint loses its manifest (a crash before it was written): auto warns,
     * names it, and resumes from the one before; the result is the same again */
    char c[4300];
    snprintf(c, sizeof c, "%s/skip", s_tmp);
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d", SPLIT + 1);
    s_train_ok(c, extra);
    snprintf(path, sizeof path, "%s/checkpoints/epoch-%06d/MANIFEST.json", c, SPLIT + 1);
    assert_int_equal(unlink(path), 0);
    snprintf(err, sizeof err, "%s/skip-err.txt", s_tmp);
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d --resume auto", EPOCHS);
    assert_int_equal(s_train(c, extra, err), 0);
    char *msg = s_slurp(err);
    assert_non_null(msg);
    snprintf(path, sizeof path, "epoch-%06d", SPLIT + 1);
    if (!strstr(msg, path) || !strstr(msg, "skipping"))
        fprintf(stderr, "%s\n", msg);
    assert_non_null(strstr(msg, "skipping"));
    assert_non_null(strstr(msg, path));
    free(msg);
    snprintf(path, sizeof path, "%s/weights.safetensors", c);
    s_assert_same_file(wa, path);
}

/* `launch` (shards, worker and eigen service as processes) passes --resume on: stopped after
 * SPLIT epochs and resumed, it ends where `train` ends straight. */
static void test_launch_resume(void **state)
{
    (void)state;
    char a[4300], l[4300], extra[4400], cmd[20000], wa[4400], wl[4400];
    snprintf(a, sizeof a, "%s/straight", s_tmp); /* written by test_resume_same_weights */
    snprintf(l, sizeof l, "%s/launch", s_tmp);
    for (int part = 0; part < 2; part++) {
        snprintf(extra, sizeof extra, "--set schedule.epochs=%d%s", part ? EPOCHS : SPLIT,
                 part ? " --resume auto" : "");
        snprintf(cmd, sizeof cmd,
                 "EB_LOG=warn '%s' launch --config '%s' --output-dir '%s' %s >/dev/null",
                 eb_test_binary(), s_cfg, l, extra);
        assert_int_equal(s_run(cmd), 0);
    }
    snprintf(wa, sizeof wa, "%s/weights.safetensors", a);
    snprintf(wl, sizeof wl, "%s/weights.safetensors", l);
    s_assert_same_file(wa, wl);
    int e, r;
    json_t *j = s_eig_events(l, 0, &e, &r);
    json_decref(j);
    assert_int_equal(e, EPOCHS);
    assert_int_equal(r, 1);
}

/* A real crash: SIGKILL once the first checkpoint is complete (somewhere in a later epoch, maybe
 * while a checkpoint is being written); `--resume auto` still ends at the straight run's weights. */
static void test_kill_resume(void **state)
{
    (void)state;
    char a[4300], k[4300], extra[4400], wa[4400], wk[4400], man[4500], epochs[64];
    snprintf(a, sizeof a, "%s/straight", s_tmp); /* written by test_resume_same_weights */
    snprintf(k, sizeof k, "%s/killed", s_tmp);
    snprintf(epochs, sizeof epochs, "schedule.epochs=%d", EPOCHS);
    snprintf(man, sizeof man, "%s/checkpoints/epoch-000001/%s", k, "MANIFEST.json");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        setenv("EB_LOG", "error", 1);
        execl(eb_test_binary(), "eigenbatch", "train", "--config", s_cfg, "--output-dir", k,
              "--set", epochs, (char *)NULL);
        _exit(127);
    }
    int st = 0, ended = 0;
    while (!s_exists(man) && !(ended = waitpid(pid, &st, WNOHANG) == pid)) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    if (!ended) {
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &st, 0), pid);
    }
    /* killed within a millisecond or so of epoch 1's checkpoint, epochs before the end */
    assert_true(WIFSIGNALED(st));
    snprintf(wk, sizeof wk, "%s/weights.safetensors", k);
    assert_false(s_exists(wk));
    snprintf(extra, sizeof extra, "--set %s --resume auto", epochs);
    s_train_ok(k, extra);
    snprintf(wa, sizeof wa, "%s/weights.safetensors", a);
    s_assert_same_file(wa, wk);
}

/* Bad checkpoints are errors naming the file and the field. */
static void test_resume_errors(void **state)
{
    (void)state;
    char d[4300], extra[8800], path[4500], err[4400], ck[4400];
    snprintf(d, sizeof d, "%s/bad", s_tmp);
    snprintf(err, sizeof err, "%s/bad-err.txt", s_tmp);
    s_train_ok(d, "--set schedule.epochs=1 --set schedule.method=BL");
    snprintf(ck, sizeof ck, "%s/checkpoints/epoch-000001", d);
    /* a missing PATH */
    snprintf(extra, sizeof extra, "--set schedule.method=BL --resume '%s/nowhere'", d);
    assert_int_equal(s_train(d, extra, err), 1);
    char *msg = s_slurp(err);
    assert_non_null(strstr(msg, "nowhere"));
    free(msg);
    /* another model (a different parameter count) */
    snprintf(extra, sizeof extra, "--set schedule.method=BL --set model.name=mlp --resume '%s'",
             ck);
    assert_int_equal(s_train(d, extra, err), 1);
    msg = s_slurp(err);
    if (!strstr(msg, "n_params"))
        fprintf(stderr, "%s\n", msg);
    assert_non_null(strstr(msg, "MANIFEST.json"));
    assert_non_null(strstr(msg, "n_params"));
    free(msg);
    /* another shard count */
    snprintf(extra, sizeof extra,
             "--set schedule.method=BL --set cluster.shards=3 --resume '%s'", ck);
    assert_int_equal(s_train(d, extra, err), 1);
    msg = s_slurp(err);
    assert_non_null(strstr(msg, "n_shards"));
    free(msg);
    /* a corrupted shard file: its crc32 no longer matches */
    snprintf(path, sizeof path, "%s/shard-1.safetensors", ck);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -3, SEEK_END);
    int ch = fgetc(f);
    fseek(f, -3, SEEK_END);
    fputc(ch ^ 0x5a, f);
    fclose(f);
    snprintf(extra, sizeof extra, "--set schedule.method=BL --resume '%s'", ck);
    assert_int_equal(s_train(d, extra, err), 1);
    msg = s_slurp(err);
    if (!strstr(msg, "shard-1.safetensors"))
        fprintf(stderr, "%s\n", msg);
    assert_non_null(strstr(msg, "shard-1.safetensors"));
    assert_non_null(strstr(msg, "crc32"));
    free(msg);
    /* and `auto` skips it: no complete checkpoint left, a fresh start */
    assert_int_equal(s_train(d, "--set schedule.epochs=1 --set schedule.method=BL --resume auto",
                             err),
                     0);
    msg = s_slurp(err);
    assert_non_null(strstr(msg, "epoch-000001"));
    free(msg);
}

static int s_setup(void **state)
{
    (void)state;
    s_tmp = eb_test_tmpdir();
    snprintf(s_db, sizeof s_db, "%s/db", s_tmp);
    eb_test_make_raw_db(s_db, N_REC, 1, SIDE, SIDE);
    char text[8192];
    /* ABS with sync decisions: kappa 2 and the eigenvalue decide when B grows */
    snprintf(text, sizeof text,
             "model: {name: cnn, classes: %d}\n"
             "data: {train: %s, crop_pad: 1, flip: true}\n"
             "cluster: {shards: 2, workers: 1, transport: inproc, timeout_ms: 20000}\n"
             "schedule: {method: ABS, batch: 32, batch_max: 128, lr: 0.05, epochs: %d}\n"
             "abs: {kappa: 2, hessian_batch: 32, decisions: sync}\n"
             "train: {micro_batch: 32, log_every: 2, eval_every: 1, seed: 5, progress_s: 100}\n",
             N_REC, s_db, EPOCHS);
    snprintf(s_cfg, sizeof s_cfg, "%s/run.yaml", s_tmp);
    FILE *f = fopen(s_cfg, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
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
        cmocka_unit_test(test_resume_same_weights),
        cmocka_unit_test(test_launch_resume),
        cmocka_unit_test(test_kill_resume),
        cmocka_unit_test(test_resume_errors),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
