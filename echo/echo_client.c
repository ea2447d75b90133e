/*
 * echo_client.c -- the course's TCP echo client.
 *
 *   gcc echo_client.c -o echo_client
 *   ./echo_client [IP [PORT]]     (default 127.0.0.1 12345)
 *
 * Reads a line from stdin (at most 99 bytes; a longer line is sent in 99-byte
 * pieces), strips the newline, sends it, prints the reply on its own line.
 * "exit" is sent to the server and ends the client; so does end of input.
 *
 * Fixes to the lecture code are marked "FIX:".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#define DEFAULT_IP "127.0.0.1"
#define DEFAULT_PORT 12345
#define BUF_SIZE 100

/* FIX: fgets() + strlen() loses everything after a NUL byte; count the bytes instead.
 * Reads up to max bytes or through "\n"; returns the count, or -1 at end of input. */
static int readLine(char *buf, int max, FILE *in)
{
    int len = 0, c = EOF;
    while (len < max && (c = getc(in)) != EOF) {
        buf[len++] = (char)c;
        if (c == '\n') break;
    }
    return (len == 0 && c == EOF) ? -1 : len;
}

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
    const char *ip = argc > 1 ? argv[1] : DEFAULT_IP;
    int port = argc > 2 ? atoi(argv[2]) : DEFAULT_PORT;

    struct sockaddr_in server_addr;
    memset(&server_addr, 0, sizeof(server_addr));
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons(port);
    /* FIX: reject a bad address or port instead of connecting somewhere else. */
    if (argc > 3 || port < 1 || port > 65535 || inet_pton(AF_INET, ip, &server_addr.sin_addr) != 1) {
        fprintf(stderr, "usage: %s [IP [PORT]]   (IPv4 address, PORT 1-65535; default %s %d)\n",
                argv[0], DEFAULT_IP, DEFAULT_PORT);
        exit(2);
    }

    /* FIX: a server that already left gives an error from write(), not a silent death. */
    signal(SIGPIPE, SIG_IGN);

    int sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock == -1) {
        printf("ERROR :: 1_Socket Create Error\n");
        exit(1);
    }

    if (connect(sock, (struct sockaddr *)&server_addr, sizeof(server_addr)) == -1) {
        printf("ERROR :: 2_Connect Error\n");
        exit(1);
    }

    char buf[BUF_SIZE];
    while (1) {
        memset(buf, 0, BUF_SIZE);
        int len = readLine(buf, BUF_SIZE - 1, stdin);
        /* FIX: end of input (Ctrl-D, closed pipe) ends the client instead of looping. */
        if (len < 0) break;
        len = removeEnter(buf, len);
        /* FIX: never send an empty line: the server has nothing to echo and we would wait forever. */
        if (len == 0) continue;

        /* FIX: check write(); the server may be gone. */
        if (write(sock, buf, len) != len) {
            printf("INFO :: Server Disconnected\n");
            exit(1);
        }
        if (len == 4 && !strcmp(buf, "exit")) break;

        memset(buf, 0, BUF_SIZE);
        len = read(sock, buf, BUF_SIZE - 1);
        if (len == 0) {
            printf("INFO :: Server Disconnected\n");
            break;
        }
        /* FIX: read() < 0 (e.g. connection reset) is the server going away too. */
        if (len < 0) {
            printf("INFO :: Server Disconnected\n");
            exit(1);
        }
        /* FIX: print len bytes (the reply may hold NUL bytes) and flush, so pipes see it at once. */
        fwrite(buf, 1, len, stdout);
        printf("\n");
        fflush(stdout);
    }

    close(sock);
    return 0;
}
