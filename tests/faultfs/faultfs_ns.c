/* faultfs_ns.c - undo journal of directory entries not yet made durable.
 *
 * Every create, mkdir, unlink, rmdir and rename is appended to a journal with
 * the directories it changed (the parent of each path, by inode, so renaming
 * a directory later does not matter). An operation becomes durable once every
 * directory it changed has been fsynced after it. Dependencies: when an
 * operation becomes durable, every earlier pending operation on the same path
 * or on an ancestor/descendant path becomes durable with it (a rename cannot
 * be durable while the create of its source is not; a file inside a directory
 * pins the mkdir of that directory). Durable operations leave the journal.
 *
 * Undo, newest first, of the operations still pending:
 *   create P       -> unlink P (or rmdir P for a directory)
 *   unlink P       -> the file was moved into FF_TRASH; move it back
 *   rmdir P        -> mkdir P with the old mode
 *   rename A -> B  -> rename B -> A; a replaced B was kept in FF_TRASH (as a
 *                     hard link, or moved there when linking is impossible)
 *                     and is moved back
 * When an unlink or replacing rename becomes durable its trash entry is
 * deleted. Every function here runs under the file-system lock.
 */
#include "faultfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum ff_ns_kind { NS_CREATE, NS_MKDIR, NS_UNLINK, NS_RMDIR, NS_RENAME };

struct ff_ns_op {
	enum ff_ns_kind kind;
	char *path;  /* the entry; for rename the source */
	char *path2; /* rename target */
	char *trash; /* name in FF_TRASH, or NULL */
	bool trash_is_dir;
	mode_t mode; /* rmdir: mode to recreate */
	dev_t dev;
	ino_t dirs[2]; /* changed directories not yet fsynced; 0 = done */
	bool durable;
};

static int g_rootfd = -1;
static struct ff_ns_op *g_ops;
static size_t g_nops;
static size_t g_cap;
static uint64_t g_trash_seq;

static void trash_empty(void)
{
	int fd = openat(g_rootfd, FF_TRASH, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = NULL;
	struct dirent *de;

	if (fd < 0)
		return;
	dp = fdopendir(fd);
	if (dp == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(fd, de->d_name, 0) != 0 && unlinkat(fd, de->d_name, AT_REMOVEDIR) != 0)
			FF_LOG("warn", "event=trash_left name=%s errno=%d", de->d_name, errno);
	}
	closedir(dp);
}

int ff_ns_init(int rootfd)
{
	g_rootfd = rootfd;
	if (mkdirat(rootfd, FF_TRASH, 0700) != 0 && errno != EEXIST)
		return -errno;
	trash_empty();
	return 0;
}

int ff_ns_room(void)
{
	if (g_nops < FF_NS_OPS_MAX)
		return 0;
	FF_LOG("error", "event=ns_journal_full max=%u", FF_NS_OPS_MAX);
	return -EIO;
}

/* The parent directory of rel, "." for top-level names. */
static int parent_stat(const char *rel, struct stat *st)
{
	const char *slash = strrchr(rel, '/');
	char parent[4096];
	int rc;

	if (slash == NULL) {
		rc = fstatat(g_rootfd, ".", st, 0);
	} else {
		size_t n = (size_t)(slash - rel);

		if (n >= sizeof(parent))
			return -ENAMETOOLONG;
		memcpy(parent, rel, n);
		parent[n] = '\0';
		rc = fstatat(g_rootfd, parent, st, 0);
	}
	return rc == 0 ? 0 : -errno;
}

static void op_free(struct ff_ns_op *op)
{
	free(op->path);
	free(op->path2);
	free(op->trash);
}

/* Appends op (taking ownership of its strings) with the parents of its paths. */
static void op_append(struct ff_ns_op op)
{
	struct stat st;

	if (g_nops == g_cap) {
		size_t cap = g_cap ? g_cap * 2 : 64;
		struct ff_ns_op *ops = realloc(g_ops, cap * sizeof(*ops));

		if (ops == NULL) {
			FF_LOG("error", "event=ns_oom msg=\"operation not journaled\"");
			op_free(&op);
			return;
		}
		g_ops = ops;
		g_cap = cap;
	}
	if (parent_stat(op.path, &st) == 0) {
		op.dev = st.st_dev;
		op.dirs[0] = st.st_ino;
	}
	if (op.path2 != NULL && parent_stat(op.path2, &st) == 0 && st.st_ino != op.dirs[0])
		op.dirs[1] = st.st_ino;
	g_ops[g_nops++] = op;
}

