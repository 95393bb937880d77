/*
 * atoll-init: process 1 of every Atoll container.
 *
 * Why it exists: Atoll keeps no helper process per container on the host, yet the exit code and the
 * output of a workload must survive the agent being killed. So the container's own PID 1 does the
 * work a shim would do on the host:
 *
 *   - it runs the real command as its child, with stdout/stderr on pipes (or on a pty with -t),
 *   - it appends that output to fd 3 (the instance's log file, opened by the agent) in CRI log format:
 *       <RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n
 *     F marks a full line (its newline removed), P a partial one (longer than 16 KiB, or the output
 *     ended without a newline),
 *   - it forwards signals to the child and reaps every orphan (it is the pid namespace's reaper),
 *   - when the child ends it drains the output that is already there and writes
 *       <exit_code> <signal>\n
 *     to fd 4 (the exit-status file), then exits with exit_code.
 *
 * The runtime hands fds 3 and 4 over with `--preserve-fds 2`; its own stdio for us is /dev/null.
 *
 * With -i (`docker run -i`), fd 5 is a FIFO the agent made (`--preserve-fds 3`), which we hold open for
 * reading *and* writing, so writers (the agent, on behalf of attached clients) may come and go, and the
 * agent may die, without the workload seeing end-of-file. Writers send frames: a 4-byte big-endian
 * length and that many bytes of stdin; a frame of length 0 means end-of-file. The agent writes each
 * frame with one write of at most PIPE_BUF bytes, so frames of concurrent writers never interleave.
 * We relay the payload into the child's stdin (a pipe, or the pty), holding back while it is full.
 * A length with its top bit set marks a control frame: 0x80000004, then rows and columns (16-bit
 * big-endian each) resize the pty. With -t the FIFO is always there, for resizes.
 * The binary is static so it runs in any image, and it is bind-mounted read-only at /dev/.atoll-init,
 * inside the runtime's /dev tmpfs, so the image's root filesystem never sees it.
 *
 * Usage: atoll-init [-t] [-i] -- ARGV...
 *        atoll-init --probe        (exit 0 at once: lets the agent probe a runtime)
 *        atoll-init --tty-exec -- ARGV...
 *            (for a process exec'd with a TTY under crun: crun sizes the container's pty only after the
 *            process has started, so a program asking for the size at once would read 0x0; this
 *            waits, at most 200 ms, until the terminal on stdin has a size, then execs ARGV)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define LOG_FD 3
#define EXIT_FD 4
#define STDIN_FD 5
#define STDIN_BUF 65536
#define MAX_LINE 16384 /* longest record content; longer lines are split into P records */
#define EXIT_INTERNAL 125 /* atoll-init itself failed, as Docker's 125 */
#define DRAIN_LIMIT (1 << 20) /* after the child's exit, per stream: orphans may write forever */

struct stream {
    int fd;            /* read end; -1 once closed */
    const char *name;  /* "stdout" or "stderr" */
    size_t len;        /* bytes buffered, never a full line */
    char buf[MAX_LINE];
};

static struct stream streams[2];
static int nstreams;

/* Write all of buf, retrying on EINTR and partial writes; give up quietly on a real error. */
static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

static size_t format_time(char *out, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, size - n, ".%09ldZ", (long)ts.tv_nsec);
    return n;
}

/* One record per write(), so a record is never interleaved with anything else appended to the log. */
static void emit(const char *stream, const char *time, char tag, const char *data, size_t len)
{
    static char rec[MAX_LINE + 128];
    size_t n = (size_t)snprintf(rec, 128, "%s %s %c ", time, stream, tag);
    memcpy(rec + n, data, len);
    n += len;
    rec[n++] = '\n';
    write_all(LOG_FD, rec, n);
}

/* Emit every full line in the buffer; keep the rest, unless it fills the buffer or `final` is set. */
static void flush_lines(struct stream *s, const char *time, int final)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(s->buf + start, '\n', s->len - start);
        if (nl == NULL)
            break;
        size_t end = (size_t)(nl - s->buf);
        emit(s->name, time, 'F', s->buf + start, end - start);
        start = end + 1;
    }
    size_t rest = s->len - start;
    if (rest > 0 && (final || rest == MAX_LINE)) {
        emit(s->name, time, 'P', s->buf + start, rest);
        rest = 0;
        start = s->len;
    }
    if (start > 0 && rest > 0)
        memmove(s->buf, s->buf + start, rest);
    s->len = rest;
}

