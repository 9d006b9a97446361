/*
 * eb_test_ckpt: the fixture of the checkpoint tests (see eb_test_ckpt.h).
 */
#include "eb_test.h"
#include "eb_test_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "eb_test_data.h"

#define S_RECORDS 192 /* records of the tiny dataset (label i: S_RECORDS classes) */
#define S_SIDE 8      /* 1 x 8 x 8 images */

void eb_ckpt_setup(struct eb_ckpt_fixture *f)
{
    f->tmp = eb_test_tmpdir();
    snprintf(f->db, sizeof f->db, "%s/db", f->tmp);
    eb_test_make_raw_db(f->db, S_RECORDS, 1, S_SIDE, S_SIDE);
    char text[8192];
    /* ABS with sync decisions: kappa 2 and the eigenvalue decide when B grows */
    snprintf(text, sizeof text,
             "model: {name: cnn, classes: %d}\n"
             "data: {train: %s, crop_pad: 1, flip: true}\n"
             "cluster: {shards: 2, workers: 1, transport: inproc, timeout_ms: 20000}\n"
             "schedule: {method: ABS, batch: 32, batch_max: 128, lr: 0.05, epochs: %d}\n"
             "abs: {kappa: 2, hessian_batch: 32, decisions: sync}\n"
             "train: {micro_batch: 32, log_every: 2, eval_every: 1, seed: 5, progress_s: 100}\n",
             S_RECORDS, f->db, EB_CKPT_EPOCHS);
    snprintf(f->cfg, sizeof f->cfg, "%s/run.yaml", f->tmp);
    FILE *fp = fopen(f->cfg, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

void eb_ckpt_teardown(struct eb_ckpt_fixture *f)
{
    eb_test_rmtree(f->tmp);
    free(f->tmp);
    f->tmp = NULL;
}

int eb_ckpt_run(const struct eb_ckpt_fixture *f, const char *cmd, const char *out,
                const char *extra, const char *err)
{
    char line[32768], errp[EB_CKPT_PATH + 32];
    if (!err) {
        snprintf(errp, sizeof errp, "%s/last-err.txt", f->tmp);
        err = errp;
    }
    snprintf(line, sizeof line,
             "EB_LOG=warn '%s' %s --config '%s' --output-dir '%s' %s >/dev/null 2>'%s'",
             eb_test_binary(), cmd, f->cfg, out, extra, err);
    int st = system(line);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void eb_ckpt_run_ok(const struct eb_ckpt_fixture *f, const char *cmd, const char *out,
                    const char *extra)
{
    char err[EB_CKPT_PATH + 32];
    snprintf(err, sizeof err, "%s/ok-err.txt", f->tmp);
    int rc = eb_ckpt_run(f, cmd, out, extra, err);
    if (rc) {
        char *msg = eb_ckpt_slurp(err);
        fprintf(stderr, "%s %s failed (%d):\n%s\n", cmd, extra, rc, msg ? msg : "");
        free(msg);
    }
    assert_int_equal(rc, 0);
}

char *eb_ckpt_slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    return s;
}

int eb_ckpt_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

void eb_ckpt_same_file(const char *a, const char *b)
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

json_t *eb_ckpt_eig_events(const char *dir, int from, int *n_epoch, int *n_resume)
{
    char path[EB_CKPT_PATH + 32], line[16384];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    json_t *out = json_array();
    *n_epoch = *n_resume = 0;
    while (fgets(line, sizeof line, fp)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        const char *ev = json_string_value(json_object_get(j, "event"));
        assert_non_null(ev);
        *n_epoch += !strcmp(ev, "epoch");
        *n_resume += !strcmp(ev, "resume");
        if (!strcmp(ev, "eig") && json_integer_value(json_object_get(j, "epoch")) >= from) {
            json_t *e = json_object();
            const char *keys[] = {"epoch", "eigenvalue", "lambda_ref", "batch_size",
                                  "lr",    "apply_step", NULL};
            for (int k = 0; keys[k]; k++) {
                json_t *v = json_object_get(j, keys[k]);
                json_object_set(e, keys[k], v ? v : json_null());
            }
            json_array_append_new(out, e);
        }
        json_decref(j);
    }
    fclose(fp);
    return out;
}
