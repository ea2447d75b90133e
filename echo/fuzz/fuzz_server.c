/*
 * fuzz_server.c -- libFuzzer harness for echo_server.c's request handling.
 *
 * echo_server.c is included unchanged at the end of this file, with its main renamed to
 * server_main and its socket calls pointed at the fakes below (the system headers are included
 * first, so only echo_server.c's own code sees the renames). Build: make -C echo fuzz.
 *
 * One fuzz input is one client session. Each read() takes its size from the next input byte
 * (1-128 bytes, capped by the server's request, like a TCP stream cut anywhere); byte 0xff makes
 * that read fail with ECONNRESET. The harness replays the same reads through a reference model
 * of the protocol (echo/README.md) and aborts if the server's writes differ, so the fuzzer finds
 * wrong replies as well as memory errors (AddressSanitizer + UBSan).
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#define CLIENT_FD 4
#define LISTEN_FD 3
#define MAX_OUT 65536

static int server_main(int argc, char *argv[]);

static const uint8_t *input;
static size_t input_left;
static int accepted;
static uint8_t written[MAX_OUT];
static size_t written_len;

/* The next read's size: 1-128 bytes, 0 at the end of the input, -1 for a reset. */
static int next_read_size(void)
{
    if (input_left == 0) return 0;
    uint8_t b = *input++;
    input_left--;
    if (b == 0xff) return -1;
    return 1 + (b & 0x7f);
}

static int fake_socket(int domain, int type, int protocol)
{
    (void)domain; (void)type; (void)protocol;
    return LISTEN_FD;
}

static int fake_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    (void)fd; (void)addr; (void)len;
    return 0;
}

static int fake_listen(int fd, int backlog)
{
    (void)fd; (void)backlog;
    return 0;
}

static int fake_close(int fd)
{
    (void)fd;
    return 0;
}

/* The server's INFO/ERROR lines would only slow the fuzzer down. */
static int fake_printf(const char *format, ...)
{
    (void)format;
    return 0;
}

/* One client per input; the second accept fails, which ends server_main ("4_accept Error"). */
static int fake_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    (void)fd; (void)addr; (void)len;
    if (accepted++) {
        errno = EBADF;
        return -1;
    }
    return CLIENT_FD;
}

static ssize_t fake_read(int fd, void *buf, size_t count)
{
    if (fd != CLIENT_FD) abort();
    int size = next_read_size();
    if (size < 0) {
        errno = ECONNRESET;
        return -1;
    }
    size_t n = (size_t)size < count ? (size_t)size : count;
    if (n > input_left) n = input_left;
    memcpy(buf, input, n);
    input += n;
    input_left -= n;
    return (ssize_t)n;
}

static ssize_t fake_write(int fd, const void *buf, size_t count)
{
    if (fd != CLIENT_FD || written_len + count > MAX_OUT) abort();
    memcpy(written + written_len, buf, count);
    written_len += count;
    return (ssize_t)count;
}

/* The protocol as documented: what the server must have written for this input. */
static size_t expected_reply(const uint8_t *data, size_t size, uint8_t *out)
{
    size_t out_len = 0;
    input = data;
    input_left = size;
    while (1) {
        uint8_t chunk[99];
        int want = next_read_size();
        if (want <= 0) break;
        size_t n = (size_t)want < sizeof(chunk) ? (size_t)want : sizeof(chunk);
        if (n > input_left) n = input_left;
        if (n == 0) break;
        memcpy(chunk, input, n);
        input += n;
        input_left -= n;
        if (chunk[n - 1] == '\n') {
            n--;
            if (n > 0 && chunk[n - 1] == '\r') n--;
        }
        if (n == 4 && memcmp(chunk, "exit", 4) == 0) break;
        memcpy(out + out_len, chunk, n);
        out_len += n;
    }
    return out_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t expected[MAX_OUT];
    if (size > MAX_OUT / 2) return 0;
    size_t expected_len = expected_reply(data, size, expected);

    input = data;
    input_left = size;
    accepted = 0;
    written_len = 0;
    char *argv[] = {"echo_server", NULL};
    if (server_main(1, argv) != 1) abort();

    if (written_len != expected_len || memcmp(written, expected, written_len) != 0) abort();
    return 0;
}

/* The course server, unchanged; its #includes above are no-ops now. */
#define main server_main
#define socket fake_socket
#define bind fake_bind
#define listen fake_listen
#define accept fake_accept
#define read fake_read
#define write fake_write
#define close fake_close
#define printf fake_printf
#include "../echo_server.c"
