/* sb_time.h - clocks. Monotonic time for durations and timeouts, wall-clock
 * milliseconds for record timestamps. */
#ifndef SB_COMMON_TIME_H
#define SB_COMMON_TIME_H

#include <stdint.h>
#include <time.h>

static inline int64_t sb_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static inline int64_t sb_mono_ms(void) { return sb_mono_ns() / 1000000; }

static inline int64_t sb_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

/* The CLOCK_REALTIME instant ms from now, for pthread_cond_timedwait. */
static inline struct timespec sb_deadline_in_ms(long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ms * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	return ts;
}

#endif
