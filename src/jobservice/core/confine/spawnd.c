/*
 * jobd-spawnd: the spawner of spawnd.py, compiled, with one vfork per job instead of a copy of
 * a Python interpreter. The protocol, the child's steps and their order are spawnd.py's (read
 * its docstring first); spawner.py runs this program when `make dev` has built it and falls
 * back to spawnd.py otherwise. tests/unit/test_spawner.py runs the same tests against both.
 *
 * The child is made with clone(CLONE_VM | CLONE_VFORK | CLONE_PARENT): it borrows our memory
 * (no page tables are copied: this is what makes it cheaper than the Python spawner's clone)
 * and runs on a stack of its own while we wait, in the kernel, until it has exec'd or exited.
 * It is jobd's child, not ours (CLONE_PARENT), exactly as with spawnd.py. It reports a failure
 * by writing the stage and errno (and, for a script whose #! names a missing program, that
 * program's name as the job's account reads it) into a page shared with us, then exits 127.
 *
 * In the child only system calls: no malloc, no stdio, no locks. Credentials are changed with
 * the raw system calls (glibc's wrappers would try to change every thread's, which is only
 * ours here but is not the child's to do). We install no signal handlers, so no handler of
 * ours can run in the child on our memory (each disposition is the default or ignored).
 *
 * Once the child has switched account, any process of that account may signal it before it
 * execs, or make it wait (a directory on the account's own FUSE mount that never answers), and
 * we would wait in the kernel with every start of every user behind us. A watchdog thread
 * looks at a child that has not exec'd after a second: it kills it through the pidfd the kernel
 * gave us (CLONE_PIDFD: no pid reuse) if it is stopped, or in any case after `limit` seconds
 * (10, or argv[2]); the start is refused as "stopped" or "timeout".
 *
 * Sharing our memory is safe only while the account cannot read the child's memory: the
 * kernel makes a process that changes its uid undumpable (so no /proc/PID/mem, no ptrace by
 * the account) only when fs.suid_dumpable is 0. Otherwise the child gets a copy of our memory
 * instead (CLONE_VFORK without CLONE_VM, a few tens of microseconds more), and each request is
 * wiped from our memory once answered, so the copy holds only the job's own request.
 *
 * Build: cc -O2 -pthread -o jobd-spawnd spawnd.c (the Makefile adds hardening flags).
 * Usage: jobd-spawnd FD [LIMIT [copy]]: copy forces the copying clone, for tests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_MESSAGE (1 << 16)       /* jobd sends larger requests in a memfd */
#define MAX_REQUEST (16u << 20)     /* a memfd's request, at most (exec takes far less) */
#define MAX_FDS 4                   /* a memfd and the job's three */
#define MAX_USAGE_FILES 8           /* a finish reads 3 */
#define USAGE_READ 4096             /* bytes of each usage file, as spawnd.py */
#define CHILD_STACK (256 * 1024)
#define INTERP_MAX 129              /* bytes of a #! name reported: jobd shows 128, and "..." */
#define SCRIPT_HEAD 256             /* bytes of a script the kernel reads for its #! line */
#define MAX_REPLY (16 + MAX_USAGE_FILES * (USAGE_READ + 1))

/* One job, parsed: pointers into the request's buffer (every field is NUL-terminated). */
struct job {
    int set_ids;
    uid_t uid;
    gid_t gid;
    const char *dir;
    const char *executable; /* "": search path for argv[0] */
    const char *path;
    char **procs; /* NULL-terminated */
    char **argv;  /* NULL-terminated */
    char **envp;  /* NULL-terminated */
    int stdio[3];
};

/* What the child tells us before it exits 127, in a page shared with it (MAP_SHARED):
 * checked before use, since the account may write into that page. */
struct report {
    volatile int failed;
    volatile int err;
    volatile int stage;                 /* an index into STAGES */
    volatile int interp_len;            /* INTERP: the length of interp; -1: unreadable */
    volatile char interp[INTERP_MAX];   /* INTERP: the missing program the file's #! names, */
};                                      /* as read by the job's account (no trust needed) */

static const char *const STAGES[] = {"cgroup", "session", "account", "dir", "stdio", "exec",
                                     "interp"};
