/*
 * atoll-launch: runs the OCI runtime (crun) inside the container's cgroups, on hosts where Atoll
 * manages cgroups itself.
 *
 * Why it exists: crun starts containers several times faster than runc, but it refuses cgroup v1
 * "hybrid" hosts (a cgroup2 tree mounted beside the v1 controllers with any controller in it) even with
 * `--cgroup-manager=disabled`. So on such hosts the agent creates the container's cgroups and writes
 * their limits itself (atoll/agent/runtime/owncgroups.py), and runs crun with its cgroup manager
 * disabled through this launcher, which:
 *
 *   -c FILE   writes its own pid into FILE (a `cgroup.procs`), once per hierarchy, BEFORE it execs the
 *             runtime: crun's children, the container's init and every exec'd process, inherit the
 *             cgroups at fork, so nothing of the container ever runs outside them;
 *   -m        enters a private mount namespace and hides the cgroup2 tree's controller list there
 *             (binds /dev/null over /sys/fs/cgroup/unified/cgroup.controllers), which is the one file
 *             crun reads to refuse the host. The namespace dies with the runtime process; the
 *             container leaves it for its own root at pivot_root, and the host's mounts are untouched.
 *
 * then execs ARGV. It is a tiny static binary rather than Python code between fork and exec, because
 * the agent is multi-threaded (forking it and running Python in the child could deadlock).
 *
 * Usage: atoll-launch [-m] [-c FILE]... -- ARGV...
 * Exit status 126 and a message on stderr if a step fails before the exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#define CONTROLLERS "/sys/fs/cgroup/unified/cgroup.controllers"

static int fail(const char *what, const char *arg) {
    fprintf(stderr, "atoll-launch: %s %s: %s\n", what, arg, strerror(errno));
    return 126;
}

static int join(const char *procs) {
    char buf[32];
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    ssize_t w = write(fd, buf, (size_t)n);
    int saved = errno;
    close(fd);
    errno = saved;
    return w == n ? 0 : -1;
}

static int hide_controllers(void) {
    if (unshare(CLONE_NEWNS) < 0)
        return -1;
    /* Private, so the bind below never propagates back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -1;
    if (access(CONTROLLERS, F_OK) < 0)
        return errno == ENOENT ? 0 : -1; /* no cgroup2 tree there: nothing to hide */
    return mount("/dev/null", CONTROLLERS, NULL, MS_BIND, NULL);
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "-m") == 0) {
            if (hide_controllers() < 0)
                return fail("mount namespace for", CONTROLLERS);
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            i++;
            if (join(argv[i]) < 0)
                return fail("cannot join cgroup", argv[i]);
        } else {
            fprintf(stderr, "atoll-launch: unknown argument %s\n", argv[i]);
            return 126;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: atoll-launch [-m] [-c FILE]... -- ARGV...\n");
        return 126;
    }
    execv(argv[i], argv + i);
    return fail("cannot exec", argv[i]);
}