static char *trash_name(void)
{
	char name[64];

	snprintf(name, sizeof(name), FF_TRASH "/%" PRIu64, ++g_trash_seq);
	return strdup(name);
}

void ff_ns_created(const char *rel, bool is_dir)
{
	char *path = strdup(rel);

	if (path == NULL)
		return;
	op_append((struct ff_ns_op){.kind = is_dir ? NS_MKDIR : NS_CREATE, .path = path});
}

int ff_ns_unlink(const char *rel)
{
	struct stat st;
	char *path = NULL, *trash = NULL;
	int rc = ff_ns_room();

	if (rc != 0)
		return rc;
	if (fstatat(g_rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	path = strdup(rel);
	trash = trash_name();
	if (path == NULL || trash == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if (renameat(g_rootfd, rel, g_rootfd, trash) != 0) {
		rc = -errno;
		goto fail;
	}
	op_append((struct ff_ns_op){.kind = NS_UNLINK, .path = path, .trash = trash});
	return 0;
fail:
	free(path);
	free(trash);
	return rc;
}

int ff_ns_rmdir(const char *rel)
{
	struct stat st;
	char *path = NULL;
	int rc = ff_ns_room();

	if (rc != 0)
		return rc;
	if (fstatat(g_rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	path = strdup(rel);
	if (path == NULL)
		return -ENOMEM;
	if (unlinkat(g_rootfd, rel, AT_REMOVEDIR) != 0) {
		rc = -errno;
		free(path);
		return rc;
	}
	op_append((struct ff_ns_op){.kind = NS_RMDIR, .path = path, .mode = st.st_mode & 07777});
	return 0;
}

static int dir_is_empty(const char *rel)
{
	int fd = openat(g_rootfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *dp;
	int rc = 0;

	if (fd < 0)
		return -errno;
	dp = fdopendir(fd);
	if (dp == NULL) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while ((de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			rc = -ENOTEMPTY;
			break;
		}
	}
	closedir(dp);
	return rc;
}

/* Keeps the existing target `to` (type dst) in the trash before it is replaced. */
static int keep_target(const char *to, const struct stat *src, const struct stat *dst, char **trash,
                       bool *moved)
{
	int rc;

	if (S_ISDIR(dst->st_mode) && !S_ISDIR(src->st_mode))
		return -EISDIR;
	if (!S_ISDIR(dst->st_mode) && S_ISDIR(src->st_mode))
		return -ENOTDIR;
	if (S_ISDIR(dst->st_mode)) {
		rc = dir_is_empty(to);
		if (rc != 0)
			return rc;
	}
	*trash = trash_name();
	if (*trash == NULL)
		return -ENOMEM;
	*moved = false;
	if (!S_ISDIR(dst->st_mode) && linkat(g_rootfd, to, g_rootfd, *trash, 0) == 0)
		return 0;
	/* A directory, or a file system without hard links: move it away. */
	if (renameat(g_rootfd, to, g_rootfd, *trash) != 0) {
		rc = -errno;
		free(*trash);
		*trash = NULL;
		return rc;
	}
	*moved = true;
	return 0;
}

int ff_ns_rename(const char *from, const char *to, unsigned int flags)
{
	struct stat src, dst;
	char *path = NULL, *path2 = NULL, *trash = NULL;
	bool moved = false, have_dst;
	int rc;

	if (flags & ~(unsigned int)RENAME_NOREPLACE)
		return -EINVAL; /* RENAME_EXCHANGE and RENAME_WHITEOUT are not modelled */
	rc = ff_ns_room();
	if (rc != 0)
		return rc;
	if (fstatat(g_rootfd, from, &src, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	have_dst = fstatat(g_rootfd, to, &dst, AT_SYMLINK_NOFOLLOW) == 0;
	if (have_dst && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (have_dst && dst.st_dev == src.st_dev && dst.st_ino == src.st_ino)
		return renameat(g_rootfd, from, g_rootfd, to) == 0 ? 0 : -errno; /* no-op */
	path = strdup(from);
	path2 = strdup(to);
	if (path == NULL || path2 == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if (have_dst) {
		rc = keep_target(to, &src, &dst, &trash, &moved);
		if (rc != 0)
			goto fail;
	}
	if (renameat(g_rootfd, from, g_rootfd, to) != 0) {
		rc = -errno;
		if (trash != NULL && moved && renameat(g_rootfd, trash, g_rootfd, to) != 0)
			FF_LOG("error", "event=rename_rollback_failed path=%s errno=%d", to, errno);
		if (trash != NULL && !moved)
			unlinkat(g_rootfd, trash, 0);
		goto fail;
	}
	op_append((struct ff_ns_op){.kind = NS_RENAME,
	                            .path = path,
	                            .path2 = path2,
	                            .trash = trash,
	                            .trash_is_dir = have_dst && S_ISDIR(dst.st_mode)});
	return 0;
fail:
	free(path);
	free(path2);
	free(trash);
	return rc;
}

/* a and b name the same entry, or one lies inside the other. */
static bool path_related(const char *a, const char *b)
{
	size_t la, lb;

	if (a == NULL || b == NULL)
		return false;
	la = strlen(a);
	lb = strlen(b);
	if (la > lb) {
		const char *t = a;
		size_t lt = la;

		a = b;
		la = lb;
		b = t;
		lb = lt;
	}
	return strncmp(a, b, la) == 0 && (la == lb || b[la] == '/');
}

static bool ops_related(const struct ff_ns_op *x, const struct ff_ns_op *y)
{
	return path_related(x->path, y->path) || path_related(x->path, y->path2) ||
	       path_related(x->path2, y->path) || path_related(x->path2, y->path2);
}

/* Drops durable operations, deleting what they left in the trash. */
static void compact(void)
{
	size_t w = 0;

	for (size_t r = 0; r < g_nops; r++) {
		struct ff_ns_op *op = &g_ops[r];

		if (!op->durable) {
			g_ops[w++] = *op;
			continue;
		}
		if (op->trash != NULL &&
		    unlinkat(g_rootfd, op->trash, op->trash_is_dir ? AT_REMOVEDIR : 0) != 0)
			FF_LOG("warn", "event=trash_delete_failed name=%s errno=%d", op->trash,
			       errno);
		op_free(op);
	}
	g_nops = w;
}

void ff_ns_dir_synced(dev_t dev, ino_t ino)
{
	bool any = false;

	for (size_t i = 0; i < g_nops; i++) {
		struct ff_ns_op *op = &g_ops[i];

		if (op->durable || op->dev != dev)
			continue;
		for (int k = 0; k < 2; k++) {
			if (op->dirs[k] == ino)
				op->dirs[k] = 0;
		}
		if (op->dirs[0] == 0 && op->dirs[1] == 0) {
			op->durable = true;
			any = true;
		}
	}
	if (!any)
		return;
	/* Newest first, so a chain of dependencies is followed to its start. */
	for (size_t i = g_nops; i-- > 0;) {
		if (!g_ops[i].durable)
			continue;
		for (size_t j = 0; j < i; j++) {
			if (!g_ops[j].durable && ops_related(&g_ops[i], &g_ops[j]))
				g_ops[j].durable = true;
		}
	}
	compact();
}

static void undo_fail(const char *what, const char *path)
{
	FF_LOG("error", "event=undo_failed op=%s path=%s errno=%d", what, path, errno);
}

static void op_undo(const struct ff_ns_op *op)
{
	switch (op->kind) {
	case NS_CREATE:
		if (unlinkat(g_rootfd, op->path, 0) != 0)
			undo_fail("create", op->path);
		break;
	case NS_MKDIR:
		if (unlinkat(g_rootfd, op->path, AT_REMOVEDIR) != 0)
			undo_fail("mkdir", op->path);
		break;
	case NS_UNLINK:
		if (renameat(g_rootfd, op->trash, g_rootfd, op->path) != 0)
			undo_fail("unlink", op->path);
		break;
	case NS_RMDIR:
		if (mkdirat(g_rootfd, op->path, op->mode) != 0)
			undo_fail("rmdir", op->path);
		break;
	case NS_RENAME:
		if (renameat(g_rootfd, op->path2, g_rootfd, op->path) != 0)
			undo_fail("rename", op->path2);
		if (op->trash != NULL && renameat(g_rootfd, op->trash, g_rootfd, op->path2) != 0)
			undo_fail("rename_target", op->path2);
		break;
	}
}

int ff_ns_revert_all(void)
{
	int n = (int)g_nops;

	for (size_t i = g_nops; i-- > 0;) {
		op_undo(&g_ops[i]);
		op_free(&g_ops[i]);
	}
	g_nops = 0;
	trash_empty();
	return n;
}

void ff_ns_clear(void)
{
	for (size_t i = 0; i < g_nops; i++)
		g_ops[i].durable = true;
	compact();
	trash_empty();
	free(g_ops);
	g_ops = NULL;
	g_cap = 0;
}

size_t ff_ns_ops(void)
{
	return g_nops;
}
