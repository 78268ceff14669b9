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
#include "sample.h"

#define READ_PATH "/data/hello.txt"
#define WRITE_PATH "/data/from-guest.txt"
#define WRITE_TEXT "written-by-guest\n"

int main(int argc, char **argv)
{
    static char contents[4096];
    int err = read_text(READ_PATH, contents, sizeof contents);
    if (err != 0)
        printf("volume-read-error:%s\n", strerror(err));
    else
        printf("volume-read:%s\n", contents);

    /* Synced, so that it is on the volume when the runner extracts it. */
    err = write_text(WRITE_PATH, WRITE_TEXT, 1);
    if (err != 0)
        printf("volume-write-error:%s\n", strerror(err));
    else
        printf("volume-written\n");

    return print_args_and_env(argc, argv);
}
