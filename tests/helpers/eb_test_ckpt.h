/*
 * eb_test_ckpt: the fixture of the checkpoint tests that run the `eigenbatch` binary: a tiny LMDB
 * and an ABS configuration with `abs.decisions: sync` and one worker (deterministic: no order of
 * summed pushes), plus helpers to run it and compare what it leaves.
 */
#ifndef EB_TEST_CKPT_H
#define EB_TEST_CKPT_H

#include <jansson.h>

#define EB_CKPT_EPOCHS 5  /* the whole run */
#define EB_CKPT_SPLIT 3   /* an interrupted run stops after this many epochs */
#define EB_CKPT_PATH 4300 /* bytes of a path in these tests */

/* The fixture: a temporary directory with the LMDB and the configuration. */
struct eb_ckpt_fixture {
    char *tmp;              /* temporary directory (eb_test_tmpdir) */
    char db[EB_CKPT_PATH];  /* the tiny LMDB */
    char cfg[EB_CKPT_PATH]; /* the run's configuration (EB_CKPT_EPOCHS epochs) */
};

void eb_ckpt_setup(struct eb_ckpt_fixture *f);
void eb_ckpt_teardown(struct eb_ckpt_fixture *f);

/* `eigenbatch CMD` (train or launch) on the configuration into out with extra arguments; stderr
 * into err (NULL: a file of the fixture). Returns the exit status. */
int eb_ckpt_run(const struct eb_ckpt_fixture *f, const char *cmd, const char *out,
                const char *extra, const char *err);

/* The same, failing the test (with its stderr printed) unless it succeeds. */
void eb_ckpt_run_ok(const struct eb_ckpt_fixture *f, const char *cmd, const char *out,
                    const char *extra);

/* Whole file as a string (caller frees); NULL when it does not exist. */
char *eb_ckpt_slurp(const char *path);

/* 1 when path exists. */
int eb_ckpt_exists(const char *path);

/* Fail unless files a and b hold the same bytes. */
void eb_ckpt_same_file(const char *a, const char *b);

/* The "eig" events of dir/metrics.jsonl with epoch >= from, reduced to the fields the ABS state
 * decides, as a JSON array (caller decrefs); *n_epoch and *n_resume count the "epoch" and
 * "resume" events. */
json_t *eb_ckpt_eig_events(const char *dir, int from, int *n_epoch, int *n_resume);

/* A checkpoint found on disk before a resume: where the resumed run must say it started. */
struct eb_ckpt_point {
    int epoch;                    /* epochs completed (the N of epoch-N); 0: no checkpoint */
    long long step;               /* its manifest's step */
    char path[EB_CKPT_PATH + 64]; /* DIR/checkpoints/epoch-NNNNNN, as `--resume auto` names it */
};

/* The newest checkpoint under dir/checkpoints that has its MANIFEST.json, into *p (p->epoch 0 when
 * there is none). The manifest is written last, after every other file is renamed into place, so
 * one that exists marks a complete checkpoint unless a test corrupted a file after it. */
void eb_ckpt_newest(const char *dir, struct eb_ckpt_point *p);

/* Fail unless dir/metrics.jsonl shows a run resumed from `from` and trained on to `epochs`:
 * from->epoch > 0 (not a fresh start), the last "resume" event names from's path, epoch and step,
 * and the "epoch" events after it (0-based: the first epoch trained after a checkpoint of N
 * completed epochs is epoch N) are from->epoch .. epochs - 1 in order, so none before the
 * checkpoint was trained again; and every epoch before the checkpoint has its event, above the
 * resume or, when it died with the interrupted run, written again after it ("recovered"). */
void eb_ckpt_assert_resumed(const char *dir, const struct eb_ckpt_point *from, int epochs);

#endif
