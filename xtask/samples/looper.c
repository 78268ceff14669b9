/*
 * e2e sample for the "timeout" case: prints "looping", then never ends, so only
 * `nanoimg run --timeout` stops the VM (exit status 124).
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    printf("looping\n");
    fflush(stdout);
    for (;;)
        sleep(1);
}