static void close_stream(struct stream *s)
{
    char time[64];
    if (s->len > 0) {
        format_time(time, sizeof time);
        flush_lines(s, time, 1);
    }
    close(s->fd);
    s->fd = -1;
}

/*
 * Read once from a stream. Returns the number of bytes read, 0 if nothing is available now, and -1
 * at the end of the stream (EOF, or EIO from a pty master whose slave side has gone).
 */
static ssize_t read_stream(struct stream *s)
{
    char time[64];
    ssize_t n;
    do {
        n = read(s->fd, s->buf + s->len, MAX_LINE - s->len);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n <= 0) {
        close_stream(s);
        return -1;
    }
    format_time(time, sizeof time);
    s->len += (size_t)n;
    flush_lines(s, time, 0);
    return n;
}

/* Write an error as a stderr record so it shows up in the instance's logs. */
static void log_error(const char *what)
{
    char time[64], msg[512];
    format_time(time, sizeof time);
    int n = snprintf(msg, sizeof msg, "atoll-init: %s: %s", what, strerror(errno));
    if (n > 0)
        emit("stderr", time, 'F', msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

static void write_exit(int code, int sig)
{
    char line[32];
    int n = snprintf(line, sizeof line, "%d %d\n", code, sig);
    write_all(EXIT_FD, line, (size_t)n);
}

static void fail(const char *what)
{
    log_error(what);
    write_exit(EXIT_INTERNAL, 0);
    _exit(EXIT_INTERNAL);
}

/* Fds 0-4 (0-5 with stdin) must be open before we create pipes, or a pipe could land on one. */
static void ensure_fds(int last)
{
    for (int fd = 0; fd <= last; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0 && nul != fd) {
            dup2(nul, fd);
            close(nul);
        }
    }
    /* Neither the log nor the exit file may leak into the workload. */
    fcntl(LOG_FD, F_SETFD, FD_CLOEXEC);
    fcntl(EXIT_FD, F_SETFD, FD_CLOEXEC);
    if (last >= STDIN_FD)
        fcntl(STDIN_FD, F_SETFD, FD_CLOEXEC);
}

/* The stdin relay: frames from the FIFO at STDIN_FD, payload buffered for the child's stdin. */
struct relay {
    int in_w;              /* where the child's stdin is written; -1 once closed */
    int own_w;             /* in_w is ours to close (a pipe; not the pty master) */
    int eof;               /* an end-of-file frame came: close in_w once buf is written */
    unsigned char hdr[4];  /* the length of the frame being read */
    size_t hdr_len;
    size_t frame_left;     /* payload bytes of the current frame still to come */
    int control;           /* the current frame is a control frame */
    unsigned char ctl[4];  /* its payload so far */
    size_t ctl_len;
    int pty;               /* the pty master, for resizes; -1 without a tty */
    size_t len;
    unsigned char buf[STDIN_BUF];
};

static struct relay relay = {.in_w = -1, .pty = -1};

static void relay_control(void)
{
    if (relay.ctl_len == 4 && relay.pty >= 0) {
        struct winsize ws = {.ws_row = (unsigned short)((relay.ctl[0] << 8) | relay.ctl[1]),
                             .ws_col = (unsigned short)((relay.ctl[2] << 8) | relay.ctl[3])};
        ioctl(relay.pty, TIOCSWINSZ, &ws);
    }
    relay.ctl_len = 0;
}

static void relay_close(void)
{
    if (relay.in_w >= 0 && relay.own_w)
        close(relay.in_w);
    relay.in_w = -1;
    relay.len = 0;
}

/* Read what fits from the FIFO and unframe it into buf. Once the child's stdin is closed, frames are
 * still read (and dropped) so that writers never block. */
static void relay_read(void)
{
    unsigned char raw[STDIN_BUF];
    size_t room = sizeof relay.buf - relay.len;
    ssize_t n = read(STDIN_FD, raw, room < sizeof raw ? room : sizeof raw);
    if (n <= 0)
        return;
    for (ssize_t k = 0; k < n;) {
        if (relay.frame_left == 0) {
            relay.hdr[relay.hdr_len++] = raw[k++];
            if (relay.hdr_len < 4)
                continue;
            relay.hdr_len = 0;
            relay.control = (relay.hdr[0] & 0x80) != 0;
            relay.frame_left = ((size_t)(relay.hdr[0] & 0x7f) << 24) | ((size_t)relay.hdr[1] << 16) |
                               ((size_t)relay.hdr[2] << 8) | relay.hdr[3];
            if (relay.frame_left == 0 && !relay.control)
                relay.eof = 1;
            continue;
        }
        size_t take = (size_t)(n - k) < relay.frame_left ? (size_t)(n - k) : relay.frame_left;
        if (relay.control) {
            for (size_t c = 0; c < take; c++)
                if (relay.ctl_len < sizeof relay.ctl)
                    relay.ctl[relay.ctl_len++] = raw[k + (ssize_t)c];
            if (take == relay.frame_left)
                relay_control();
        } else if (relay.in_w >= 0 && !relay.eof) {
            memcpy(relay.buf + relay.len, raw + k, take);
            relay.len += take;
        }
        relay.frame_left -= take;
        k += (ssize_t)take;
    }
}

static void relay_write(void)
{
    if (relay.in_w >= 0 && relay.len > 0) {
        ssize_t n = write(relay.in_w, relay.buf, relay.len);
        if (n > 0) {
            memmove(relay.buf, relay.buf + n, relay.len - (size_t)n);
            relay.len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            relay_close(); /* the child closed its stdin */
        }
    }
    if (relay.eof && relay.len == 0 && relay.in_w >= 0 && relay.own_w)
        relay_close();
}

/* The container needs a working 127.0.0.1; without CAP_NET_ADMIN this fails, and that is fine. */
static void loopback_up(void)
{
    int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sk < 0)
        return;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(sk, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        ioctl(sk, SIOCSIFFLAGS, &ifr);
    }
    close(sk);
}

