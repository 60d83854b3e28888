/* format.c - UTF-8 checks, JSON strings and base64 for consume --json. */
#include "format.h"

#include "streambus/v1/streambus.pb-c.h"

#include <string.h>

/* Length of the valid UTF-8 sequence at p (1-4) and its code point, or 0. */
static size_t utf8_seq(const uint8_t *p, size_t n, uint32_t *cp)
{
	uint8_t c = p[0];
	size_t len;
	uint32_t v, min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		v = c & 0x1F;
		min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		v = c & 0x0F;
		min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		v = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3F);
	}
	if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	*cp = v;
	return len;
}

static int is_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

int sbc_is_text(const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint32_t cp;
		size_t len = utf8_seq(p + i, n - i, &cp);
		if (!len || is_control(cp))
			return 0;
		i += len;
	}
	return 1;
}

/* The inside of a JSON string. */
static void json_body(FILE *f, const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint32_t cp;
		size_t len = utf8_seq(p + i, n - i, &cp);
		if (!len) {
			fputs("\\ufffd", f);
			i++;
			continue;
		}
		if (cp == '"' || cp == '\\') {
			putc('\\', f);
			putc((int)cp, f);
		} else if (is_control(cp)) {
			fprintf(f, "\\u%04x", (unsigned)cp);
		} else {
			fwrite(p + i, 1, len, f);
		}
		i += len;
	}
}

void sbc_json_string(FILE *f, const uint8_t *p, size_t n)
{
	putc('"', f);
	json_body(f, p, n);
	putc('"', f);
}

void sbc_base64(FILE *f, const uint8_t *p, size_t n)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char out[4];
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[0] = abc[v >> 18];
		out[1] = abc[(v >> 12) & 63];
		out[2] = abc[(v >> 6) & 63];
		out[3] = abc[v & 63];
		fwrite(out, 1, 4, f);
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		out[0] = abc[v >> 18];
		out[1] = abc[(v >> 12) & 63];
		out[2] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
		out[3] = '=';
		fwrite(out, 1, 4, f);
	}
}

void sbc_json_bytes_field(FILE *f, const char *name, const uint8_t *p, size_t n)
{
	if (sbc_is_text(p, n)) {
		sbc_json_string(f, (const uint8_t *)name, strlen(name));
		putc(':', f);
		sbc_json_string(f, p, n);
		return;
	}
	putc('"', f);
	json_body(f, (const uint8_t *)name, strlen(name));
	fputs("_b64\":\"", f);
	sbc_base64(f, p, n);
	putc('"', f);
}

void sbc_json_headers(FILE *f, struct Streambus__V1__Header *const *h, size_t n)
{
	fputs("\"headers\":{", f);
	for (size_t i = 0; i < n; i++) {
		if (i)
			putc(',', f);
		sbc_json_bytes_field(f, h[i]->key, h[i]->value.data, h[i]->value.len);
	}
	putc('}', f);
}
