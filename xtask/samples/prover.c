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
#include <fcntl.h>

#include "sample.h"

#define INPUT_PATH "/workspace/input"
#define OUTPUT_PATH "/workspace/output"
#define ROOTFS_PROBE_PATH "/rootfs-write-test"

int main(int argc, char **argv)
{
    static char input[4096];
    int err = read_text(INPUT_PATH, input, sizeof input);
    if (err != 0)
        printf("input-error:%s\n", strerror(err));
    else
        printf("input:%s\n", input);

    static char proof[4096 + 16];
    snprintf(proof, sizeof proof, "proof-of:%s\n", input);
    err = write_text(OUTPUT_PATH, proof, 0);
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

    return print_args_and_env(argc, argv);
}
