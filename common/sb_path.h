/* sb_path.h - building file paths without silent truncation. */
#ifndef SB_COMMON_PATH_H
#define SB_COMMON_PATH_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "sb_error.h"

/* snprintf into out[cap]; returns 0, or SB_ETOOBIG if the result did not fit
 * (out then holds a truncated string that must not be used). */
__attribute__((format(printf, 3, 4))) static inline int sb_path_fmt(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, cap, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= cap ? SB_ETOOBIG : 0;
}

#endif
