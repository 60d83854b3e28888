/* faultfs_fault.c - the commanded fault state of faultfs and its counters.
 *
 * One mutex guards everything here; `frozen` has a condition variable that
 * thaw broadcasts. Lock order: the file-system lock (faultfs_ops.c) may be
 * held when these functions are called, never the other way round.
 */
#include "faultfs.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <time.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_thaw = PTHREAD_COND_INITIALIZER;
static bool g_frozen;
static bool g_dead;
static bool g_fsync_eio;
static int64_t g_budget = -1; /* ENOSPC budget left, -1 = off */
static int g_delay_ms;
static struct ff_stats g_stats;

void ff_fault_gate(void)
{
	int delay_ms;

	pthread_mutex_lock(&g_mu);
	while (g_frozen)
		pthread_cond_wait(&g_thaw, &g_mu);
	delay_ms = g_delay_ms;
	pthread_mutex_unlock(&g_mu);
	if (delay_ms > 0) {
		struct timespec ts = {.tv_sec = delay_ms / 1000,
		                      .tv_nsec = (delay_ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
}

bool ff_fault_dead(void)
{
	bool dead;

	pthread_mutex_lock(&g_mu);
	dead = g_dead;
	pthread_mutex_unlock(&g_mu);
	return dead;
}

void ff_fault_set_dead(bool dead)
{
	pthread_mutex_lock(&g_mu);
	g_dead = dead;
	pthread_mutex_unlock(&g_mu);
}

int ff_fault_sync_check(void)
{
	int rc;

	pthread_mutex_lock(&g_mu);
	rc = g_fsync_eio ? -EIO : 0;
	pthread_mutex_unlock(&g_mu);
	return rc;
}

int ff_fault_charge(uint64_t bytes)
{
	int rc = 0;

	pthread_mutex_lock(&g_mu);
	if (g_budget >= 0) {
		if (bytes > (uint64_t)g_budget)
			rc = -ENOSPC;
		else
			g_budget -= (int64_t)bytes;
	}
	pthread_mutex_unlock(&g_mu);
	return rc;
}

int64_t ff_fault_budget(void)
{
	int64_t b;

	pthread_mutex_lock(&g_mu);
	b = g_budget;
	pthread_mutex_unlock(&g_mu);
	return b;
}

void ff_fault_note_write(size_t bytes)
{
	pthread_mutex_lock(&g_mu);
	g_stats.writes++;
	g_stats.bytes_written += bytes;
	pthread_mutex_unlock(&g_mu);
}

void ff_fault_note_sync(bool ok)
{
	pthread_mutex_lock(&g_mu);
	if (ok)
		g_stats.fsyncs++;
	else
		g_stats.fsyncs_failed++;
	pthread_mutex_unlock(&g_mu);
}

void ff_fault_note_failed(void)
{
	pthread_mutex_lock(&g_mu);
	g_stats.failed_ops++;
	pthread_mutex_unlock(&g_mu);
}

void ff_fault_set_fsync_eio(bool on)
{
	pthread_mutex_lock(&g_mu);
	g_fsync_eio = on;
	pthread_mutex_unlock(&g_mu);
}

void ff_fault_set_budget(int64_t bytes)
{
	pthread_mutex_lock(&g_mu);
	g_budget = bytes < 0 ? -1 : bytes;
	pthread_mutex_unlock(&g_mu);
}

void ff_fault_set_delay_ms(int ms)
{
	pthread_mutex_lock(&g_mu);
	g_delay_ms = ms;
	pthread_mutex_unlock(&g_mu);
}

void ff_fault_set_frozen(bool frozen)
{
	pthread_mutex_lock(&g_mu);
	g_frozen = frozen;
	if (!frozen)
		pthread_cond_broadcast(&g_thaw);
	pthread_mutex_unlock(&g_mu);
}

void ff_fault_reset(void)
{
	pthread_mutex_lock(&g_mu);
	g_fsync_eio = false;
	g_budget = -1;
	g_delay_ms = 0;
	g_frozen = false;
	pthread_cond_broadcast(&g_thaw);
	pthread_mutex_unlock(&g_mu);
}

void ff_fault_format(char *buf, size_t len)
{
	pthread_mutex_lock(&g_mu);
	snprintf(buf, len,
	         "writes=%" PRIu64 " bytes_written=%" PRIu64 " fsyncs=%" PRIu64
	         " fsyncs_failed=%" PRIu64 " failed_ops=%" PRIu64 " frozen=%d dead=%d fsync_eio=%d"
	         " enospc_left=%" PRId64 " delay_ms=%d",
	         g_stats.writes, g_stats.bytes_written, g_stats.fsyncs, g_stats.fsyncs_failed,
	         g_stats.failed_ops, g_frozen, g_dead, g_fsync_eio, g_budget, g_delay_ms);
	pthread_mutex_unlock(&g_mu);
}
