/*
 * e2e sample for the "exit-code" case: prints one line and exits with status 3. The image's
 * manifest has debug_exit (ManifestPassthrough), so Nanos reports the status through QEMU's
 * isa-debug-exit device and `nanoimg run` must exit with 3.
 */
#include <stdio.h>

int main(void)
{
    printf("exit-code:exiting with 3\n");
    fflush(stdout);
    return 3;
}
