/* sb_utf8.h - UTF-8 checks for strings that cross the API.
 *
 * proto3 `string` fields must hold valid UTF-8: clients in other languages
 * refuse to decode a message that does not, so a server that stored or
 * echoed such bytes would break every reader. C code also needs them free
 * of NUL bytes, which would silently cut a name short. */
#ifndef SB_COMMON_UTF8_H
#define SB_COMMON_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* 1 if s[0..n) is well-formed UTF-8 (no overlong forms, no surrogates, at
 * most U+10FFFF) without NUL bytes. */
static inline int sb_utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t k;
		uint32_t cp, min;
		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			k = 1, cp = c & 0x1F, min = 0x80;
		else if ((c & 0xF0) == 0xE0)
			k = 2, cp = c & 0x0F, min = 0x800;
		else if ((c & 0xF8) == 0xF0)
			k = 3, cp = c & 0x07, min = 0x10000;
		else
			return 0;
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* Cuts s (NUL-terminated) back so that it ends on a whole character and
 * replaces any malformed byte with '?': for messages that quote input. */
static inline void sb_utf8_sanitize(char *s)
{
	uint8_t *p = (uint8_t *)s;
	size_t n = 0;
	while (p[n])
		n++;
	for (size_t i = 0; i < n;) {
		size_t len = p[i] < 0x80 ? 1 : (p[i] & 0xE0) == 0xC0 ? 2 : (p[i] & 0xF0) == 0xE0 ? 3
			   : (p[i] & 0xF8) == 0xF0 ? 4 : 0;
		if (len && i + len <= n && sb_utf8_valid(p + i, len)) {
			i += len;
			continue;
		}
		p[i++] = '?';
	}
}

#endif
