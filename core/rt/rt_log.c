/*
 * rt_log: leveled logging to stderr, one write per line.
 */
#include "rt_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define RT_LOG_LINE_MAX 2048

static int s_level = -1; /* -1: not yet read from EB_LOG */

static const char *const s_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

static int s_level_from_env(void)
{
    const char *e = getenv("EB_LOG");
    if (!e)
        return RT_LOG_INFO;
    if (!strcasecmp(e, "debug"))
        return RT_LOG_DEBUG;
    if (!strcasecmp(e, "warn"))
        return RT_LOG_WARN;
    if (!strcasecmp(e, "error"))
        return RT_LOG_ERROR;
    return RT_LOG_INFO;
}

void rt_log_set_level(enum rt_log_level level)
{
    s_level = (int)level;
}

enum rt_log_level rt_log_get_level(void)
{
    if (s_level < 0)
        s_level = s_level_from_env();
    return (enum rt_log_level)s_level;
}

void rt_log(enum rt_log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level < (int)rt_log_get_level())
        return;
    char line[RT_LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, s_names[level], module ? module : "-");
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && n < (int)sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