enum { CGROUP, SESSION, ACCOUNT, DIR, STDIO, EXEC, INTERP };

/* The child's start: the job, and where to report. */
struct start {
    const struct job *job;
    struct report *report;
};

static char *child_stack_top;
static struct report *shared_report;
static int share_memory; /* CLONE_VM: fs.suid_dumpable is 0 */

#if defined(SYS_setresuid32) /* 32-bit ABIs: the plain calls take 16-bit ids */
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_SETRESGID SYS_setresgid32
#define SYS_SETRESUID SYS_setresuid32
#else
#define SYS_SETGROUPS SYS_setgroups
#define SYS_SETRESGID SYS_setresgid
#define SYS_SETRESUID SYS_setresuid
#endif

/* The child being started, for the watchdog: all under `lock`, but `pidfd`, which the kernel
 * writes during clone (before the child runs) while we wait there. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned long starts; /* how many children have been started: tells one from the next */
    int busy;             /* a child is between clone and exec */
    volatile int pidfd;   /* its pidfd, or -1 */
    const char *killed;   /* why the watchdog killed it ("stopped", "timeout"), or NULL */
} watch = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, -1, NULL};

static long limit_seconds = 10; /* a child not exec'd by then is killed, stopped or not */

/* ---- the child: system calls only ---------------------------------------------------- */

static void fail(struct report *r, int stage, int err) {
    r->stage = stage;
    r->err = err;
    r->failed = 1;
    _exit(127);
}

/* os.path.join(entry, name) as spawnd.py's search does: an absolute name stands alone, an
 * empty entry means the directory we are in. 0, or ENAMETOOLONG. */
static int join(char *out, size_t size, const char *entry, size_t entry_len, const char *name) {
    size_t name_len = strlen(name);
    size_t at = 0;
    if (name[0] != '/' && entry_len > 0) {
        if (entry_len + 1 >= size) return ENAMETOOLONG;
        memcpy(out, entry, entry_len);
        at = entry_len;
        if (out[at - 1] != '/') out[at++] = '/';
    }
    if (at + name_len + 1 > size) return ENAMETOOLONG;
    memcpy(out + at, name, name_len + 1);
    return 0;
}

/* An exec of `file` failed with `err`. ENOENT for a file that exists, if it is a script,
 * means that the program its #! line names does not: report that program's name, read as the
 * job's account, and fail as INTERP; also if the account may not read the file (length -1:
 * it cannot tell). Otherwise (not a script: an ELF file whose loader is missing) return. */
static void check_interpreter(const char *file, int err, struct report *r) {
    struct stat st;
    if ((err != ENOENT && err != ENOTDIR) || stat(file, &st) != 0 || !S_ISREG(st.st_mode)) return;
    char head[SCRIPT_HEAD];
    ssize_t got = -1;
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd >= 0) {
        got = read(fd, head, sizeof head);
        close(fd);
    }
    if (got < 0) {
        r->interp_len = -1;
        fail(r, INTERP, err);
    }
    if (got < 2 || head[0] != '#' || head[1] != '!') return;
    int len = 0; /* the kernel's binfmt_script parse */
    ssize_t at = 2;
    while (at < got && (head[at] == ' ' || head[at] == '\t')) at++;
    while (at < got && len < INTERP_MAX && head[at] != ' ' && head[at] != '\t' &&
           head[at] != '\n' && head[at] != '\0')
        r->interp[len++] = head[at++];
    r->interp_len = len;
    fail(r, INTERP, err);
}

/* execve argv[0] from the first PATH entry that has it, as execvp: returns only on failure.
 * ENOENT for a file that exists means its #! interpreter does not: stop there ("interp"). */
static void exec_on_path(const struct job *j, struct report *r) {
    char candidate[PATH_MAX + NAME_MAX + 2];
    int first = 0; /* as execvp: the first file found but not executable */
    const char *entry = j->path;
    for (;;) {
        const char *end = strchr(entry, ':');
        size_t len = end ? (size_t)(end - entry) : strlen(entry);
        int err = join(candidate, sizeof candidate, entry, len, j->argv[0]);
        if (err == 0) {
            execve(candidate, j->argv, j->envp);
            err = errno;
            check_interpreter(candidate, err, r);
        }
        if (err != ENOENT && err != ENOTDIR && first == 0) first = err;
        if (!end) break;
        entry = end + 1;
    }
    fail(r, EXEC, first ? first : ENOENT);
}

