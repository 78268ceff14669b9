/*
 * e2e sample for `cargo xtask e2e`, "data-volume" case: reads and writes a
 * data volume. The host makes the volume with `nanoimg volume create` from a
 * folder holding hello.txt, labelled "appdata"; the image's manifest mounts
 * that label at /data, and QEMU attaches the volume as a second disk. After
 * the boot the runner extracts the volume and looks for the file written
 * here.
 *
 * Built with `cc -static -O2`. Output format, one item per line:
 *   volume-read:<contents of /data/hello.txt, trailing newline stripped>
 *     (or volume-read-error:<strerror>)
 *   volume-written              /data/from-guest.txt now holds written-by-guest
 *     (or volume-write-error:<strerror>)
 *   argv[<i>]=<argument>
 *   env:<KEY>=<VALUE>
 *   HELLO-DONE
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define READ_PATH "/data/hello.txt"
#define WRITE_PATH "/data/from-guest.txt"
#define WRITE_TEXT "written-by-guest\n"

extern char **environ;

/* Reads READ_PATH into `buf` (NUL-terminated, one trailing newline
 * stripped). Returns 0, or an errno value. */
static int read_volume(char *buf, size_t size)
{
    FILE *in = fopen(READ_PATH, "r");
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

/* Writes WRITE_TEXT to WRITE_PATH and syncs it to the volume. Returns 0, or
 * an errno value. */
static int write_volume(void)
{
    FILE *out = fopen(WRITE_PATH, "w");
    if (out == NULL)
        return errno;
    int err = 0;
    if (fputs(WRITE_TEXT, out) == EOF || fflush(out) != 0)
        err = errno != 0 ? errno : EIO;
    if (err == 0 && fsync(fileno(out)) != 0)
        err = errno;
    if (fclose(out) != 0 && err == 0)
        err = errno != 0 ? errno : EIO;
    return err;
}

int main(int argc, char **argv)
{
    static char contents[4096];
    int err = read_volume(contents, sizeof contents);
    if (err != 0)
        printf("volume-read-error:%s\n", strerror(err));
    else
        printf("volume-read:%s\n", contents);

    err = write_volume();
    if (err != 0)
        printf("volume-write-error:%s\n", strerror(err));
    else
        printf("volume-written\n");

    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **entry = environ; entry != NULL && *entry != NULL; entry++)
        printf("env:%s\n", *entry);
    printf("HELLO-DONE\n");
    return fflush(stdout) == 0 ? 0 : 1;
}
