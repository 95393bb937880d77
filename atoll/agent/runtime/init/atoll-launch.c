/*
 * atoll-launch: runs the OCI runtime (crun) inside a container's cgroups, on hosts where Atoll manages
 * cgroups itself.
 *
 * Why it exists: crun starts containers several times faster than runc, but it refuses cgroup v1
 * "hybrid" hosts (a cgroup2 tree mounted beside the v1 controllers with any controller in it) even with
 * `--cgroup-manager=disabled`. So on such hosts the agent creates the container's cgroups and writes
 * their limits itself (atoll/agent/runtime/owncgroups.py), and runs crun with its cgroup manager
 * disabled through this launcher:
 *
 *   -m            enter a private mount namespace and hide the cgroup2 tree's controller list there
 *                 (bind /dev/null over /sys/fs/cgroup/unified/cgroup.controllers): the one file crun
 *                 reads to refuse the host. The namespace dies with the runtime; the container leaves
 *                 it for its own root at pivot_root; the host's mounts are untouched.
 *   -c IN:HOME    one per hierarchy: IN is the container's `cgroup.procs`, HOME the agent's. We join
 *                 IN before the runtime starts, so the runtime's children (the container's init, an
 *                 exec'd process) inherit the cgroups at fork and nothing of the container ever runs
 *                 outside its limits.
 *   -o PIDFILE    (exec) once the runtime has written PIDFILE (the exec'd process exists), move the
 *                 runtime itself back to HOME: it only relays the process's streams and must not count
 *                 as a process of the container (pids, top, freezer).
 *   -w PIDFILE    (run) after the runtime exits, wait (at most a second) until every child we
 *                 inherited from it has ended, except the container's init named in PIDFILE.
 *
 * The runtime runs as our child, with SIGKILL as its parent-death signal; signals we get are forwarded
 * to it (SIGWINCH for an exec's terminal). We are a child subreaper: crun leaves an intermediate process
 * of its own behind to be reaped by whoever inherits it, and until then it counts in the container's
 * pids cgroup; we reap every such zombie before we exit with the runtime's status (the container's
 * init, still running, then goes to the host's init as before). It is a tiny static binary rather than
 * Python between fork and exec, because the agent is multi-threaded.
 *
 * Usage: atoll-launch [-m] [-c IN:HOME]... [-o PIDFILE] [-w PIDFILE] -- ARGV...
 * Exit status 126 and a message on stderr if a step fails before the runtime runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONTROLLERS "/sys/fs/cgroup/unified/cgroup.controllers"
#define MAX_CGROUPS 32

static pid_t child = -1;
static char *ins[MAX_CGROUPS], *homes[MAX_CGROUPS];
static int ncgroups;

static int fail(const char *what, const char *arg)
{
    fprintf(stderr, "atoll-launch: %s %s: %s\n", what, arg, strerror(errno));
    return 126;
}

static int write_pid(const char *procs, pid_t pid)
{
    char buf[32];
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int n = snprintf(buf, sizeof buf, "%d\n", (int)pid);
    ssize_t w = write(fd, buf, (size_t)n);
    int saved = errno;
    close(fd);
    errno = saved;
    return w == n ? 0 : -1;
}

static int hide_controllers(void)
{
    if (unshare(CLONE_NEWNS) < 0)
        return -1;
    /* Private, so the bind below never propagates back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -1;
    if (access(CONTROLLERS, F_OK) < 0)
        return errno == ENOENT ? 0 : -1; /* no cgroup2 tree there: nothing to hide */
    return mount("/dev/null", CONTROLLERS, NULL, MS_BIND, NULL);
}

static void forward(int sig)
{
    if (child > 0)
        kill(child, sig);
}

/* Whether we have a child other than `keep` (from /proc/self/task/<pid>/children). */
static int other_children(pid_t keep)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n"))
        if (atoi(tok) != keep)
            return 1;
    return 0;
}

static pid_t read_pid(const char *path)
{
    char buf[32] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? (pid_t)atoi(buf) : -1;
}

static int nonempty(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

int main(int argc, char **argv)
{
    const char *pidfile = NULL, *initfile = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "-m") == 0) {
            if (hide_controllers() < 0)
                return fail("mount namespace for", CONTROLLERS);
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc && ncgroups < MAX_CGROUPS) {
            char *pair = argv[++i], *colon = strchr(pair, ':');
            if (colon == NULL) {
                fprintf(stderr, "atoll-launch: -c wants IN:HOME, not %s\n", pair);
                return 126;
            }
            *colon = '\0';
            ins[ncgroups] = pair;
            homes[ncgroups++] = colon + 1;
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            pidfile = argv[++i];
        } else if (strcmp(argv[i], "-w") == 0 && i + 1 < argc) {
            initfile = argv[++i];
        } else {
            fprintf(stderr, "atoll-launch: unknown argument %s\n", argv[i]);
            return 126;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: atoll-launch [-m] [-c IN:HOME]... [-o PIDFILE] -- ARGV...\n");
        return 126;
    }
    for (int k = 0; k < ncgroups; k++)
        if (write_pid(ins[k], getpid()) < 0)
            return fail("cannot join cgroup", ins[k]);
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    int forwarded[] = {SIGWINCH, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT};
    for (size_t k = 0; k < sizeof forwarded / sizeof *forwarded; k++)
        sigaction(forwarded[k], &sa, NULL);

    pid_t parent = getpid();
    child = fork();
    if (child < 0)
        return fail("cannot fork for", argv[i]);
    if (child == 0) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (size_t k = 0; k < sizeof forwarded / sizeof *forwarded; k++)
            sigaction(forwarded[k], &dfl, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        execv(argv[i], argv + i);
        _exit(fail("cannot exec", argv[i]));
    }

    int status = 0, moved = pidfile == NULL;
    for (;;) {
        pid_t got = waitpid(child, &status, moved ? 0 : WNOHANG);
        if (got == child)
            break;
        if (got < 0 && errno != EINTR)
            return fail("cannot wait for", argv[i]);
        if (!moved && nonempty(pidfile)) {
            for (int k = 0; k < ncgroups; k++) {
                write_pid(homes[k], child);
                write_pid(homes[k], getpid());
            }
            moved = 1;
        } else if (!moved) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
    child = -1;
    pid_t init = initfile != NULL ? read_pid(initfile) : -1;
    for (int waited = 0;; waited++) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ; /* the runtime's orphans that have already ended */
        if (initfile == NULL || waited >= 1000 || !other_children(init))
            break;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        kill(getpid(), WTERMSIG(status));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 126;
}
