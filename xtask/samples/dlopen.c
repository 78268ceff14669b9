/*
 * e2e sample for `cargo xtask e2e`, "dlopen-libraries" case: a dynamic
 * program that loads libhello_plugin.so (hello_plugin.c) only at run time,
 * so the library is not in its ELF headers; the config's
 * "Libraries": ["libhello_plugin.so"] makes nanoimg pack it.
 *
 * Output:
 *   argv[0]=<program>
 *   plugin:<what plugin_greeting() returns>
 *   HELLO-DONE
 */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    printf("argv[0]=%s\n", argc > 0 ? argv[0] : "");
    void *plugin = dlopen("libhello_plugin.so", RTLD_NOW);
    if (plugin == NULL) {
        printf("dlopen-failed:%s\n", dlerror());
        return 1;
    }
    const char *(*greeting)(void) =
        (const char *(*)(void))dlsym(plugin, "plugin_greeting");
    if (greeting == NULL) {
        printf("dlsym-failed:%s\n", dlerror());
        return 1;
    }
    printf("plugin:%s\n", greeting());
    printf("HELLO-DONE\n");
    return fflush(stdout) == 0 ? 0 : 1;
}
