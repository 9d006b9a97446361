/*
 * rt_decay: the learning rate's step decay (see rt_decay.h).
 */
#include "rt_decay.h"

#include <math.h>

#include "rt_err.h"

int rt_decay_check(const int32_t *epochs, int32_t n, double rho, int32_t run_epochs,
                   const char *who)
{
    if (n < 0 || n > RT_DECAY_MAX)
        return rt_err_set(RT_ERR_CONFIG, "%s: %d decay epochs (at most %d)", who, n, RT_DECAY_MAX);
    for (int i = 0; i < n; i++) {
        int32_t d = epochs[i];
        if (run_epochs > 0 && (d < 1 || d >= run_epochs))
            return rt_err_set(RT_ERR_CONFIG, "%s: decay epoch %d not in [1, epochs %d)", who, d,
                              run_epochs);
        if (d < 1)
            return rt_err_set(RT_ERR_CONFIG, "%s: decay epoch %d must be >= 1", who, d);
        if (i > 0 && d <= epochs[i - 1])
            return rt_err_set(RT_ERR_CONFIG, "%s: decay epochs must increase (%d after %d)", who, d,
                              epochs[i - 1]);
    }
    if (!isfinite(rho) || rho <= 0.0 || rho > 1.0)
        return rt_err_set(RT_ERR_CONFIG, "%s: rho %g must be in (0, 1]", who, rho);
    return RT_OK;
}

double rt_decay_factor(const int32_t *epochs, int32_t n, double rho, int32_t e)
{
    double f = 1.0;
    for (int i = 0; i < n && epochs[i] <= e; i++)
        f *= rho;
    return f;
}

int rt_decay_is_epoch(const int32_t *epochs, int32_t n, int32_t e)
{
    for (int i = 0; i < n; i++)
        if (epochs[i] == e)
            return 1;
    return 0;
}
