/*
 * echo_server.c -- the course's iterative TCP echo server.
 *
 *   gcc echo_server.c -o echo_server
 *   ./echo_server [PORT]          (default 12345)
 *
 * One client at a time: read up to 99 bytes, strip a trailing "\n" (or "\r\n"),
 * write the rest back without a newline. "exit" closes that client; the server
 * then accepts the next one.
 *
 * Fixes to the lecture code are marked "FIX:".
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#define DEFAULT_PORT 12345
#define BUF_SIZE 100

/* Strip one trailing "\n" or "\r\n"; returns the new length. */
static int removeEnter(char *buf, int len)
{
    if (len > 0 && buf[len - 1] == '\n') {
        buf[--len] = '\0';
        if (len > 0 && buf[len - 1] == '\r') buf[--len] = '\0';
    }
    return len;
}

int main(int argc, char *argv[])
{
    int port = DEFAULT_PORT;
    if (argc > 1) port = atoi(argv[1]);
    /* FIX: atoi("abc") is 0, which would bind a random port. */
    if (argc > 2 || port < 1 || port > 65535) {
        fprintf(stderr, "usage: %s [PORT]   (PORT 1-65535, default %d)\n", argv[0], DEFAULT_PORT);
        exit(2);
    }

    /* FIX: messages show up at once even when stdout is a pipe or a log file. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* FIX: a write to a client that already left must not kill the server. */
    signal(SIGPIPE, SIG_IGN);

    int server_sock = socket(AF_INET, SOCK_STREAM, 0);
    if (server_sock == -1) {
        printf("ERROR :: 1_Socket Create Error\n");
        exit(1);
    }

    int optval = 1;
    setsockopt(server_sock, SOL_SOCKET, SO_REUSEADDR, (void *)&optval, sizeof(optval));

    struct sockaddr_in server_addr;
    memset(&server_addr, 0, sizeof(server_addr));
    server_addr.sin_family = AF_INET;
    server_addr.sin_addr.s_addr = htonl(INADDR_ANY);
    server_addr.sin_port = htons(port);

    if (bind(server_sock, (struct sockaddr *)&server_addr, sizeof(server_addr)) == -1) {
        printf("ERROR :: 2_bind Error\n");
        exit(1);
    }

    if (listen(server_sock, 5) == -1) {
        printf("ERROR :: 3_listen Error\n");
        exit(1);
    }

    struct sockaddr_in client_addr;
    socklen_t client_addr_len = sizeof(client_addr);
    char buf[BUF_SIZE];

    while (1) {
        client_addr_len = sizeof(client_addr);
        int client_sock = accept(server_sock, (struct sockaddr *)&client_addr, &client_addr_len);
        if (client_sock == -1) {
            /* FIX: a client that gave up while queued is no reason to stop serving. */
            if (errno == EINTR || errno == ECONNABORTED) continue;
            printf("ERROR :: 4_accept Error\n");
            break;
        }

        while (1) {
            memset(buf, 0, BUF_SIZE);
            /* FIX: at most BUF_SIZE - 1 bytes, so buf always stays NUL-terminated. */
            int len = read(client_sock, buf, BUF_SIZE - 1);
            /* FIX: read() < 0 (e.g. connection reset) used to spin; drop this client instead. */
            if (len < 0) {
                printf("ERROR :: 5_read Error\n");
                break;
            }
            if (len == 0) {
                printf("INFO :: Disconnect with client... BYE\n");
                break;
            }
            len = removeEnter(buf, len);
            /* FIX: compare the length too, so "exit\0junk" is echoed, not taken for "exit". */
            if (len == 4 && !strcmp(buf, "exit")) {
                printf("INFO :: Client want close... BYE\n");
                break;
            }
            /* FIX: a bare "\n" leaves nothing to echo: write nothing and wait for the next line.
             * (Our clients never send empty lines; `nc` does, and just gets no reply.) */
            if (len == 0) continue;
            /* FIX: echo len bytes, not strlen(buf): binary input may contain NUL bytes.
             * FIX: check write(); a client that left is dropped. */
            if (write(client_sock, buf, len) != len) {
                printf("ERROR :: 6_write Error\n");
                break;
            }
        }
        close(client_sock);
    }

    close(server_sock);
    return 1;
}
