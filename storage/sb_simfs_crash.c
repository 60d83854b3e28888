/* sb_simfs_crash.c - the two images of the simulated file system and what a
 * crash does to them (the vfs ops, paths, fds and faults are in sb_simfs.c).
 *
 * Files: the volatile image is always the durable image with the pending
 * changes (writes and truncates since the last datasync) applied in order.
 * Directories: the volatile entry table is always the durable table with the
 * pending entry changes (SET name->inode, DEL name, RENAME name->to within the
 * directory) applied in order. A rename across directories is a DEL pending
 * in the source and a SET pending in the target, independently: until both
 * directories are synced a crash may keep both names or neither.
 *
 * A crash replaces both images of every inode by one result:
 *   KEEP_ALL        the volatile images (a process crash);
 *   DROP_UNSYNCED   the durable images;
 *   RANDOM          per file with pending changes: the durable image plus a
 *                   random-length prefix of its changes, then (1 in 2) the
 *                   next write torn after a random byte, then (1 in 4, when
 *                   any write was pending) 1..8 KiB of zeros or garbage
 *                   appended; per directory: the durable table plus a
 *                   random-length prefix of its pending entry changes.
 * Then the tree is rebuilt from "/": a directory reached a second time
 * (possible when independent halves of directory renames survive) loses
 * that second entry, and every inode no entry reaches is freed. Randomness
 * is drawn inode by inode in creation order from the seeded splitmix64
 * generator, so the same seed and the same operations give the same image.
 */
#include "sb_simfs_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *sb_simfs__alloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "sb_simfs: out of memory (%zu bytes)\n", n);
		abort();
	}
	return q;
}

char *sb_simfs__strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(sb_simfs__alloc(NULL, n), s, n);
}

void *sb_simfs__grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	size_t c = *cap ? *cap : 4;
	if (need <= *cap)
		return arr;
	while (c < need)
		c *= 2;
	*cap = c;
	return sb_simfs__alloc(arr, c * elem);
}

