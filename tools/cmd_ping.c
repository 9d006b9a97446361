/*
 * cmd_ping: `eigenbatch ping --connect EP [--timeout-ms MS] [--config FILE]`: is a role alive and
 * answering on its port? It sends one HEARTBEAT to EP over a DEALER and exits 0 when any answer
 * comes back within the timeout, 1 otherwise: the healthcheck of the deploy/ compose files. Every
 * shard answers a HEARTBEAT from anyone, and so does the eigen service on its query endpoint
 * (--eig-query). The options are the option table's (app_opts.h), so a deployment's --config
 * brings its security.* keys: against a CURVE-secured endpoint the ping is encrypted and must
 * hold an admitted key, as any client must.
 */
#include <stdio.h>
#include <string.h>

#include "app_opts.h"
#include "eb_cli.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_sock.h"

#define S_TIMEOUT_MS 3000 /* default wait for the answer */

static const char s_usage[] =
    "usage: eigenbatch ping --connect ENDPOINT [--timeout-ms MS] [--config FILE] [--set K=V]\n"
    "Sends one HEARTBEAT to ENDPOINT (a shard's --bind, or the eigen service's --eig-query)\n"
    "and exits 0 when it answers within --timeout-ms (0: 3000), else 1. With security.* set\n"
    "(--config of the deployment) the ping is CURVE-encrypted with that key.\n";

/* Send the heartbeat and wait for one answer. Returns 0 or an rt_err code (detail set). */
static int s_ping(const char *endpoint, int timeout_ms, struct rt_wire_msg *reply)
{
    void *ctx = rt_sock_ctx_new(1), *sock = NULL;
    if (!ctx)
        return rt_err_set(RT_ERR_ZMQ, "ping: %s", rt_err_msg());
    struct rt_sock_in in;
    rt_sock_in_init(&in, endpoint, 0, NULL);
    int rc = rt_sock_dealer(ctx, endpoint, &sock);
    if (rc)
        goto out;
    struct rt_wire_msg q;
    rt_wire_msg_init(&q, RT_WIRE_HEARTBEAT, -1, "ping");
    rc = rt_sock_request(sock, &q, &in, rt_clock_now() + timeout_ms / 1000.0, NULL, NULL, endpoint);
    if (!rc)
        *reply = in.m;
out:
    rt_sock_in_close(&in);
    rt_sock_close(&sock, 0);
    rt_sock_ctx_destroy(&ctx);
    return rc;
}

int eb_cmd_ping(int argc, char **argv)
{
    struct app_opts o;
    rt_config_t *cfg = NULL;
    int rc = eb_cli_client_opts(argc, argv, s_usage, &o, &cfg);
    if (rc)
        return rc == RT_OPT_HELP ? 0 : rc;
    int timeout_ms = o.cluster.timeout_ms > 0 ? (int)o.cluster.timeout_ms : S_TIMEOUT_MS;
    struct rt_wire_msg r;
    rc = s_ping(o.local.connect, timeout_ms, &r);
    if (rc)
        fprintf(stderr, "eigenbatch ping: %s: %s\n", o.local.connect, rt_err_msg());
    else
        printf("%s: %s answered (%s)\n", o.local.connect, r.name, rt_wire_type_name(r.type));
    rt_config_destroy(&cfg);
    return rc ? 1 : 0;
}
