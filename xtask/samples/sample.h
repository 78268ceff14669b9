/*
 * Helpers shared by the e2e sample programs (included by hello_static.c,
 * prover.c and volume.c; the runner writes this file beside them).
 */
#ifndef NANOIMG_SAMPLE_H
#define NANOIMG_SAMPLE_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* Reads `path` into `buf` (NUL-terminated, one trailing newline stripped).
 * Returns 0, or an errno value. */
static inline int read_text(const char *path, char *buf, size_t size)
{
    FILE *in = fopen(path, "r");
    if (in == NULL)
        return errno;
    size_t len = fread(buf, 1, size - 1, in);
    int err = ferror(in) ? (errno != 0 ? errno : EIO) : 0;
    fclose(in);
    buf[len] = '\0';
    if (len > 0 && buf[len - 1] == '\n')
        buf[len - 1] = '\0';
    return err;
}

/* Writes `text` to `path`, with fsync when `sync` is set. Returns 0, or an
 * errno value. */
static inline int write_text(const char *path, const char *text, int sync)
{
    FILE *out = fopen(path, "w");
    if (out == NULL)
        return errno;
    int err = 0;
    if (fputs(text, out) == EOF || fflush(out) != 0)
        err = errno != 0 ? errno : EIO;
    if (err == 0 && sync && fsync(fileno(out)) != 0)
        err = errno;
    if (fclose(out) != 0 && err == 0)
        err = errno != 0 ? errno : EIO;
    return err;
}

/* Prints the arguments and environment, then HELLO-DONE:
 *   argv[<i>]=<argument>
 *   env:<KEY>=<VALUE>
 *   HELLO-DONE
 * Returns the exit status for main. */
static inline int print_args_and_env(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **entry = environ; entry != NULL && *entry != NULL; entry++)
        printf("env:%s\n", *entry);
    printf("HELLO-DONE\n");
    return fflush(stdout) == 0 ? 0 : 1;
}

#endif
