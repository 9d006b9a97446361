/*
 * rt_err: error codes, their descriptions and the thread-local detail of the last error.
 */
#include "rt_err.h"

#include <stdarg.h>
#include <string.h>

#define RT_ERR_DETAIL_MAX 512

static _Thread_local char s_detail[RT_ERR_DETAIL_MAX];
static _Thread_local int s_code;

const char *rt_strerror(int code)
{
    switch (code) {
    case RT_OK:
        return "success";
    case RT_ERR_NOMEM:
        return "out of memory";
    case RT_ERR_IO:
        return "input/output error";
    case RT_ERR_NOTFOUND:
        return "not found";
    case RT_ERR_FORMAT:
        return "malformed input";
    case RT_ERR_VERSION:
        return "unsupported version";
    case RT_ERR_SIZE:
        return "wrong size";
    case RT_ERR_TOOBIG:
        return "too large";
    case RT_ERR_TRUNCATED:
        return "truncated input";
    case RT_ERR_CHECKSUM:
        return "checksum mismatch";
    case RT_ERR_SHAPE:
        return "shape mismatch";
    case RT_ERR_CONFIG:
        return "invalid configuration";
    case RT_ERR_EXISTS:
        return "already exists";
    case RT_ERR_LMDB:
        return "LMDB error";
    case RT_ERR_ZMQ:
        return "ZeroMQ error";
    case RT_ERR_ARG:
        return "invalid argument";
    case RT_ERR_TIMEOUT:
        return "timed out";
    case RT_ERR_STATE:
        return "not valid in the current state";
    case RT_ERR_PEER:
        return "unknown or misbehaving peer";
    case RT_ERR_INTERRUPTED:
        return "interrupted";
    case RT_ERR_UNSUPPORTED:
        return "unsupported";
    case RT_ERR_EVICTED:
        return "evicted";
    case RT_ERR_NONFINITE:
        return "not finite";
    default:
        return "unknown error";
    }
}

int rt_err_set(int code, const char *fmt, ...)
{
    /* format aside: callers often pass rt_err_msg() (this buffer) to prefix a detail */
    char tmp[RT_ERR_DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(s_detail, tmp, sizeof tmp);
    s_code = code;
    return code;
}

const char *rt_err_msg(void)
{
    if (s_detail[0] == '\0')
        return rt_strerror(s_code);
    return s_detail;
}

int rt_err_exit_status(int rc)
{
    if (rc == RT_OK)
        return 0;
    return rc == RT_ERR_NONFINITE ? RT_EXIT_NONFINITE : RT_EXIT_FAILURE;
}
