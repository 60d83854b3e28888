/* sb_vfs_util.c - the durable-write helpers of sb_vfs.h, written only in
 * terms of the vfs ops so that they behave the same on the POSIX vfs and on
 * the simulated file system (sb_simfs.h).
 *
 * sb_vfs_write_file_durable() is the ONE place the durable-replace recipe is
 * written (Redis aof.c): write name.tmp, fdatasync it, rename it over name,
 * fsync the directory. Nothing here calls back into the vfs from inside a
 * list_dir callback (a vfs may hold a lock while listing): remove_tree first
 * collects the names, then removes them.
 */
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb_limits.h"

#define SB_DIR_MODE 0755u
#define SB_FILE_MODE 0644u

int sb_vfs_write_all(struct sb_vfs *vfs, int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len > 0) {
		int64_t n = vfs->ops->pwrite(vfs, fd, p, len, off);
		if (n < 0)
			return (int)n;
		if (n == 0 || (uint64_t)n > len)
			return -EIO; /* no progress (or a broken vfs): never spin */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int sb_vfs_read_all(struct sb_vfs *vfs, int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len > 0) {
		int64_t n = vfs->ops->pread(vfs, fd, p, len, off);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -ENODATA;
		if ((uint64_t)n > len)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Formats "a/b" into out[SB_PATH_MAX]; -ENAMETOOLONG if it does not fit. */
static int join_path(char *out, const char *a, const char *b, const char *suffix)
{
	int n = snprintf(out, SB_PATH_MAX, "%s/%s%s", a, b, suffix);
	if (n < 0 || n >= SB_PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

int sb_vfs_write_file_durable(struct sb_vfs *vfs, const char *dir, const char *name,
			      const void *data, size_t len)
{
	char *tmp = malloc(SB_PATH_MAX), *dst = malloc(SB_PATH_MAX);
	int fd = -1, tmp_exists = 0, rc;

	if (!tmp || !dst) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = join_path(tmp, dir, name, ".tmp")) || (rc = join_path(dst, dir, name, "")))
		goto fail;
	fd = vfs->ops->open(vfs, tmp, O_CREAT | O_TRUNC | O_WRONLY, SB_FILE_MODE);
	if (fd < 0) {
		rc = fd;
		goto fail;
	}
	tmp_exists = 1;
	if ((rc = sb_vfs_write_all(vfs, fd, data, len, 0)))
		goto fail;
	if ((rc = vfs->ops->datasync(vfs, fd)))
		goto fail;
	rc = vfs->ops->close(vfs, fd);
	fd = -1;
	if (rc)
		goto fail;
	if ((rc = vfs->ops->rename(vfs, tmp, dst)))
		goto fail;
	tmp_exists = 0;
	/* From here the new file is visible. If the directory sync fails, the
	 * caller gets the error and must not assume the replace is durable. */
	rc = vfs->ops->sync_dir(vfs, dir);
fail:
	if (fd >= 0)
		(void)vfs->ops->close(vfs, fd);
	if (tmp_exists)
		(void)vfs->ops->unlink(vfs, tmp);
	free(tmp);
	free(dst);
	return rc;
}

int sb_vfs_read_file(struct sb_vfs *vfs, const char *path, size_t max_len, void **out,
		     size_t *out_len)
{
	uint8_t *buf = NULL;
	uint64_t size = 0;
	int fd, rc;

	fd = vfs->ops->open(vfs, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	if ((rc = vfs->ops->fsize(vfs, fd, &size)))
		goto fail;
	if (size > max_len) {
		rc = -EFBIG;
		goto fail;
	}
	buf = malloc(size ? (size_t)size : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = sb_vfs_read_all(vfs, fd, buf, (size_t)size, 0)))
		goto fail;
	*out = buf;
	*out_len = (size_t)size;
	buf = NULL;
fail:
	free(buf);
	(void)vfs->ops->close(vfs, fd); /* read-only: a close error loses nothing */
	return rc;
}

int sb_vfs_read_text(struct sb_vfs *vfs, const char *path, size_t max_len, char **out, size_t *out_len)
{
	void *buf = NULL;
	int rc = sb_vfs_read_file(vfs, path, max_len, &buf, out_len);
	if (rc)
		return rc;
	char *text = realloc(buf, *out_len + 1);
	if (!text) {
		free(buf);
		return -ENOMEM;
	}
	text[*out_len] = 0;
	*out = text;
	return 0;
}

/* ---- remove_tree ---- */

struct name_list {
	char **names;
	unsigned char *is_dir;
	size_t n, cap;
};

static int collect_name(void *arg, const char *name, int is_dir)
{
	struct name_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **names = realloc(l->names, cap * sizeof(*names));
		if (!names)
			return -ENOMEM;
		l->names = names;
		unsigned char *dirs = realloc(l->is_dir, cap);
		if (!dirs)
			return -ENOMEM;
		l->is_dir = dirs;
		l->cap = cap;
	}
	l->names[l->n] = strdup(name);
	if (!l->names[l->n])
		return -ENOMEM;
	l->is_dir[l->n++] = (unsigned char)(is_dir != 0);
	return 0;
}

static void free_names(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	free(l->is_dir);
}

static int remove_dir_contents(struct sb_vfs *vfs, const char *path)
{
	struct name_list l = {0};
	char *child = malloc(SB_PATH_MAX);
	int rc;

	if (!child) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = vfs->ops->list_dir(vfs, path, collect_name, &l)))
		goto fail;
	for (size_t i = 0; i < l.n; i++) {
		if ((rc = join_path(child, path, l.names[i], "")))
			goto fail;
		rc = l.is_dir[i] ? sb_vfs_remove_tree(vfs, child) : vfs->ops->unlink(vfs, child);
		if (rc && rc != -ENOENT)
			goto fail;
		rc = 0;
	}
