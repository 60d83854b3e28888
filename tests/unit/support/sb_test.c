#include "sb_test.h"

#include "sb_aio.h"
#include "sb_vfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *sbt_tmpdir(const char *name)
{
	const char *base = getenv("SB_TEST_TMP");
	static unsigned counter;
	char *path = malloc(4096);
	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(path, 4096, "%s/%s-%s-%d-%u", base, name, sbt_io_name(), (int)getpid(), counter++);
	if (sb_vfs_remove_tree(sb_vfs_posix(), path) && errno != ENOENT) {
		/* fine: did not exist */
	}
	if (mkdir(path, 0755) != 0) {
		fprintf(stderr, "mkdir %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return path;
}

const char *sbt_io_name(void)
{
	const char *io = getenv("SB_TEST_IO");
	return io && strcmp(io, "uring") == 0 ? "uring" : "sync";
}

struct sb_aio *sbt_open_aio(void)
{
	struct sb_aio *aio = NULL;
	int rc;
	if (strcmp(sbt_io_name(), "uring") == 0) {
		rc = sb_aio_uring_new(64, &aio);
		if (rc) {
			fprintf(stderr, "io_uring unavailable (%s): skipping\n", sb_strerror(rc));
			exit(SB_TEST_SKIP);
		}
	} else {
		rc = sb_aio_sync_new(sb_vfs_posix(), 2, &aio);
		if (rc) {
			fprintf(stderr, "sync engine: %s\n", sb_strerror(rc));
			exit(1);
		}
	}
	return aio;
}

uint64_t sbt_rand(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}
