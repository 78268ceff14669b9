/*
 * e2e "dlopen-libraries" case: the shared library dlopen.c loads at run
 * time. Built by the runner with `cc -shared -fPIC -O2 -o
 * libhello_plugin.so hello_plugin.c` and put into the sysroot image's
 * /usr/lib/x86_64-linux-gnu/.
 */
const char *plugin_greeting(void)
{
    return "plugin-says-hi";
}
