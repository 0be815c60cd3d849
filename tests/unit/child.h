/* child.h: run a hostile input's case in a child process, so that its peak memory (wait4's
 * ru_maxrss) is its own and an exit from inside the library (icn_die on a failed allocation)
 * is seen as a failure. Include after cmocka.h. */
#ifndef ICN_TEST_CHILD_H
#define ICN_TEST_CHILD_H
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1 /* address-space limits and RSS mean other things under ASan */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Run fn in a child with an address-space limit of as_mb (0: none). Its error message comes back
 * through a pipe. Returns fn's result (0 or -1), or 100 + exit status when the child exited
 * on its own (icn_die), or 200 on a signal; *peak_mb: the child's peak resident memory. */
static int in_child(int (*fn)(char *err, size_t errlen), long as_mb, char *err, size_t errlen, long *peak_mb) {
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        if (as_mb && !UNDER_ASAN) {
            struct rlimit rl = {(rlim_t)as_mb << 20, (rlim_t)as_mb << 20};
            setrlimit(RLIMIT_AS, &rl);
        }
        char e[ICN_ERRLEN] = "";
        int rc = fn(e, sizeof e);
        if (write(pfd[1], e, strlen(e)) < 0) _exit(99);
        _exit(rc == 0 ? 0 : 1);
    }
    close(pfd[1]);
    ssize_t k = read(pfd[0], err, errlen - 1);
    err[k > 0 ? k : 0] = 0;
    close(pfd[0]);
    int status;
    struct rusage ru;
    assert_int_equal(wait4(pid, &status, 0, &ru), pid);
    *peak_mb = ru.ru_maxrss / 1024;
    if (WIFSIGNALED(status)) return 200;
    int code = WEXITSTATUS(status);
    if (code == 0) return 0;
    return k > 0 && code == 1 ? -1 : 100 + code;
}

#endif
