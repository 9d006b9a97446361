/*
 * eigenbatch: the single binary; dispatches to a sub-command (see eb_cli.c).
 */
#include "eb_cli.h"

int main(int argc, char **argv)
{
    return eb_cli_main(argc - 1, argv + 1);
}
