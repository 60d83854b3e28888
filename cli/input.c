/* input.c - newline-separated records from a file descriptor (input.h). */
#include "input.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INPUT_BUF_BYTES_INITIAL ((size_t)1 << 20)

int sbc_input_init(struct sbc_input *in, int fd)
{
	memset(in, 0, sizeof *in);
	in->fd = fd;
	in->cap = INPUT_BUF_BYTES_INITIAL;
	in->buf = malloc(in->cap);
	return in->buf ? 0 : -ENOMEM;
}

void sbc_input_fini(struct sbc_input *in)
{
	free(in->buf);
	in->buf = NULL;
}

int sbc_input_ready(struct sbc_input *in, int timeout_ms)
{
	struct pollfd p = {.fd = in->fd, .events = POLLIN};
	if (in->eof || in->scanned < in->end)
		return 1;
	return poll(&p, 1, timeout_ms) > 0;
}

/* Makes room for more input: compacts, then grows. 0, or SBC_IN_TOO_LONG. */
static int make_room(struct sbc_input *in)
{
	if (in->start > 0) {
		memmove(in->buf, in->buf + in->start, in->end - in->start);
		in->end -= in->start;
		in->scanned -= in->start;
		in->start = 0;
	}
	if (in->end < in->cap)
		return 0;
	if (in->cap >= SBC_LINE_BYTES_MAX)
		return SBC_IN_TOO_LONG;
	size_t cap = in->cap * 2 > SBC_LINE_BYTES_MAX ? SBC_LINE_BYTES_MAX : in->cap * 2;
	char *b = realloc(in->buf, cap);
	if (!b) {
		errno = ENOMEM;
		return SBC_IN_ERROR;
	}
	in->buf = b;
	in->cap = cap;
	return 0;
}

int sbc_input_line(struct sbc_input *in, int may_block, const char **line, size_t *len)
{
	for (;;) {
		char *nl = memchr(in->buf + in->scanned, '\n', in->end - in->scanned);
		if (nl) {
			*line = in->buf + in->start;
			*len = (size_t)(nl - (in->buf + in->start));
			in->start = in->scanned = (size_t)(nl - in->buf) + 1;
			return SBC_IN_LINE;
		}
		in->scanned = in->end;
		if (in->eof) {
			if (in->end == in->start)
				return SBC_IN_EOF;
			*line = in->buf + in->start; /* the last line had no newline */
			*len = in->end - in->start;
			in->start = in->scanned = in->end;
			return SBC_IN_LINE;
		}
		int rc = make_room(in);
		if (rc)
			return rc;
		if (!may_block && !sbc_input_ready(in, 0))
			return SBC_IN_AGAIN;
		ssize_t n = read(in->fd, in->buf + in->end, in->cap - in->end);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return SBC_IN_AGAIN;
		if (n < 0)
			return SBC_IN_ERROR;
		if (n == 0)
			in->eof = 1;
		in->end += (size_t)n;
	}
}
