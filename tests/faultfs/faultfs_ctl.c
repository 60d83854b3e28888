/* faultfs_ctl.c - the control socket of faultfs.
 *
 * A Unix stream socket; each line is one command, each answer one line,
 * "ok ..." or "err ...":
 *   fsync_eio on|off    enospc_after N|-1    delay_ms N    freeze    thaw
 *   powerloss           revive               status        reset     ping
 * One thread serves up to FF_CTL_CLIENTS_MAX clients with poll(); a line
 * longer than FF_CTL_LINE_MAX bytes closes its client. The thread never takes
 * part in freeze, so thaw always gets through.
 */
#include "faultfs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct ctl_client {
	int fd;
	size_t used;
	char line[FF_CTL_LINE_MAX];
};

static int g_listen_fd = -1;
static int g_wake[2] = {-1, -1};
static char g_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static pthread_t g_thread;
static bool g_running;

int ff_ctl_listen(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd = -1, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path); /* stale socket of an earlier run */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0) {
		rc = -errno;
		goto fail;
	}
	strcpy(g_path, path);
	g_listen_fd = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

static int parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL)
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Runs one command line; writes the answer (without newline) into out. */
static void run_command(char *line, char *out, size_t len)
{
	char *save = NULL, *cmd = strtok_r(line, " \t\r", &save);
	char *arg = strtok_r(NULL, " \t\r", &save);
	char info[256];
	int64_t v;

	if (cmd == NULL) {
		snprintf(out, len, "err empty command");
	} else if (strcmp(cmd, "fsync_eio") == 0) {
		if (arg != NULL && (strcmp(arg, "on") == 0 || strcmp(arg, "off") == 0)) {
			ff_fault_set_fsync_eio(strcmp(arg, "on") == 0);
			snprintf(out, len, "ok fsync_eio %s", arg);
		} else {
			snprintf(out, len, "err usage: fsync_eio on|off");
		}
	} else if (strcmp(cmd, "enospc_after") == 0) {
		if (parse_int(arg, -1, INT64_MAX, &v) == 0) {
			ff_fault_set_budget(v);
			snprintf(out, len, "ok enospc_after %" PRId64, v);
		} else {
			snprintf(out, len, "err usage: enospc_after N|-1");
		}
	} else if (strcmp(cmd, "delay_ms") == 0) {
		if (parse_int(arg, 0, FF_DELAY_MS_MAX, &v) == 0) {
			ff_fault_set_delay_ms((int)v);
			snprintf(out, len, "ok delay_ms %" PRId64, v);
		} else {
			snprintf(out, len, "err usage: delay_ms 0..%d", FF_DELAY_MS_MAX);
		}
	} else if (strcmp(cmd, "freeze") == 0 || strcmp(cmd, "thaw") == 0) {
		ff_fault_set_frozen(cmd[0] == 'f');
		snprintf(out, len, "ok %s", cmd);
	} else if (strcmp(cmd, "powerloss") == 0) {
		ff_powerloss(info, sizeof(info));
		snprintf(out, len, "ok powerloss %s", info);
	} else if (strcmp(cmd, "revive") == 0) {
		ff_revive();
		snprintf(out, len, "ok revive");
	} else if (strcmp(cmd, "reset") == 0) {
		ff_fault_reset();
		snprintf(out, len, "ok reset");
	} else if (strcmp(cmd, "ping") == 0) {
		snprintf(out, len, "ok pong");
	} else if (strcmp(cmd, "status") == 0) {
		uint64_t bytes;
		size_t files, ops;

		ff_undo_counts(&bytes, &files, &ops);
		ff_fault_format(info, sizeof(info));
		snprintf(out, len, "ok %s undo_bytes=%" PRIu64 " undo_files=%zu undo_ns_ops=%zu",
		         info, bytes, files, ops);
	} else {
		snprintf(out, len, "err unknown command %s", cmd);
	}
}

/* Handles the bytes now readable on c; returns false when c must close. */
static bool client_input(struct ctl_client *c)
{
	ssize_t n = read(c->fd, c->line + c->used, sizeof(c->line) - c->used);
	char *nl;

	if (n <= 0)
		return n < 0 && (errno == EINTR || errno == EAGAIN);
	c->used += (size_t)n;
	while ((nl = memchr(c->line, '\n', c->used)) != NULL) {
		char out[512];
		size_t taken = (size_t)(nl - c->line) + 1;

		*nl = '\0';
		run_command(c->line, out, sizeof(out) - 1);
		strcat(out, "\n");
		if (send(c->fd, out, strlen(out), MSG_NOSIGNAL) < 0)
			return false;
		memmove(c->line, c->line + taken, c->used - taken);
		c->used -= taken;
	}
	if (c->used == sizeof(c->line)) {
		FF_LOG("warn", "event=ctl_line_too_long max=%u", FF_CTL_LINE_MAX);
		return false;
	}
	return true;
}

static void *ctl_main(void *arg)
{
	struct ctl_client clients[FF_CTL_CLIENTS_MAX];
	struct pollfd pfd[FF_CTL_CLIENTS_MAX + 2];
	size_t n = 0;

	(void)arg;
	for (;;) {
		pfd[0] = (struct pollfd){.fd = g_wake[0], .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = g_listen_fd,
		                         .events = n < FF_CTL_CLIENTS_MAX ? POLLIN : 0};
		for (size_t i = 0; i < n; i++)
			pfd[i + 2] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
		if (poll(pfd, n + 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			FF_LOG("error", "event=ctl_poll_failed errno=%d", errno);
			break;
		}
		if (pfd[0].revents != 0)
			break;
		/* Clients first (their pfd slots match clients[] only before accept). */
		for (size_t i = n; i-- > 0;) {
			if (pfd[i + 2].revents == 0 || client_input(&clients[i]))
				continue;
			close(clients[i].fd);
			clients[i] = clients[--n];
		}
		if (pfd[1].revents & POLLIN) {
			int fd = accept4(g_listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0 && n < FF_CTL_CLIENTS_MAX)
				clients[n++] = (struct ctl_client){.fd = fd};
			else if (fd >= 0)
				close(fd);
		}
	}
	for (size_t i = 0; i < n; i++)
		close(clients[i].fd);
	return NULL;
}

int ff_ctl_start(void)
{
	int rc;

	if (g_listen_fd < 0)
		return -EBADF;
	if (pipe2(g_wake, O_CLOEXEC) != 0)
		return -errno;
	rc = -pthread_create(&g_thread, NULL, ctl_main, NULL);
	if (rc != 0) {
		close(g_wake[0]);
		close(g_wake[1]);
		g_wake[0] = g_wake[1] = -1;
		return rc;
	}
	g_running = true;
	return 0;
}

void ff_ctl_stop(void)
{
	if (g_running) {
		if (write(g_wake[1], "x", 1) < 0)
			FF_LOG("warn", "event=ctl_wake_failed errno=%d", errno);
		pthread_join(g_thread, NULL);
		g_running = false;
		close(g_wake[0]);
		close(g_wake[1]);
		g_wake[0] = g_wake[1] = -1;
	}
	if (g_listen_fd >= 0) {
		close(g_listen_fd);
		g_listen_fd = -1;
		unlink(g_path);
	}
}
