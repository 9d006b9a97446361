/*
 * cmd_keygen: `eigenbatch keygen --out PREFIX` writes a CurveZMQ keypair for the security.*
 * configuration keys: PREFIX.key (the secret key, mode 0600, written atomically; an existing one
 * is never overwritten) and PREFIX.pub (the public key to copy into other roles' security.allowed
 * directories). Both hold one Z85 key line after a comment line (rt_curve.h).
 */
#include <stdio.h>
#include <string.h>

#include "app_opts.h"
#include "eb_cli.h"
#include "rt_curve.h"
#include "rt_err.h"

static void s_usage(FILE *f)
{
    fprintf(f, "usage: eigenbatch keygen --out PREFIX\n"
               "Writes a CURVE keypair: PREFIX.key (secret, mode 0600; never overwritten) and\n"
               "PREFIX.pub (public). Use them as security.key (this role's secret key),\n"
               "security.server_pub (the servers' public key) and security.allowed (a directory\n"
               "or list of .pub files whose holders servers admit).\n");
}

int eb_cmd_keygen(int argc, char **argv)
{
    const char *prefix = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            s_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            prefix = argv[++i];
        } else {
            fprintf(stderr, "eigenbatch keygen: unknown or incomplete option '%s'\n", argv[i]);
            s_usage(stderr);
            return 2;
        }
    }
    if (!prefix || !*prefix) {
        fprintf(stderr, "eigenbatch keygen: --out PREFIX is required\n");
        s_usage(stderr);
        return 2;
    }
    if (!rt_curve_available()) {
        fprintf(stderr, "eigenbatch keygen: this libzmq was built without CURVE security "
                        "(zmq_has(\"curve\") is false); install a libzmq built with libsodium\n");
        return 1;
    }
    /* the prefix's directory is made as needed (keygen --out keys/cluster on a fresh tree) */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", prefix);
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        rc = app_mkdirs(dir);
    }
    if (!rc)
        rc = rt_curve_keygen(prefix);
    if (rc) {
        fprintf(stderr, "eigenbatch keygen: %s\n", rt_err_msg());
        return 1;
    }
    printf("wrote %s.key (secret, mode 0600) and %s.pub\n", prefix, prefix);
    return 0;
}
