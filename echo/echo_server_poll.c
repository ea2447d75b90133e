/*
 * echo_server_poll.c -- the echo server serving many clients at once with poll().
 *
 *   gcc echo_server_poll.c -o echo_server_poll
 *   ./echo_server_poll [PORT]     (default 12345)
 *
 * The course's "keep the client sockets in an array" idea: fds[0] is the listening
 * socket, fds[1..nfds-1] the clients. Each client is treated exactly like in
 * echo_server.c (same reads of at most 99 bytes, same messages); sockets are
 * non-blocking, and a client whose echo does not fit in its send buffer is not
 * read again until the rest is written (so one slow reader cannot stall the others).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define DEFAULT_PORT 12345
#define BUF_SIZE 100
#define MAX_CLIENTS 4096

static struct pollfd fds[MAX_CLIENTS + 1];
static char unsent[MAX_CLIENTS + 1][BUF_SIZE];   /* echo bytes not written yet, per client */
static int unsent_len[MAX_CLIENTS + 1];
static int nfds = 1;

/* Strip one trailing "\n" or "\r\n"; returns the new length. */
static int removeEnter(char *buf, int len)
{
    if (len > 0 && buf[len - 1] == '\n') {
        buf[--len] = '\0';
        if (len > 0 && buf[len - 1] == '\r') buf[--len] = '\0';
    }
    return len;
}

/* Write what client i still owes; returns 1 when the client must be closed. */
static int sendUnsent(int i)
{
    int n = write(fds[i].fd, unsent[i], unsent_len[i]);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        printf("ERROR :: 6_write Error\n");
        return 1;
    }
    if (n > 0) {
        unsent_len[i] -= n;
        memmove(unsent[i], unsent[i] + n, unsent_len[i]);
    }
    fds[i].events = unsent_len[i] > 0 ? POLLOUT : POLLIN;
    return 0;
}

/* One read from client i, handled like echo_server.c; returns 1 when the client must be closed. */
static int serveRead(int i)
{
    char buf[BUF_SIZE];
    memset(buf, 0, BUF_SIZE);
    int len = read(fds[i].fd, buf, BUF_SIZE - 1);
    if (len < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    if (len < 0) {
        printf("ERROR :: 5_read Error\n");
        return 1;
    }
    if (len == 0) {
        printf("INFO :: Disconnect with client... BYE\n");
        return 1;
    }
    len = removeEnter(buf, len);
    if (len == 4 && !strcmp(buf, "exit")) {
        printf("INFO :: Client want close... BYE\n");
        return 1;
    }
    if (len == 0) return 0;   /* a bare "\n": nothing to echo */
    memcpy(unsent[i], buf, len);
    unsent_len[i] = len;
    return sendUnsent(i);
}

/* Close client i; the last client moves into its slot. */
static void dropClient(int i)
{
    close(fds[i].fd);
    nfds--;
    fds[i] = fds[nfds];
    memcpy(unsent[i], unsent[nfds], unsent_len[nfds]);
    unsent_len[i] = unsent_len[nfds];
}

/* Accept every queued client while there is room; returns -1 on an error the course server stops for. */
static int acceptClients(int server_sock, int *out_of_fds)
{
    while (nfds <= MAX_CLIENTS) {
        int client_sock = accept(server_sock, NULL, NULL);
        if (client_sock == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return 0;
            printf("ERROR :: 4_accept Error\n");
            if (errno != EMFILE && errno != ENFILE) return -1;
            *out_of_fds = 1;   /* wait for a client to leave before accepting again */
            return 0;
        }
        fcntl(client_sock, F_SETFL, O_NONBLOCK);
        fds[nfds].fd = client_sock;
        fds[nfds].events = POLLIN;
        fds[nfds].revents = 0;
        unsent_len[nfds] = 0;
        nfds++;
    }
    return 0;
}

/* Hold as many sockets as the hard limit allows (Ubuntu's soft limit is 1024). */
static void raiseOpenFileLimit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

int main(int argc, char *argv[])
{
    int port = DEFAULT_PORT;
    if (argc > 1) port = atoi(argv[1]);
    if (argc > 2 || port < 1 || port > 65535) {
        fprintf(stderr, "usage: %s [PORT]   (PORT 1-65535, default %d)\n", argv[0], DEFAULT_PORT);
        exit(2);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    raiseOpenFileLimit();

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

    if (listen(server_sock, SOMAXCONN) == -1) {
        printf("ERROR :: 3_listen Error\n");
        exit(1);
    }
    fcntl(server_sock, F_SETFL, O_NONBLOCK);
    fds[0].fd = server_sock;

    int out_of_fds = 0;   /* accept() hit the open-file limit: wait for a client to leave */
    while (1) {
        fds[0].events = (nfds <= MAX_CLIENTS && !out_of_fds) ? POLLIN : 0;
        if (poll(fds, nfds, -1) == -1) {
            if (errno == EINTR) continue;
            printf("ERROR :: poll Error\n");
            break;
        }

        /* Clients first, last to first, so dropping one (the last moves into its slot) skips nobody. */
        for (int i = nfds - 1; i >= 1; i--) {
            short revents = fds[i].revents;
            fds[i].revents = 0;
            if (!revents) continue;
            int done = (fds[i].events & POLLOUT) ? sendUnsent(i) : serveRead(i);
            if (done) {
                dropClient(i);
                out_of_fds = 0;
            }
        }

        if ((fds[0].revents & POLLIN) && acceptClients(server_sock, &out_of_fds) == -1) break;
    }

    close(server_sock);
    return 1;
}