uint64_t sb_simfs__rand(struct sb_simfs *fs)
{
	uint64_t z = (fs->rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* A uniform-enough draw in [0, n); n > 0. */
static uint64_t rand_below(struct sb_simfs *fs, uint64_t n)
{
	return sb_simfs__rand(fs) % n;
}

/* ---- byte images ---- */

void sb_simfs__bytes_resize(struct sb_simfs__bytes *b, uint64_t len)
{
	if (len > b->cap) {
		uint64_t cap = b->cap ? b->cap : 64;
		while (cap < len)
			cap *= 2;
		b->data = sb_simfs__alloc(b->data, (size_t)cap);
		b->cap = cap;
	}
	if (len > b->len)
		memset(b->data + b->len, 0, (size_t)(len - b->len));
	b->len = len;
}

void sb_simfs__bytes_write(struct sb_simfs__bytes *b, uint64_t off, const void *data, uint64_t len)
{
	if (off + len > b->len)
		sb_simfs__bytes_resize(b, off + len);
	memcpy(b->data + off, data, (size_t)len);
}

void sb_simfs__bytes_copy(struct sb_simfs__bytes *dst, const struct sb_simfs__bytes *src)
{
	dst->len = 0;
	sb_simfs__bytes_resize(dst, src->len);
	if (src->len)
		memcpy(dst->data, src->data, (size_t)src->len);
}

void sb_simfs__bytes_free(struct sb_simfs__bytes *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ---- file changes ---- */

/* Applies c to b, keeping only the first limit bytes of a write. */
static void change_apply(struct sb_simfs__bytes *b, const struct sb_simfs__change *c,
                         uint64_t limit)
{
	if (c->kind == SB_SIMFS__CHANGE_TRUNCATE)
		sb_simfs__bytes_resize(b, c->len);
	else
		sb_simfs__bytes_write(b, c->off, c->data, c->len < limit ? c->len : limit);
}

static void change_push(struct sb_simfs__inode *f, struct sb_simfs__change c)
{
	f->changes = sb_simfs__grow(f->changes, &f->changes_cap, f->nchanges + 1, sizeof(c));
	f->changes[f->nchanges++] = c;
}

static void changes_clear(struct sb_simfs__inode *f)
{
	for (size_t i = 0; i < f->nchanges; i++)
		free(f->changes[i].data);
	f->nchanges = 0;
}

void sb_simfs__file_write(struct sb_simfs__inode *f, uint64_t off, const void *data, uint64_t len)
{
	struct sb_simfs__change c = {SB_SIMFS__CHANGE_WRITE, off, len, NULL};
	c.data = memcpy(sb_simfs__alloc(NULL, (size_t)len), data, (size_t)len);
	change_apply(&f->vol, &c, UINT64_MAX);
	change_push(f, c);
}

void sb_simfs__file_truncate(struct sb_simfs__inode *f, uint64_t len)
{
	struct sb_simfs__change c = {SB_SIMFS__CHANGE_TRUNCATE, 0, len, NULL};
	change_apply(&f->vol, &c, UINT64_MAX);
	change_push(f, c);
}

void sb_simfs__file_sync(struct sb_simfs__inode *f)
{
	sb_simfs__bytes_copy(&f->dur, &f->vol);
	changes_clear(f);
}

/* ---- entry tables ---- */

/* Index of name in t, or where it would be inserted (*found = 0). */
static size_t table_find(const struct sb_simfs__table *t, const char *name, int *found)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->ents[mid].name, name);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

struct sb_simfs__inode *sb_simfs__table_get(const struct sb_simfs__table *t, const char *name)
{
	int found;
	size_t i = table_find(t, name, &found);
	return found ? t->ents[i].ino : NULL;
}

static void table_set(struct sb_simfs__table *t, const char *name, struct sb_simfs__inode *ino)
{
	int found;
	size_t i = table_find(t, name, &found);
	if (found) {
		t->ents[i].ino = ino;
		return;
	}
	t->ents = sb_simfs__grow(t->ents, &t->cap, t->n + 1, sizeof(*t->ents));
	memmove(&t->ents[i + 1], &t->ents[i], (t->n - i) * sizeof(*t->ents));
	t->ents[i].name = sb_simfs__strdup(name);
	t->ents[i].ino = ino;
	t->n++;
}

static void table_remove_at(struct sb_simfs__table *t, size_t i)
{
	free(t->ents[i].name);
	memmove(&t->ents[i], &t->ents[i + 1], (t->n - i - 1) * sizeof(*t->ents));
	t->n--;
}

static void table_del(struct sb_simfs__table *t, const char *name)
{
	int found;
	size_t i = table_find(t, name, &found);
	if (found)
		table_remove_at(t, i);
}

static void table_clear(struct sb_simfs__table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->ents[i].name);
	t->n = 0;
}

static void table_copy(struct sb_simfs__table *dst, const struct sb_simfs__table *src)
{
	table_clear(dst);
	dst->ents = sb_simfs__grow(dst->ents, &dst->cap, src->n, sizeof(*dst->ents));
	for (size_t i = 0; i < src->n; i++) {
		dst->ents[i].name = sb_simfs__strdup(src->ents[i].name);
		dst->ents[i].ino = src->ents[i].ino;
	}
	dst->n = src->n;
}

static void table_apply(struct sb_simfs__table *t, const struct sb_simfs__dirop *op)
{
	switch (op->kind) {
	case SB_SIMFS__DIROP_SET:
		table_set(t, op->name, op->ino);
		break;
	case SB_SIMFS__DIROP_DEL:
		table_del(t, op->name);
		break;
	case SB_SIMFS__DIROP_RENAME:
		table_set(t, op->to, op->ino);
		table_del(t, op->name);
		break;
	default:
		abort();
	}
}

static void dirops_clear(struct sb_simfs__inode *d)
{
	for (size_t i = 0; i < d->ndirops; i++) {
		free(d->dirops[i].name);
		free(d->dirops[i].to);
	}
	d->ndirops = 0;
}

void sb_simfs__dir_change(struct sb_simfs__inode *dir, int kind, const char *name, const char *to,
                          struct sb_simfs__inode *ino)
{
	struct sb_simfs__dirop op = {kind, sb_simfs__strdup(name), NULL, ino};
	if (to)
		op.to = sb_simfs__strdup(to);
	table_apply(&dir->vtab, &op);
	dir->dirops = sb_simfs__grow(dir->dirops, &dir->dirops_cap, dir->ndirops + 1, sizeof(op));
	dir->dirops[dir->ndirops++] = op;
}

void sb_simfs__dir_sync(struct sb_simfs__inode *dir)
{
	table_copy(&dir->dtab, &dir->vtab);
	dirops_clear(dir);
}

/* ---- inodes, reachability, garbage collection ---- */

struct sb_simfs__inode *sb_simfs__inode_new(struct sb_simfs *fs, int is_dir)
{
	struct sb_simfs__inode *ino = sb_simfs__alloc(NULL, sizeof(*ino));
	memset(ino, 0, sizeof(*ino));
	ino->id = fs->next_id++;
	ino->is_dir = is_dir;
	if (fs->tail)
		fs->tail->next = ino;
	else
		fs->head = ino;
	fs->tail = ino;
	return ino;
}

static void inode_free(struct sb_simfs__inode *ino)
{
	sb_simfs__bytes_free(&ino->vol);
	sb_simfs__bytes_free(&ino->dur);
	changes_clear(ino);
	free(ino->changes);
	table_clear(&ino->vtab);
	free(ino->vtab.ents);
	table_clear(&ino->dtab);
	free(ino->dtab.ents);
	dirops_clear(ino);
	free(ino->dirops);
	free(ino);
}

void sb_simfs__free_all(struct sb_simfs *fs)
{
	struct sb_simfs__inode *ino = fs->head, *next;
	for (; ino; ino = next) {
		next = ino->next;
		inode_free(ino);
	}
	fs->head = fs->tail = fs->root = NULL;
}

void sb_simfs__mark_begin(struct sb_simfs *fs)
{
	fs->mark_epoch++;
}

void sb_simfs__mark(struct sb_simfs *fs, struct sb_simfs__inode *ino, int everything)
{
	if (ino->mark == fs->mark_epoch)
		return;
	ino->mark = fs->mark_epoch;
	if (!ino->is_dir)
		return;
	for (size_t i = 0; i < ino->vtab.n; i++)
		sb_simfs__mark(fs, ino->vtab.ents[i].ino, everything);
	if (!everything)
		return;
	for (size_t i = 0; i < ino->dtab.n; i++)
		sb_simfs__mark(fs, ino->dtab.ents[i].ino, everything);
	for (size_t i = 0; i < ino->ndirops; i++)
		sb_simfs__mark(fs, ino->dirops[i].ino, everything);
}

void sb_simfs__gc(struct sb_simfs *fs)
{
	struct sb_simfs__inode **link = &fs->head, *ino;

	sb_simfs__mark_begin(fs);
	sb_simfs__mark(fs, fs->root, 1);
	for (size_t i = 0; i < SB_SIMFS__FDS_MAX; i++)
		if (fs->fds[i].ino)
			sb_simfs__mark(fs, fs->fds[i].ino, 1);
	fs->tail = NULL;
	while ((ino = *link) != NULL) {
		if (ino->mark == fs->mark_epoch) {
			fs->tail = ino;
			link = &ino->next;
		} else {
			*link = ino->next;
			inode_free(ino);
		}
	}
}

/* ---- crash ---- */

static int has_pending_write(const struct sb_simfs__inode *f)
{
	for (size_t i = 0; i < f->nchanges; i++)
		if (f->changes[i].kind == SB_SIMFS__CHANGE_WRITE)
			return 1;
	return 0;
}

/* Appends 1..JUNK_BYTES_MAX zeros or random bytes to b. */
static void append_junk(struct sb_simfs *fs, struct sb_simfs__bytes *b)
{
	uint64_t n = 1 + rand_below(fs, SB_SIMFS__JUNK_BYTES_MAX), start = b->len;
	int garbage = (int)rand_below(fs, 2);
	sb_simfs__bytes_resize(b, start + n); /* zero-filled */
	for (uint64_t i = 0; garbage && i < n; i += 8) {
		uint64_t r = sb_simfs__rand(fs);
		memcpy(b->data + start + i, &r, n - i < 8 ? (size_t)(n - i) : 8);
	}
}

/* The durable image becomes: durable + a random prefix of the pending
 * changes, maybe the next write torn, maybe a junk tail. */
static void crash_file_random(struct sb_simfs *fs, struct sb_simfs__inode *f)
{
	size_t k = (size_t)rand_below(fs, f->nchanges + 1);
	for (size_t i = 0; i < k; i++)
		change_apply(&f->dur, &f->changes[i], UINT64_MAX);
	if (k < f->nchanges) {
		const struct sb_simfs__change *c = &f->changes[k];
		if (c->kind == SB_SIMFS__CHANGE_WRITE && c->len > 1 && rand_below(fs, 2))
			change_apply(&f->dur, c, 1 + rand_below(fs, c->len - 1));
	}
	if (has_pending_write(f) && rand_below(fs, 4) == 0)
		append_junk(fs, &f->dur);
}

static void crash_file(struct sb_simfs *fs, struct sb_simfs__inode *f,
                       enum sb_simfs_crash_mode mode)
{
	if (mode == SB_SIMFS_CRASH_KEEP_ALL)
		sb_simfs__bytes_copy(&f->dur, &f->vol);
	else if (mode == SB_SIMFS_CRASH_RANDOM && f->nchanges)
		crash_file_random(fs, f);
	sb_simfs__bytes_copy(&f->vol, &f->dur);
	changes_clear(f);
}

static void crash_dir(struct sb_simfs *fs, struct sb_simfs__inode *d, enum sb_simfs_crash_mode mode)
{
	size_t k = 0;
	if (mode == SB_SIMFS_CRASH_KEEP_ALL)
		k = d->ndirops;
	else if (mode == SB_SIMFS_CRASH_RANDOM && d->ndirops)
		k = (size_t)rand_below(fs, d->ndirops + 1);
	for (size_t i = 0; i < k; i++)
		table_apply(&d->dtab, &d->dirops[i]);
	table_copy(&d->vtab, &d->dtab);
	dirops_clear(d);
}

/* Makes the namespace a tree again: a directory seen a second time loses
 * that entry (a directory has exactly one parent). */
static void treeify(struct sb_simfs *fs, struct sb_simfs__inode *dir)
{
	size_t i = 0;
	while (i < dir->vtab.n) {
		struct sb_simfs__inode *child = dir->vtab.ents[i].ino;
		if (child->is_dir && child->mark == fs->mark_epoch) {
			table_del(&dir->dtab, dir->vtab.ents[i].name);
			table_remove_at(&dir->vtab, i);
			continue;
		}
		child->mark = fs->mark_epoch;
		if (child->is_dir)
			treeify(fs, child);
		i++;
	}
}

void sb_simfs_crash(struct sb_simfs *fs, enum sb_simfs_crash_mode mode)
{
	pthread_mutex_lock(&fs->mu);
	for (struct sb_simfs__inode *ino = fs->head; ino; ino = ino->next) {
		if (ino->is_dir)
			crash_dir(fs, ino, mode);
		else
			crash_file(fs, ino, mode);
	}
	memset(fs->fds, 0, sizeof(fs->fds));
	fs->crashes++;
	fs->fd_base =
	    SB_SIMFS__FD_BASE + (int)(fs->crashes % SB_SIMFS__FD_GENERATIONS) * SB_SIMFS__FDS_MAX;
	sb_simfs__mark_begin(fs);
	fs->root->mark = fs->mark_epoch;
	treeify(fs, fs->root);
	sb_simfs__gc(fs);
	fs->fault_armed = fs->short_armed = fs->power_armed = 0;
	pthread_mutex_unlock(&fs->mu);
}
