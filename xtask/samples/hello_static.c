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
#include "sample.h"

int main(int argc, char **argv)
{
    return print_args_and_env(argc, argv);
}