/* Signals the kernel raises for our own faults; they are never blocked or forwarded. */
static int synchronous(int sig)
{
    return sig == SIGFPE || sig == SIGILL || sig == SIGSEGV || sig == SIGBUS || sig == SIGABRT ||
           sig == SIGTRAP || sig == SIGSYS || sig == SIGKILL || sig == SIGSTOP;
}

static void exec_child(char **argv, sigset_t *orig_mask, int tty, const char *slave_name, int out_w,
                       int err_w, int in_r)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (!synchronous(sig))
            signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, orig_mask, NULL);
    setsid();
    if (tty) {
        int slave = open(slave_name, O_RDWR);
        if (slave < 0)
            _exit(EXIT_INTERNAL);
        ioctl(slave, TIOCSCTTY, 0);
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(slave, 2);
        if (slave > 2)
            close(slave);
    } else {
        /* Without -i, stdin stays as inherited: the runtime's /dev/null. */
        if (in_r >= 0)
            dup2(in_r, 0);
        dup2(out_w, 1);
        dup2(err_w, 2);
    }
    /* Everything else we opened is close-on-exec. */
    execvp(argv[0], argv);
    int err = errno;
    char msg[512];
    int n = snprintf(msg, sizeof msg, "atoll-init: exec \"%s\": %s\n", argv[0], strerror(err));
    if (n > 0)
        write_all(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    _exit(err == ENOENT ? 127 : 126);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int tty_exec(char **argv)
{
    struct winsize ws;
    for (int waited = 0; waited < 200; waited++) {
        if (ioctl(0, TIOCGWINSZ, &ws) != 0 || (ws.ws_row && ws.ws_col))
            break;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    execvp(argv[0], argv);
    int err = errno;
    char msg[512];
    int n = snprintf(msg, sizeof msg, "exec: \"%s\": %s\n", argv[0], strerror(err));
    if (n > 0)
        write_all(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    return err == ENOENT ? 127 : 126;
}

int main(int argc, char **argv)
{
    int tty = 0, with_stdin = 0, i = 1;
    if (argc == 2 && strcmp(argv[1], "--probe") == 0)
        return 0;
    if (argc >= 4 && strcmp(argv[1], "--tty-exec") == 0 && strcmp(argv[2], "--") == 0)
        return tty_exec(argv + 3);
    if (i < argc && strcmp(argv[i], "-t") == 0) {
        tty = 1;
        i++;
    }
    if (i < argc && strcmp(argv[i], "-i") == 0) {
        with_stdin = 1;
        i++;
    }
    if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc) {
        static const char usage[] = "usage: atoll-init [-t] [-i] -- ARGV...\n";
        write_all(2, usage, sizeof usage - 1);
        return 2;
    }
    char **child_argv = argv + i + 1;

    ensure_fds(with_stdin ? STDIN_FD : EXIT_FD);
    loopback_up();

    sigset_t all, orig;
    sigemptyset(&all);
    for (int sig = 1; sig < NSIG; sig++)
        if (!synchronous(sig))
            sigaddset(&all, sig);
    sigprocmask(SIG_BLOCK, &all, &orig);
    int sfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        fail("signalfd");

    int out_w = -1, err_w = -1, slave_keep = -1, in_r = -1;
    char slave_name[128] = "";
    if (tty) {
        int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 ||
            ptsname_r(master, slave_name, sizeof slave_name) != 0)
            fail("open pty");
        /* Holding the slave open keeps the master from reporting a hang-up before the child opens it. */
        slave_keep = open(slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave_keep < 0)
            fail("open pty slave");
        streams[nstreams++] = (struct stream){.fd = master, .name = "stdout"};
    } else {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0)
            fail("pipe");
        streams[nstreams++] = (struct stream){.fd = p[0], .name = "stdout"};
        out_w = p[1];
        if (pipe2(p, O_CLOEXEC) != 0)
            fail("pipe");
        streams[nstreams++] = (struct stream){.fd = p[0], .name = "stderr"};
        err_w = p[1];
        if (with_stdin) {
            if (pipe2(p, O_CLOEXEC) != 0)
                fail("pipe");
            in_r = p[0];
            relay.in_w = p[1];
            relay.own_w = 1;
        }
    }
    if (with_stdin && tty) {
        relay.in_w = streams[0].fd; /* the pty master: what we write there, the child reads */
        relay.pty = streams[0].fd;
    }
    if (relay.in_w >= 0)
        set_nonblock(relay.in_w);
    if (with_stdin)
        set_nonblock(STDIN_FD);
    /* A resize the agent queued before the start sets the pty's size before the child can ask. */
    if (with_stdin && tty)
        relay_read();
    for (int k = 0; k < nstreams; k++)
        set_nonblock(streams[k].fd);

    pid_t child = fork();
    if (child < 0)
        fail("fork");
    if (child == 0)
        exec_child(child_argv, &orig, tty, slave_name, out_w, err_w, in_r);
    if (in_r >= 0)
        close(in_r);
    if (out_w >= 0)
        close(out_w);
    if (err_w >= 0)
        close(err_w);
    signal(SIGPIPE, SIG_IGN);

    int status = 0, exited = 0;
    while (!exited) {
        struct pollfd pfd[5];
        int map[5], n = 0;
        pfd[n] = (struct pollfd){.fd = sfd, .events = POLLIN};
        map[n++] = -1;
        for (int k = 0; k < nstreams; k++) {
            if (streams[k].fd >= 0) {
                pfd[n] = (struct pollfd){.fd = streams[k].fd, .events = POLLIN};
                map[n++] = k;
            }
        }
        /* map -2: the FIFO (read while there is room), -3: the child's stdin (write while buffered). */
        if (with_stdin && relay.len < sizeof relay.buf) {
            pfd[n] = (struct pollfd){.fd = STDIN_FD, .events = POLLIN};
            map[n++] = -2;
        }
        if (relay.in_w >= 0 && relay.len > 0) {
            pfd[n] = (struct pollfd){.fd = relay.in_w, .events = POLLOUT};
            map[n++] = -3;
        }
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            fail("poll");
        }
        for (int j = 1; j < n; j++) {
            if (!pfd[j].revents)
                continue;
            if (map[j] == -2)
                relay_read();
            else if (map[j] == -3)
                relay_write();
            else
                read_stream(&streams[map[j]]);
        }
        if (with_stdin)
            relay_write();
        if (!pfd[0].revents)
            continue;
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            if (si.ssi_signo != SIGCHLD)
                kill(child, (int)si.ssi_signo);
        }
        for (;;) {
            int st;
            pid_t pid = waitpid(-1, &st, WNOHANG);
            if (pid < 0 && errno == EINTR)
                continue;
            if (pid <= 0)
                break;
            if (pid == child) {
                status = st;
                exited = 1;
            }
        }
    }

    /* The child is gone: take what it already wrote, but never wait for orphans holding the pipes. */
    for (int k = 0; k < nstreams; k++) {
        ssize_t n, drained = 0;
        while (streams[k].fd >= 0 && drained < DRAIN_LIMIT && (n = read_stream(&streams[k])) > 0)
            drained += n;
    }
    for (int k = 0; k < nstreams; k++)
        if (streams[k].fd >= 0)
            close_stream(&streams[k]);
    if (slave_keep >= 0)
        close(slave_keep);

    int code, sig = 0;
    if (WIFSIGNALED(status)) {
        sig = WTERMSIG(status);
        code = 128 + sig;
    } else {
        code = WEXITSTATUS(status);
    }
    write_exit(code, sig);
    return code;
}
