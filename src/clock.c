/* clock — see clock.h. */
#define _POSIX_C_SOURCE 200809L
#include "clock.h"

#include <time.h>

int64_t clock_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_wall_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double clock_wall(void)
{
	return (double)clock_wall_usec() / 1e6;
}

int64_t clock_wall_offset_ms(void)
{
	struct timespec wall, mono;
	clock_gettime(CLOCK_REALTIME, &wall);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	return ((int64_t)wall.tv_sec - (int64_t)mono.tv_sec) * 1000 +
	       (wall.tv_nsec - mono.tv_nsec) / 1000000;
}

bool clock_offset_stepped(int64_t before, int64_t after, int64_t elapsed_ms)
{
	int64_t moved = after > before ? after - before : before - after;
	return moved > 1000 + (elapsed_ms > 0 ? elapsed_ms / 1000 : 0);
}
