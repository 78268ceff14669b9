/*
 * e2e sample for `cargo xtask e2e`, "gevulot-prover" case: behaves like a
 * Gevulot (v1) prover. Gevulot shares a host folder with the VM over 9p
 * (mount tag "0", mounted at /workspace by the image's `mounts`), boots the
 * disk read-only and sets `readonly_rootfs`; the prover reads its input from
 * the workspace and writes its proof back there.
 *
 * Built with `cc -static -O2`. Output format, one item per line:
 *   input:<contents of /workspace/input, trailing newline stripped>
 *     (or input-error:<strerror>)
 *   output-written              /workspace/output now holds proof-of:<input>
 *     (or output-error:<strerror>)
 *   rootfs-write-error:<strerror>  (only when the next line is "refused")
 *   rootfs-write:refused        creating /rootfs-write-test failed
 *     (or rootfs-write:ok)
 *   argv[<i>]=<argument>
 *   env:<KEY>=<VALUE>
 *   HELLO-DONE
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define INPUT_PATH "/workspace/input"
#define OUTPUT_PATH "/workspace/output"
#define ROOTFS_PROBE_PATH "/rootfs-write-test"

extern char **environ;

/* Reads INPUT_PATH into `buf` (NUL-terminated, one trailing newline
 * stripped). Returns 0, or an errno value. */
static int read_input(char *buf, size_t size)
{
    FILE *in = fopen(INPUT_PATH, "r");
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

/* Writes "proof-of:<input>\n" to OUTPUT_PATH. Returns 0, or an errno value. */
static int write_output(const char *input)
{
    FILE *out = fopen(OUTPUT_PATH, "w");
    if (out == NULL)
        return errno;
    int err = 0;
    if (fprintf(out, "proof-of:%s\n", input) < 0 || fflush(out) != 0)
        err = errno != 0 ? errno : EIO;
    if (fclose(out) != 0 && err == 0)
        err = errno != 0 ? errno : EIO;
    return err;
}

int main(int argc, char **argv)
{
    static char input[4096];
    int err = read_input(input, sizeof input);
    if (err != 0)
        printf("input-error:%s\n", strerror(err));
    else
        printf("input:%s\n", input);

    err = write_output(input);
    if (err != 0)
        printf("output-error:%s\n", strerror(err));
    else
        printf("output-written\n");

    int fd = open(ROOTFS_PROBE_PATH, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        printf("rootfs-write-error:%s\n", strerror(errno));
        printf("rootfs-write:refused\n");
    } else {
        close(fd);
        printf("rootfs-write:ok\n");
    }

    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **entry = environ; entry != NULL && *entry != NULL; entry++)
        printf("env:%s\n", *entry);
    printf("HELLO-DONE\n");
    return fflush(stdout) == 0 ? 0 : 1;
}
