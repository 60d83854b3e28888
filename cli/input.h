/* input.h - newline-separated records from a file descriptor, for produce.
 * Lines of any length (the buffer grows up to SBC_LINE_BYTES_MAX), empty
 * lines, and any byte except '\n' are kept exactly; a last line without a
 * trailing newline is a record too. One thread. */
#ifndef SB_CLI_INPUT_H
#define SB_CLI_INPUT_H

#include <stddef.h>

/* The longest line accepted: above the server's largest possible message
 * (64 MiB), so any line the server could take fits. */
#define SBC_LINE_BYTES_MAX ((size_t)80 << 20)

struct sbc_input {
	int fd;
	char *buf;
	size_t cap, start, end,
	    scanned; /* unread bytes are buf[start, end); no '\n' in [start, scanned) */
	int eof;
};

/* Results of sbc_input_line. */
enum {
	SBC_IN_LINE = 1,
	SBC_IN_AGAIN = 0,
	SBC_IN_EOF = -1,
	SBC_IN_ERROR = -2,
	SBC_IN_TOO_LONG = -3
};

/* 0, or -ENOMEM. */
int sbc_input_init(struct sbc_input *in, int fd);
void sbc_input_fini(struct sbc_input *in);

/* The next line (without its '\n') in *line and *len, valid until the next call:
 * SBC_IN_LINE. When no complete line is buffered it reads; with may_block 0
 * it reads only if poll() says data is ready, else returns SBC_IN_AGAIN (also
 * after EINTR). SBC_IN_EOF at the end; SBC_IN_ERROR with errno set on a read
 * error; SBC_IN_TOO_LONG for a line over SBC_LINE_BYTES_MAX. */
int sbc_input_line(struct sbc_input *in, int may_block, const char **line, size_t *len);

/* 1 if a read would not block (data or EOF pending), 0 otherwise; waits up
 * to timeout_ms (EINTR counts as not ready). */
int sbc_input_ready(struct sbc_input *in, int timeout_ms);

#endif
