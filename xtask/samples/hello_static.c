/*
 * e2e sample for `cargo xtask e2e`: prints its arguments and environment in a
 * fixed, line-oriented format that the runner greps from the serial console.
 *
 *   argv[<i>]=<argument>
 *   env:<KEY>=<VALUE>
 *   HELLO-DONE
 *
 * Built with `cc -static -O2` (the "static-c" case). hello_dynamic.c includes
 * this file verbatim and is built without -static.
 */
#include <stdio.h>

extern char **environ;

int main(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **entry = environ; entry != NULL && *entry != NULL; entry++)
        printf("env:%s\n", *entry);
    printf("HELLO-DONE\n");
    return fflush(stdout) == 0 ? 0 : 1;
}