static int child_main(void *arg) {
    const struct start *start = arg;
    const struct job *j = start->job;
    struct report *r = start->report;
    for (char **procs = j->procs; *procs; procs++) {
        int fd = open(*procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0) fail(r, CGROUP, errno);
        if (write(fd, "0", 1) != 1) fail(r, CGROUP, errno); /* 0: the writing process */
        close(fd);
    }
    if (setsid() < 0) fail(r, SESSION, errno);
    if (j->set_ids) {
        gid_t groups[1] = {j->gid}; /* its own group only: none of ours */
        if (syscall(SYS_SETGROUPS, 1, groups) != 0) fail(r, ACCOUNT, errno);
        if (syscall(SYS_SETRESGID, j->gid, j->gid, j->gid) != 0) fail(r, ACCOUNT, errno);
        if (syscall(SYS_SETRESUID, j->uid, j->uid, j->uid) != 0) fail(r, ACCOUNT, errno);
    }
    if (chdir(j->dir) != 0) fail(r, DIR, errno);
    for (int target = 0; target < 3; target++) /* the copy on 0-2 is inheritable */
        if (dup2(j->stdio[target], target) < 0) fail(r, STDIO, errno);
    if (j->executable[0]) {
        execve(j->executable, j->argv, j->envp);
        int err = errno;
        check_interpreter(j->executable, err, r);
        fail(r, EXEC, err);
    }
    exec_on_path(j, r);
    return 127; /* not reached */
}

/* ---- the watchdog thread ------------------------------------------------------------- */

/* Whether the process behind `pidfd` is stopped (or traced): state T or t in its stat. */
static int is_stopped(int pidfd) {
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got <= 0) return 0;
    text[got] = '\0';
    const char *pid = strstr(text, "Pid:");
    if (!pid) return 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", strtol(pid + 4, NULL, 10));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got <= 0) return 0;
    text[got] = '\0';
    const char *end = strrchr(text, ')'); /* after the command name, which may hold anything */
    return end && end[1] == ' ' && (end[2] == 'T' || end[2] == 't');
}

static void *watchdog(void *unused) {
    (void)unused;
    pthread_mutex_lock(&watch.lock);
    for (;;) {
        while (!watch.busy) pthread_cond_wait(&watch.changed, &watch.lock);
        unsigned long start = watch.starts;
        struct timespec began, deadline;
        clock_gettime(CLOCK_MONOTONIC, &began);
        for (long second = 1; watch.busy && watch.starts == start && !watch.killed; second++) {
            deadline = began;
            deadline.tv_sec += second;
            while (watch.busy && watch.starts == start)
                if (pthread_cond_timedwait(&watch.changed, &watch.lock, &deadline) == ETIMEDOUT)
                    break;
            if (!watch.busy || watch.starts != start || watch.pidfd < 0) continue;
            const char *why = is_stopped(watch.pidfd) ? "stopped"
                              : second >= limit_seconds ? "timeout"
                                                        : NULL;
            if (why && syscall(SYS_pidfd_send_signal, watch.pidfd, SIGKILL, NULL, 0) == 0)
                watch.killed = why;
        }
        while (watch.busy && watch.starts == start) /* until this child is done with */
            pthread_cond_wait(&watch.changed, &watch.lock);
    }
    return NULL;
}

static void start_watchdog(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&watch.changed, &attr);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals are the main thread's to take */
    pthread_t thread;
    int err = pthread_create(&thread, NULL, watchdog, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        fprintf(stderr, "jobd-spawnd: cannot start the watchdog: %s\n", strerror(err));
        exit(1);
    }
}

/* clone the child for `start`, watched; its pid, or -1 with errno. `killed` says why the
 * watchdog killed it, or is NULL. */