fail:
	free_names(&l);
	free(child);
	return rc;
}

/* Returns -ENOENT if path does not exist (callers that only want it gone
 * may treat that as success). Symbolic links are removed, never followed:
 * entries come typed from list_dir (a link is not a directory), and for the
 * top path, which stat follows, an unlink is tried first; it removes a link
 * to a directory and always fails on a real directory. */
int sb_vfs_remove_tree(struct sb_vfs *vfs, const char *path)
{
	struct sb_stat st;
	int rc = vfs->ops->stat(vfs, path, &st);
	if (rc)
		return rc;
	if (!st.is_dir)
		return vfs->ops->unlink(vfs, path);
	if (vfs->ops->unlink(vfs, path) == 0)
		return 0; /* it was a symbolic link to a directory */
	if ((rc = remove_dir_contents(vfs, path)))
		return rc;
	return vfs->ops->rmdir(vfs, path);
}

/* ---- mkdir_durable ---- */

/* Makes one directory (prefix of the target). Returns 1 if it was created,
 * 0 if it already existed as a directory, or -errno. */
static int make_one_dir(struct sb_vfs *vfs, const char *path)
{
	struct sb_stat st;
	int rc = vfs->ops->stat(vfs, path, &st);
	if (rc == 0)
		return st.is_dir ? 0 : -ENOTDIR;
	if (rc != -ENOENT)
		return rc;
	rc = vfs->ops->mkdir(vfs, path, SB_DIR_MODE);
	if (rc == 0)
		return 1;
	if (rc != -EEXIST)
		return rc;
	/* Someone else created it in between: fine if it is a directory. */
	if ((rc = vfs->ops->stat(vfs, path, &st)))
		return rc;
	return st.is_dir ? 0 : -ENOTDIR;
}

int sb_vfs_mkdir_durable(struct sb_vfs *vfs, const char *path)
{
	size_t len = strlen(path), i = 0;
	char *buf = NULL;
	int rc = 0;

	if (len == 0 || len >= SB_PATH_MAX)
		return len ? -ENAMETOOLONG : -ENOENT;
	if (!(buf = malloc(len + 1)))
		return -ENOMEM;
	memcpy(buf, path, len + 1);
	while (i < len) {
		while (i < len && buf[i] == '/') /* skip separators */
			i++;
		if (i == len)
			break;
		while (i < len && buf[i] != '/')
			i++;
		/* buf[0..i) is the next prefix; its parent ends at the last '/'. */
		char saved = buf[i];
		buf[i] = '\0';
		rc = make_one_dir(vfs, buf);
		if (rc == 1) {
			char *slash = strrchr(buf, '/');
			if (!slash)
				rc = vfs->ops->sync_dir(vfs, ".");
			else if (slash == buf)
				rc = vfs->ops->sync_dir(vfs, "/");
			else {
				*slash = '\0';
				rc = vfs->ops->sync_dir(vfs, buf);
				*slash = '/';
			}
		}
		buf[i] = saved;
		if (rc < 0)
			goto fail;
		rc = 0;
	}
fail:
	free(buf);
	return rc;
}
