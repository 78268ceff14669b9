/*
 * e2e sample for `cargo xtask e2e`, "dynamic-c" case: the same program as
 * hello_static.c, but built with plain `cc -O2`, so it needs ld-linux and
 * libc.so packed into the image (nanoimg's shared library packing).
 */
#include "hello_static.c"
