/*
 * cluster_fault: the rollback decision and its record (see cluster_fault.h).
 */
#include "cluster_fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_ckpt.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_metrics.h"

/* The "rollback" event, appended to OUTPUT/metrics.jsonl (a failure to write it is logged: the
 * rollback goes on). */
static void s_rollback_event(const struct app_opts *o, long long from_step, const char *ckpt,
                             uint64_t epoch, const char *why, int left)
{
    char path[PATH_MAX];
    rt_metrics_t *m = NULL;
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->output_dir);
    if (rt_metrics_open(path, 1, &m)) {
        RT_WARN("rollback", "no rollback event: %s", rt_err_msg());
        return;
    }
    rt_metrics_begin(m, "rollback");
    if (from_step >= 0)
        rt_metrics_int(m, "from_step", from_step);
    else
        rt_metrics_str(m, "from_step", NULL);
    rt_metrics_str(m, "checkpoint", ckpt);
    rt_metrics_int(m, "epoch", (long long)epoch);
    rt_metrics_str(m, "reason", why);
    rt_metrics_int(m, "rollbacks_left", left);
    if (rt_metrics_end(m))
        RT_WARN("rollback", "rollback event: %s", rt_err_msg());
    rt_metrics_close(&m);
}

int cluster_fault_rollback(const struct app_opts *o, struct cluster_fault *f, const char *why,
                           long long from_step)
{
    /* the detail may live in rt_err's buffer: keep it */
    char reason[512], root_buf[PATH_MAX];
    snprintf(reason, sizeof reason, "%s", why);
    const char *root = o->output_dir ? app_opts_ckpt_root(o, root_buf, sizeof root_buf) : NULL;
    uint64_t epoch = 0;
    if (!o->fault.rollback) {
        rt_err_set(RT_ERR_NONFINITE, "%s", reason);
        return 0;
    }
    if (f->rollbacks >= o->fault.max_rollbacks) {
        rt_err_set(RT_ERR_NONFINITE, "%s; rollback limit reached (fault.max_rollbacks %ld)", reason,
                   o->fault.max_rollbacks);
        return 0;
    }
    if (!root || rt_ckpt_latest(root, f->resume, sizeof f->resume, &epoch)) {
        rt_err_set(RT_ERR_NONFINITE, "%s; no checkpoint to roll back to", reason);
        return 0;
    }
    f->rollbacks++;
    int left = (int)(o->fault.max_rollbacks - f->rollbacks);
    RT_WARN("rollback",
            "%s: rolling every role back to %s (epoch %llu), %d rollback(s) left after this one",
            reason, f->resume, (unsigned long long)epoch, left);
    s_rollback_event(o, from_step, f->resume, epoch, reason, left);
    return 1;
}

long long cluster_fault_step(const char *why)
{
    static const char *const marks[] = {"of step ", "from version "};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        const char *p = strstr(why, marks[i]);
        char *end;
        if (!p)
            continue;
        p += strlen(marks[i]);
        long long v = strtoll(p, &end, 10);
        if (end != p && v >= 0)
            return v;
    }
    return -1;
}