static int clone_watched(struct start *start, const char **killed) {
    static int with_pidfd = CLONE_PIDFD; /* 0 where the kernel lacks it (before 5.2) */
    int pidfd = -1;
    pthread_mutex_lock(&watch.lock);
    watch.starts++;
    watch.busy = 1;
    watch.pidfd = -1;
    watch.killed = NULL;
    pthread_cond_signal(&watch.changed);
    pthread_mutex_unlock(&watch.lock);
    int flags = (share_memory ? CLONE_VM : 0) | CLONE_VFORK | CLONE_PARENT;
    int pid = clone(child_main, child_stack_top, flags | with_pidfd, start, &watch.pidfd);
    if (pid < 0 && errno == EINVAL && with_pidfd) {
        with_pidfd = 0;
        pid = clone(child_main, child_stack_top, flags, start, NULL);
    }
    int err = errno;
    pthread_mutex_lock(&watch.lock);
    watch.busy = 0;
    pidfd = pid >= 0 && with_pidfd ? watch.pidfd : -1;
    watch.pidfd = -1;
    *killed = watch.killed;
    pthread_cond_signal(&watch.changed);
    pthread_mutex_unlock(&watch.lock);
    if (pidfd >= 0) close(pidfd);
    errno = err;
    return pid;
}

/* ---- the spawner --------------------------------------------------------------------- */

/* A decimal id, or -1 (empty or malformed). */
static long long parse_id(const char *s) {
    if (!*s) return -1;
    unsigned long long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -2;
        v = v * 10 + (unsigned)(*s - '0');
        if (v > 0xfffffffeULL) return -2; /* (uid_t)-1 means "unchanged" to the kernel */
    }
    return (long long)v;
}

/* A count no larger than `max`, or -1. */
static long parse_count(const char *s, size_t max) {
    long long v = parse_id(s);
    return v < 0 || (unsigned long long)v > max ? -1 : (long)v;
}

/* Parse REQUEST (spawnd.parse): 0, or -1 if malformed. `buf` holds `len` bytes plus one
 * spare, and `fields` room for len + 2 pointers; the job's arrays point into both. */
static int parse(char *buf, size_t len, char **fields, struct job *j) {
    if (len == 0 || buf[len - 1] != '\0') buf[len++] = '\0'; /* the last field's terminator */
    size_t n = 0;
    for (size_t at = 0; at < len; at += strlen(buf + at) + 1) fields[n++] = buf + at;
    if (n < 7) return -1;
    long long uid = parse_id(fields[0]), gid = parse_id(fields[1]);
    if (uid < -1 || gid < -1 || (uid < 0) != (gid < 0)) return -1; /* both, or neither */
    j->set_ids = uid >= 0;
    j->uid = (uid_t)uid;
    j->gid = (gid_t)gid;
    j->dir = fields[2];
    j->executable = fields[3];
    j->path = fields[4];
    long nprocs = parse_count(fields[5], n - 7);
    if (nprocs < 0) return -1;
    size_t at = 6 + (size_t)nprocs;
    long nargv = parse_count(fields[at], n - at - 1);
    if (nargv <= 0) return -1; /* no argv */
    /* fields: ... PROCS... NARGV ARGV... ENV...: NULL-terminate the three lists in place, by
     * moving ENV one place on and putting NULLs where NARGV and the gap were. */
    size_t env_at = at + 1 + (size_t)nargv, nenv = n - env_at;
    memmove(fields + env_at + 1, fields + env_at, nenv * sizeof *fields);
    fields[env_at + 1 + nenv] = NULL;
    fields[env_at] = NULL;
    j->envp = fields + env_at + 1;
    j->argv = fields + at + 1;
    j->procs = fields + 6;
    fields[at] = NULL;
    return 0;
}

/* Free a request, wiped first: no later child's copy of our memory holds it. */
static void wipe_free(char *request, size_t len) {
    if (request) explicit_bzero(request, len);
    free(request);
}

