/*
 * test_ckpt_resume: resuming the process roles and after a crash. `eigenbatch launch` (shards,
 * worker and eigen service as processes) stopped after E1 epochs and resumed with `--resume auto`
 * (which launch resolves once and passes on) ends where `train` ends straight, bitwise; and a
 * `train` killed with SIGKILL just after its first checkpoint (in the middle of a later epoch,
 * maybe while writing a checkpoint) resumes to those weights too. Both resumed runs log a
 * `resume` event naming the newest complete checkpoint on disk before them, and train only the
 * epochs after it.
 */
#include "eb_test.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "eb_test_ckpt.h"

static struct eb_ckpt_fixture s_f; /* the tiny dataset and the configuration */

/* `launch` (shards, worker and eigen service as processes) passes --resume on: stopped after
 * EB_CKPT_SPLIT epochs and resumed, it ends where `train` ends straight. */
static void test_launch_resume(void **state)
{
    (void)state;
    char a[4300], l[4300], extra[4400], wa[4400], wl[4400];
    struct eb_ckpt_point from = {0};
    snprintf(a, sizeof a, "%s/straight", s_f.tmp);
    snprintf(l, sizeof l, "%s/launch", s_f.tmp);
    for (int part = 0; part < 2; part++) {
        if (part) {
            eb_ckpt_newest(l, &from);
            assert_int_equal(from.epoch, EB_CKPT_SPLIT);
        }
        snprintf(extra, sizeof extra, "--set schedule.epochs=%d%s",
                 part ? EB_CKPT_EPOCHS : EB_CKPT_SPLIT, part ? " --resume auto" : "");
        eb_ckpt_run_ok(&s_f, "launch", l, extra);
    }
    eb_ckpt_assert_resumed(l, &from, EB_CKPT_EPOCHS);
    snprintf(wa, sizeof wa, "%s/weights.safetensors", a);
    snprintf(wl, sizeof wl, "%s/weights.safetensors", l);
    eb_ckpt_same_file(wa, wl);
    int e, r;
    json_t *j = eb_ckpt_eig_events(l, 0, &e, &r);
    json_decref(j);
    assert_int_equal(e, EB_CKPT_EPOCHS);
    assert_int_equal(r, 1);
}

/* A real crash: SIGKILL once the first checkpoint is complete (somewhere in a later epoch, maybe
 * while a checkpoint is being written); `--resume auto` still ends at the straight run's weights.
 */
static void test_kill_resume(void **state)
{
    (void)state;
    char a[4300], k[4300], extra[4400], wa[4400], wk[4400], man[4500], epochs[64];
    snprintf(a, sizeof a, "%s/straight", s_f.tmp);
    snprintf(k, sizeof k, "%s/killed", s_f.tmp);
    snprintf(epochs, sizeof epochs, "schedule.epochs=%d", EB_CKPT_EPOCHS);
    snprintf(man, sizeof man, "%s/checkpoints/epoch-000001/%s", k, "MANIFEST.json");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        setenv("EB_LOG", "error", 1);
        execl(eb_test_binary(), "eigenbatch", "train", "--config", s_f.cfg, "--output-dir", k,
              "--set", epochs, (char *)NULL);
        _exit(127);
    }
    int st = 0, ended = 0;
    while (!eb_ckpt_exists(man) && !(ended = waitpid(pid, &st, WNOHANG) == pid)) {
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
    assert_false(eb_ckpt_exists(wk));
    /* it resumes from the newest checkpoint complete at the kill (epoch 1 or, rarely, later) */
    struct eb_ckpt_point from;
    eb_ckpt_newest(k, &from);
    snprintf(extra, sizeof extra, "--set %s --resume auto", epochs);
    eb_ckpt_run_ok(&s_f, "train", k, extra);
    eb_ckpt_assert_resumed(k, &from, EB_CKPT_EPOCHS);
    snprintf(wa, sizeof wa, "%s/weights.safetensors", a);
    eb_ckpt_same_file(wa, wk);
}

/* Checkpoints within epochs (checkpoint.every_steps): a run resumed from one in the middle of an
 * epoch trains exactly the samples that epoch had not seen yet, then the rest: it ends at the
 * straight run's weights, bitwise, and its epoch events start with the interrupted epoch. */
static void test_mid_epoch_resume(void **state)
{
    (void)state;
    char a[4300], m[4300], extra[4800], wa[4400], wm[4400], root[4320];
    snprintf(a, sizeof a, "%s/straight", s_f.tmp);
    snprintf(m, sizeof m, "%s/mid", s_f.tmp);
    eb_ckpt_run_ok(&s_f, "train", m,
                   "--set checkpoint.every_steps=4 --set checkpoint.every_epochs=0 "
                   "--set checkpoint.keep=1000");
    /* the newest checkpoint within an epoch after the first (e epochs done, and some steps of
     * epoch e) */
    struct eb_ckpt_point from = {0};
    snprintf(root, sizeof root, "%s/checkpoints", m);
    DIR *d = opendir(root);
    assert_non_null(d);
    struct dirent *de;
    int n_mid = 0;
    char seen[2048] = "";
    while ((de = readdir(d))) {
        if (strlen(seen) + strlen(de->d_name) + 2 < sizeof seen) {
            strcat(seen, " ");
            strcat(seen, de->d_name);
        }
        int e = 0;
        long long st = 0;
        if (sscanf(de->d_name, "epoch-%d-step-%lld", &e, &st) != 2)
            continue;
        n_mid++;
        if (e >= 1 && st > from.step) {
            from.epoch = e;
            from.step = st;
            snprintf(from.path, sizeof from.path, "%s/%s", root, de->d_name);
        }
    }
    closedir(d);
    assert_true(n_mid >= 2);
    if (from.epoch < 1)
        fail_msg("no checkpoint within an epoch after the first under %s:%s", root, seen);
    snprintf(wm, sizeof wm, "%s/weights.safetensors", m);
    assert_int_equal(unlink(wm), 0);
    snprintf(extra, sizeof extra, "--resume %s", from.path);
    eb_ckpt_run_ok(&s_f, "train", m, extra);
    eb_ckpt_assert_resumed(m, &from, EB_CKPT_EPOCHS);
    snprintf(wa, sizeof wa, "%s/weights.safetensors", a);
    eb_ckpt_same_file(wa, wm);
}

static int s_setup(void **state)
{
    (void)state;
    eb_ckpt_setup(&s_f);
    /* the reference: the whole run, straight */
    char a[EB_CKPT_PATH + 32];
    snprintf(a, sizeof a, "%s/straight", s_f.tmp);
    eb_ckpt_run_ok(&s_f, "train", a, "");
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    eb_ckpt_teardown(&s_f);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_launch_resume),
        cmocka_unit_test(test_kill_resume),
        cmocka_unit_test(test_mid_epoch_resume),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
