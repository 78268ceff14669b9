/*
 * e2e sample for `cargo xtask e2e`, "guest-fs" case: changes a filesystem
 * the way programs do, so that the kernel writes its own log records (parent
 * links, hard links, renames, unlinks, truncation, fallocate) into the root
 * filesystem and into a data volume. After the boot the runner reads both
 * with `nanoimg inspect --files`, `extract` and `diff` and compares them with
 * the tree this program leaves (guest_tree in xtask/src/checks.rs lists it).
 *
 * Built with `cc -static -O2`. Output, one item per line:
 *   guestfs:<base>:ok             every step under <base> succeeded
 *   guestfs:<base>:<step>:<error> the first step that failed
 *   HELLO-DONE
 */
#define _GNU_SOURCE
#include "sample.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

static char path_a[512], path_b[512];

static const char *at(char *buf, const char *base, const char *rel)
{
    snprintf(buf, 512, "%s/%s", base, rel);
    return buf;
}

#define A(rel) at(path_a, base, rel)
#define B(rel) at(path_b, base, rel)
#define STEP(name, call)                                                      \
    do {                                                                      \
        if ((call) != 0) {                                                    \
            printf("guestfs:%s:%s:%s\n", base, name, strerror(errno));        \
            return 1;                                                         \
        }                                                                     \
    } while (0)

/* Writes `len` bytes of `data` at `offset` of `path` (created if needed). */
static int put(const char *path, const void *data, size_t len, off_t offset)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0)
        return -1;
    int ok = pwrite(fd, data, len, offset) == (ssize_t)len;
    int err = errno;
    close(fd);
    errno = err;
    return ok ? 0 : -1;
}

static int append(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    if (fd < 0)
        return -1;
    int ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    int err = errno;
    close(fd);
    errno = err;
    return ok ? 0 : -1;
}

static int truncate_to(const char *path, off_t len)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    int r = ftruncate(fd, len);
    int err = errno;
    close(fd);
    errno = err;
    return r;
}

static int allocate(const char *path, off_t len)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    int r = fallocate(fd, 0, 0, len);
    int err = errno;
    close(fd);
    errno = err;
    return r;
}

/* The same changes under `base`; the tree they leave is in xtask/src/checks.rs. */
static int change(const char *base)
{
    static unsigned char pattern[100000];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (unsigned char)(i * 7 + 3);

    STEP("mkdir", mkdir(base, 0755));
    STEP("mkdir a", mkdir(A("a"), 0755));
    STEP("mkdir a/b", mkdir(A("a/b"), 0755));
    STEP("mkdir a/b/c", mkdir(A("a/b/c"), 0755));
    STEP("write one", put(A("a/one.txt"), "one\n", 4, 0));
    STEP("write two", put(A("a/b/two.txt"), "two\n", 4, 0));
    STEP("write three", put(A("a/b/c/three.txt"), "three\n", 6, 0));
    STEP("write gone", put(A("gone.txt"), "gone\n", 5, 0));
    STEP("unlink gone", unlink(A("gone.txt")));
    STEP("link one", link(A("a/one.txt"), B("a/b/one-link.txt")));
    STEP("link three", link(A("a/b/c/three.txt"), B("three-link.txt")));
    STEP("rename two", rename(A("a/b/two.txt"), B("a/two-renamed.txt")));
    STEP("rename c", rename(A("a/b/c"), B("c-moved")));
    STEP("symlink sym", symlink("a/b/one-link.txt", A("sym")));
    STEP("symlink dangling", symlink("/nowhere", A("dangling")));
    STEP("mkdir empty-gone", mkdir(A("empty-gone"), 0755));
    STEP("rmdir empty-gone", rmdir(A("empty-gone")));
    STEP("mkdir empty-kept", mkdir(A("empty-kept"), 0755));
    STEP("write big", put(A("big.bin"), pattern, sizeof pattern, 0));
    STEP("truncate big", truncate_to(A("big.bin"), 70000));
    STEP("write alloc", put(A("alloc.bin"), "head", 4, 0));
    STEP("fallocate alloc", allocate(A("alloc.bin"), 65536));
    STEP("append one", append(A("a/b/one-link.txt"), "more\n"));
    STEP("unlink one", unlink(A("a/one.txt")));
    STEP("write src", put(A("replace-src"), "new\n", 4, 0));
    STEP("write dst", put(A("replace-dst"), "old content\n", 12, 0));
    STEP("rename over", rename(A("replace-src"), B("replace-dst")));
    printf("guestfs:%s:ok\n", base);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int failed = change("/t") | change("/data/t");
    sync();
    printf("HELLO-DONE\n");
    fflush(stdout);
    return failed;
}
