/*
 * rt_log: the one logging module. Lines go to stderr as
 *   2026-11-29T19:49:08.123Z INFO  [server] message
 * The threshold comes from the EB_LOG environment variable (debug, info, warn, error; default info)
 * or rt_log_set_level(). Thread-safe: each line is written with a single call.
 */
#ifndef RT_LOG_H
#define RT_LOG_H

enum rt_log_level { RT_LOG_DEBUG = 0, RT_LOG_INFO, RT_LOG_WARN, RT_LOG_ERROR };

void rt_log_set_level(enum rt_log_level level);
enum rt_log_level rt_log_get_level(void);
void rt_log(enum rt_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define RT_DEBUG(mod, ...) rt_log(RT_LOG_DEBUG, mod, __VA_ARGS__)
#define RT_INFO(mod, ...) rt_log(RT_LOG_INFO, mod, __VA_ARGS__)
#define RT_WARN(mod, ...) rt_log(RT_LOG_WARN, mod, __VA_ARGS__)
#define RT_ERROR(mod, ...) rt_log(RT_LOG_ERROR, mod, __VA_ARGS__)

#endif
