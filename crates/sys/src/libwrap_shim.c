/*
 * The two libwrap (tcp_wrappers) calls rsockd makes, with the setjmp(3) libwrap needs: its
 * option handlers ("deny", "allow", errors in a table) leave through longjmp(tcpd_buf),
 * which must land in a C frame, never across Rust ones. The caller (src/libwrap.rs)
 * serialises every call: libwrap keeps its state in globals.
 */
#include <setjmp.h>
#include <string.h>
#include <tcpd.h>

extern jmp_buf tcpd_buf;

/* 1: allowed, 0: denied (hosts.allow/hosts.deny, or an option in them said so). */
int rsockd_wrap_hosts_access(int fd, const char *daemon, const char *allow, const char *deny)
{
    static char allow_buf[4096], deny_buf[4096];
    struct request_info req;
    volatile int rc;

    if (allow != NULL) {
        strncpy(allow_buf, allow, sizeof(allow_buf) - 1);
        hosts_allow_table = allow_buf;
    }
    if (deny != NULL) {
        strncpy(deny_buf, deny, sizeof(deny_buf) - 1);
        hosts_deny_table = deny_buf;
    }
    request_init(&req, RQ_DAEMON, daemon, RQ_FILE, fd, 0);
    fromhost(&req);
    switch (setjmp(tcpd_buf)) {
    case 0:
        break;
    case AC_PERMIT:
        return 1;
    default:
        return 0;
    }
    rc = hosts_access(&req);
    return rc ? 1 : 0;
}

/* 0: the options ran, 1: an option allowed explicitly, -1: one denied or failed. */
int rsockd_wrap_process_options(int fd, const char *daemon, const char *line)
{
    char buf[4096];
    struct request_info req;
    int jumped;

    strncpy(buf, line, sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = '\0';
    request_init(&req, RQ_DAEMON, daemon, RQ_FILE, fd, 0);
    fromhost(&req);
    jumped = setjmp(tcpd_buf);
    if (jumped != 0)
        return jumped == AC_PERMIT ? 1 : -1;
    process_options(buf, &req);
    return 0;
}