static int answer(int channel, const char *reply, size_t len) {
    return send(channel, reply, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* Start the job a message describes; the answer, in `reply`. */
static size_t spawn(char kind, char *body, size_t len, int *fds, int nfds, char *reply) {
    char *request = NULL, **fields = NULL;
    size_t out;
    struct job job;
    if (kind == 'M') { /* the request is in a memfd, before the job's three fds */
        struct stat st;
        if (nfds < 1 || fstat(fds[0], &st) != 0 || st.st_size < 0 ||
            (uint64_t)st.st_size > MAX_REQUEST)
            goto malformed;
        len = (size_t)st.st_size;
        request = malloc(len + 1);
        if (!request) goto malformed;
        for (size_t got = 0; got < len;) {
            ssize_t n = pread(fds[0], request + got, len - got, (off_t)got);
            if (n <= 0) goto malformed;
            got += (size_t)n;
        }
        body = request;
        fds++;
        nfds--;
    }
    if (nfds != 3) goto malformed;
    fields = malloc((len + 2) * sizeof *fields);
    if (!fields || parse(body, len, fields, &job) != 0) goto malformed;
    memcpy(job.stdio, fds, sizeof job.stdio);

    struct report *report = shared_report;
    report->failed = report->err = report->stage = report->interp_len = 0;
    struct start start = {.job = &job, .report = report};
    const char *killed;
    int pid = clone_watched(&start, &killed);
    int stage = report->stage, failed = report->failed, err = report->err;
    char interp[2 * INTERP_MAX + 1]; /* hex: whatever the account wrote, it is only shown */
    int interp_len = report->interp_len;
    if (interp_len < 0 || interp_len > INTERP_MAX) interp_len = 0; /* 0: not known */
    for (int i = 0; i < interp_len; i++)
        snprintf(interp + 2 * i, 3, "%02x", (unsigned char)report->interp[i]);
    interp[2 * interp_len] = '\0';
    if (pid < 0)
        out = (size_t)snprintf(reply, MAX_REPLY, "E clone %d 0", errno);
    else if (killed) /* killed before exec: it exited, as a refused child does */
        out = (size_t)snprintf(reply, MAX_REPLY, "E %s %d %d", killed,
                               killed[0] == 's' ? EINTR : ETIMEDOUT, pid);
    else if (failed && stage == INTERP && err >= 0)
        out = (size_t)snprintf(reply, MAX_REPLY, "E interp:%s %d %d", interp, err, pid);
    else if (failed && stage >= 0 && stage < (int)(sizeof STAGES / sizeof *STAGES) && err >= 0)
        out = (size_t)snprintf(reply, MAX_REPLY, "E %s %d %d", STAGES[stage], err, pid);
    else if (failed)
        out = (size_t)snprintf(reply, MAX_REPLY, "E exec 0 %d", pid);
    else
        out = (size_t)snprintf(reply, MAX_REPLY, "P %d", pid);
    explicit_bzero(interp, sizeof interp); /* no later child's copy holds this job's */
    for (size_t i = 0; i < INTERP_MAX; i++) report->interp[i] = 0;
    free(fields);
    wipe_free(request, len);
    return out;
malformed:
    free(fields);
    wipe_free(request, len);
    return (size_t)snprintf(reply, MAX_REPLY, "E request %d 0", EINVAL);
}

/* F + N + FILES... + DIRS... (NUL-terminated): read N usage files, then rmdir the groups. */
static size_t finish(char *body, size_t len, char *reply) {
    char *fields[1 + MAX_USAGE_FILES + 16];
    size_t n = 0, at = 0;
    if (len == 0 || body[len - 1] != '\0') return (size_t)snprintf(reply, 16, "F %d", EINVAL) + 1;
    for (; at < len && n < sizeof fields / sizeof *fields; at += strlen(body + at) + 1)
        fields[n++] = body + at;
    if (at < len) return (size_t)snprintf(reply, 16, "F %d", E2BIG) + 1;
    long count = n ? parse_count(fields[0], MAX_USAGE_FILES) : -1;
    if (count < 0 || (size_t)count > n - 1) return (size_t)snprintf(reply, 16, "F %d", EINVAL) + 1;
    /* the status goes first but is known last: read the files after room for it */
    char contents[MAX_USAGE_FILES * (USAGE_READ + 1)];
    size_t used = 0;
    for (long i = 0; i < count; i++) {
        int fd = open(fields[1 + i], O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t got = read(fd, contents + used, USAGE_READ);
            if (got > 0 && !memchr(contents + used, '\0', (size_t)got)) used += (size_t)got;
            close(fd);
        }
        contents[used++] = '\0'; /* empty if missing or unreadable */
    }
    int status = 0;
    for (size_t i = 1 + (size_t)count; i < n; i++)
        if (rmdir(fields[i]) != 0 && errno != ENOENT && status == 0) status = errno;
    at = (size_t)snprintf(reply, 16, "F %d", status) + 1;
    memcpy(reply + at, contents, used);
    return at + used;
}

/* Whether the kernel makes a process that changes its uid undumpable (fs.suid_dumpable 0),
 * so that the job's account cannot read a child that shares our memory. */
static int uid_change_hides_memory(void) {
    char value[8] = "";
    int fd = open("/proc/sys/fs/suid_dumpable", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t got = read(fd, value, sizeof value - 1);
    close(fd);
    return got > 0 && value[0] == '0';
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4 || (argc == 4 && strcmp(argv[3], "copy") != 0)) {
        fprintf(stderr, "usage: %s FD [LIMIT [copy]] (started by jobd: see spawnd.py)\n",
                argv[0]);
        return 2;
    }
    char *end;
    long channel = strtol(argv[1], &end, 10);
    if (*end || channel < 0 || channel > INT_MAX || fcntl((int)channel, F_SETFD, FD_CLOEXEC) != 0) {
        fprintf(stderr, "%s: %s is not an open descriptor\n", argv[0], argv[1]);
        return 2;
    }
    if (argc >= 3) {
        limit_seconds = strtol(argv[2], &end, 10);
        if (*end || limit_seconds < 1 || limit_seconds > 3600) {
            fprintf(stderr, "%s: LIMIT is whole seconds, 1 to 3600\n", argv[0]);
            return 2;
        }
    }
    share_memory = argc < 4 && uid_change_hides_memory(); /* "copy": as if it did not (tests) */
    /* Signal dispositions and mask are left as jobd's Popen gave them (exec reset every
     * handler; SIGPIPE and SIGXFSZ are back to default): a job inherits what a job jobd forks
     * itself inherits, an ignored SIGQUIT included where jobd's own parent ignored it. */
    /* 0-2 open (on /dev/null if they were not), so that no job's fd we receive lands there. */
    int null = open("/dev/null", O_RDWR);
    while (null >= 0 && null < 3) null = dup(null);
    if (null >= 3) close(null);
    /* The child's stack, with a guard page below it; reused: one child at a time uses it. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *stack = mmap(NULL, CHILD_STACK + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED || mprotect(stack, page, PROT_NONE) != 0) {
        perror("jobd-spawnd: the child's stack");
        return 1;
    }
    child_stack_top = stack + page + CHILD_STACK;
    shared_report = mmap(NULL, sizeof *shared_report, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared_report == MAP_FAILED) {
        perror("jobd-spawnd: the report page");
        return 1;
    }
    start_watchdog();

    static char message[MAX_MESSAGE + 1]; /* + 1: parse's spare byte */
    static char reply[MAX_REPLY];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
    } control;
    for (;;) {
        struct iovec iov = {.iov_base = message, .iov_len = MAX_MESSAGE};
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
            .msg_controllen = sizeof control.buf};
        ssize_t got = recvmsg((int)channel, &msg, MSG_CMSG_CLOEXEC);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return 0; /* jobd's end is gone */
        int fds[MAX_FDS], nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (nfds < MAX_FDS) fds[nfds++] = fd; else close(fd);
            }
        }
        if (got == 0) return 0; /* jobd closed its end: it is shutting down (or gone) */
        size_t out;
        char kind = message[0];
        if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
            out = (size_t)snprintf(reply, sizeof reply, kind == 'F' ? "F %d" : "E request %d 0",
                                   EINVAL) + (kind == 'F');
        else if (kind == 'S' || kind == 'M')
            out = spawn(kind, message + 1, (size_t)got - 1, fds, nfds, reply);
        else if (kind == 'F')
            out = finish(message + 1, (size_t)got - 1, reply);
        else
            out = (size_t)snprintf(reply, sizeof reply, "E request %d 0", EINVAL);
        for (int i = 0; i < nfds; i++) close(fds[i]);
        explicit_bzero(message, (size_t)got); /* no later child's copy of our memory holds it */
        int sent = answer((int)channel, reply, out);
        explicit_bzero(reply, out); /* nor the answer: a job's pid, usage, interpreter */
        if (sent != 0) return 0;
    }
}
