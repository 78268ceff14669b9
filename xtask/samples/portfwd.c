/*
 * e2e sample for the "port-forward" case: a TCP server on 0.0.0.0:8080, reached from the
 * host through `nanoimg run -p HOSTPORT:8080` (QEMU's user-mode network). It answers the
 * first connection that sends a line with "pong:<line>" and exits 0; a connection that
 * closes before sending a whole line (e.g. one QEMU forwarded while the guest was still
 * coming up) is dropped and the next one is accepted.
 *
 *   port-forward:listening on 8080
 *   port-forward:got <line>
 *   HELLO-DONE
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "sample.h"

#define PORT 8080

/* Reads up to the first newline (excluded, as is a CR before it) into `line`.
 * Returns 1 for a whole line, 0 when the peer closed first, -1 on an error. */
static int read_line(int fd, char *line, size_t size)
{
    size_t len = 0;
    for (;;) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (c == '\n')
            break;
        if (len + 1 < size)
            line[len++] = c;
    }
    if (len > 0 && line[len - 1] == '\r')
        len--;
    line[len] = '\0';
    return 1;
}

int main(void)
{
    int server = socket(AF_INET, SOCK_STREAM, 0);
    if (server < 0) {
        printf("port-forward:socket failed: %s\n", strerror(errno));
        return 1;
    }
    int on = 1;
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(PORT);
    if (bind(server, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(server, 4) != 0) {
        printf("port-forward:bind/listen failed: %s\n", strerror(errno));
        return 1;
    }
    printf("port-forward:listening on %d\n", PORT);
    fflush(stdout);

    for (;;) {
        int client = accept(server, NULL, NULL);
        if (client < 0) {
            if (errno == EINTR)
                continue;
            printf("port-forward:accept failed: %s\n", strerror(errno));
            return 1;
        }
        char line[256];
        int got = read_line(client, line, sizeof(line));
        if (got != 1) {
            printf("port-forward:connection closed without a line\n");
            fflush(stdout);
            close(client);
            continue;
        }
        char reply[300];
        int len = snprintf(reply, sizeof(reply), "pong:%s\n", line);
        ssize_t sent = write(client, reply, (size_t)len);
        close(client);
        if (sent != len) {
            printf("port-forward:reply failed: %s\n", strerror(errno));
            return 1;
        }
        printf("port-forward:got %s\n", line);
        break;
    }
    close(server);
    printf("HELLO-DONE\n");
    return fflush(stdout) == 0 ? 0 : 1;
}
