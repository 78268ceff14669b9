/* The `missing-files` e2e case: opens a config file and dlopen()s a library
 * that the first image leaves out, and says how each went. `nanoimg run
 * --missing-files` must name both (and /etc/nanoimg-nowhere.conf, which the
 * target root lacks too); the image rebuilt with the lines it suggests must
 * find both. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    int fd = open("/etc/nanoimg-missing.conf", O_RDONLY);
    printf("missing-files: conf %s\n", fd >= 0 ? "opened" : "absent");
    if (fd >= 0)
        close(fd);
    fd = open("/etc/nanoimg-nowhere.conf", O_RDONLY);
    printf("missing-files: nowhere %s\n", fd >= 0 ? "opened" : "absent");
    void *h = dlopen("libnanoimg_missing.so.1", RTLD_NOW);
    if (!h) {
        printf("missing-files: dlopen failed\n");
        return 0;
    }
    int (*answer)(void) = (int (*)(void))dlsym(h, "nanoimg_missing_answer");
    printf("missing-files: dlopen ok, answer %d\n", answer ? answer() : -1);
    return 0;
}
