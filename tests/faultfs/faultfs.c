/* faultfs.c - main() of faultfs, a fault-injecting FUSE passthrough.
 *
 *   faultfs BACKING_DIR MOUNTPOINT --ctl SOCKET_PATH [-f] [-s] [-d] [-o opt,...]
 *
 * Mounts BACKING_DIR at MOUNTPOINT and serves fault commands on the Unix
 * socket SOCKET_PATH (see faultfs_ctl.c and README.md). Other options go to
 * libfuse unchanged (-f foreground, -s single-threaded, -d debug, -o ...).
 * Exit status: 0 after a clean unmount, 1 on failure, 2 on a usage error.
 */
#define FUSE_USE_VERSION 31
#include "faultfs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define FF_ARGS_MAX 64

static void usage(void)
{
	fprintf(stderr, "usage: faultfs BACKING_DIR MOUNTPOINT --ctl SOCKET_PATH [-f] [-s] [-d] "
	                "[-o opt,...]\n");
}

/* Each undo record holds an fd: allow as many as the hard limit does. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* An absolute form of path (libfuse may chdir("/") when it daemonizes). */
static int absolute(const char *path, char *out, size_t len)
{
	char cwd[PATH_MAX];
	int n;

	if (path[0] == '/')
		n = snprintf(out, len, "%s", path);
	else if (getcwd(cwd, sizeof(cwd)) != NULL)
		n = snprintf(out, len, "%s/%s", cwd, path);
	else
		return -errno;
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int main(int argc, char **argv)
{
	char *fargv[FF_ARGS_MAX];
	const char *backing = NULL, *mnt = NULL, *ctl = NULL;
	char ctl_abs[PATH_MAX];
	int fargc = 0, rootfd = -1, rc = 1;

	fargv[fargc++] = argv[0];
	for (int i = 1; i < argc; i++) {
		if (fargc >= FF_ARGS_MAX - 4)
			goto usage;
		if (strcmp(argv[i], "--ctl") == 0 && i + 1 < argc) {
			ctl = argv[++i];
		} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
			fargv[fargc++] = argv[i];
			fargv[fargc++] = argv[++i];
		} else if (argv[i][0] == '-') {
			fargv[fargc++] = argv[i];
		} else if (backing == NULL) {
			backing = argv[i];
		} else if (mnt == NULL) {
			mnt = argv[i];
		} else {
			goto usage;
		}
	}
	if (backing == NULL || mnt == NULL || ctl == NULL)
		goto usage;
	fargv[fargc++] = (char *)mnt;
	fargv[fargc++] = "-o";
	fargv[fargc++] = "fsname=faultfs,subtype=faultfs,max_threads=16";
	fargv[fargc] = NULL;

	raise_fd_limit();
	rootfd = open(backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		FF_LOG("error", "event=backing_open path=%s errno=%d", backing, errno);
		goto out;
	}
	if (ff_ops_init(rootfd) != 0) {
		FF_LOG("error", "event=trash_init path=%s errno=%d", backing, errno);
		goto out;
	}
	if (absolute(ctl, ctl_abs, sizeof(ctl_abs)) != 0 || ff_ctl_listen(ctl_abs) != 0) {
		FF_LOG("error", "event=ctl_listen path=%s errno=%d", ctl, errno);
		goto out;
	}
	FF_LOG("info", "event=start backing=%s mountpoint=%s ctl=%s", backing, mnt, ctl_abs);
	rc = fuse_main(fargc, fargv, &ff_ops, NULL) == 0 ? 0 : 1;
	ff_ctl_stop(); /* also done by destroy; closes the socket if init never ran */
	ff_ops_fini();
	FF_LOG("info", "event=exit rc=%d", rc);
out:
	if (rootfd >= 0)
		close(rootfd);
	return rc;
usage:
	usage();
	return 2;
}
