/*
 * eb_test_ckpt: the fixture of the checkpoint tests (see eb_test_ckpt.h).
 */
#include "eb_test.h"
#include "eb_test_ckpt.h"

#include <dirent.h>
#include <stdint.h>
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
    snprintf(
        text, sizeof text,
        "model: {name: cnn, classes: %d}\n"
        "data: {train: %s, crop_pad: 1, flip: true}\n"
        "cluster: {shards: 2, workers: 1, transport: inproc, timeout_ms: 20000, balance: static}\n"
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
    char path[EB_CKPT_PATH + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    json_t *all = eb_test_events(path, NULL), *out = json_array(), *j;
    size_t i;
    *n_epoch = *n_resume = 0;
    json_array_foreach(all, i, j)
    {
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
    }
    json_decref(all);
    return out;
}

void eb_ckpt_newest(const char *dir, struct eb_ckpt_point *p)
{
    char root[EB_CKPT_PATH + 32], path[sizeof p->path], man[sizeof p->path + 32];
    memset(p, 0, sizeof *p);
    snprintf(root, sizeof root, "%s/checkpoints", dir);
    DIR *d = opendir(root);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int e = 0;
        char name[32];
        if (sscanf(de->d_name, "epoch-%d", &e) != 1 || e <= p->epoch)
            continue;
        snprintf(name, sizeof name, "epoch-%06d", e);
        if (strcmp(name, de->d_name))
            continue; /* not a checkpoint's name */
        snprintf(path, sizeof path, "%s/checkpoints/%s", dir, name);
        snprintf(man, sizeof man, "%s/MANIFEST.json", path);
        json_t *m = json_load_file(man, 0, NULL);
        if (!m)
            continue; /* incomplete: `--resume auto` skips it */
        if (json_integer_value(json_object_get(m, "epoch")) != e)
            fail_msg("%s: epoch is not %d", man, e);
        p->epoch = e;
        p->step = json_integer_value(json_object_get(m, "step"));
        memcpy(p->path, path, sizeof path);
        json_decref(m);
    }
    closedir(d);
}

/* 1 when the metrics event j is called name. */
static int s_event_is(const json_t *j, const char *name)
{
    const char *ev = json_string_value(json_object_get(j, "event"));
    return ev && !strcmp(ev, name);
}

void eb_ckpt_assert_resumed(const char *dir, const struct eb_ckpt_point *from, int epochs)
{
    char path[EB_CKPT_PATH + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    if (from->epoch <= 0)
        fail_msg("%s: no complete checkpoint before the resume (it would be a fresh start)", dir);
    json_t *all = eb_test_events(path, NULL), *j, *resume = NULL;
    size_t i, at = 0;
    json_array_foreach(all, i, j)
    {
        if (s_event_is(j, "resume")) {
            resume = j;
            at = i;
        }
    }
    if (!resume)
        fail_msg("%s: no resume event (the run started from scratch?)", path);
    const char *ck = json_string_value(json_object_get(resume, "checkpoint"));
    json_int_t re = json_integer_value(json_object_get(resume, "epoch")),
               rs = json_integer_value(json_object_get(resume, "step"));
    if (!ck || strcmp(ck, from->path) || re != from->epoch || rs != from->step)
        fail_msg("%s: resumed from %s (epoch %lld, step %lld), expected %s (epoch %d, step %lld)",
                 path, ck ? ck : "(none)", (long long)re, (long long)rs, from->path, from->epoch,
                 from->step);
    int next = from->epoch;
    uint64_t seen_before = 0; /* bit e: epoch e < from->epoch has an event */
    json_array_foreach(all, i, j)
    {
        if (!s_event_is(j, "epoch"))
            continue;
        json_int_t e = json_integer_value(json_object_get(j, "epoch"));
        if (i < at) { /* the interrupted run's: the epochs before the checkpoint count */
            if (e >= 0 && e < from->epoch && e < 64)
                seen_before |= 1ull << e;
            continue;
        }
        if (e == from->epoch - 1 && json_is_true(json_object_get(j, "recovered")) &&
            !(seen_before >> e & 1)) {
            seen_before |= 1ull << e; /* its event died with the interrupted run: written again */
            continue;
        }
        if (e < from->epoch)
            fail_msg("%s: epoch %lld trained again after resuming from epoch-%06d", path,
                     (long long)e, from->epoch);
        if (e != next)
            fail_msg("%s: epoch %lld after the resume, expected %d", path, (long long)e, next);
        next++;
    }
    if (next != epochs)
        fail_msg("%s: the resumed run ended after epoch %d, expected %d", path, next - 1,
                 epochs - 1);
    for (int e = 0; e < from->epoch && e < 64; e++)
        if (!(seen_before >> e & 1))
            fail_msg("%s: epoch %d has no event (nothing may be lost by a kill)", path, e);
    json_decref(all);
}
