/* format.h - output helpers for consume: UTF-8 text checks, JSON strings,
 * base64. Pure functions on caller buffers; any thread. */
#ifndef SB_CLI_FORMAT_H
#define SB_CLI_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* 1 if p[0..n) is valid UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF) with no control characters (C0, DEL, C1), so it can be printed
 * as a JSON string as is; 0 otherwise. */
int sbc_is_text(const uint8_t *p, size_t n);

/* Writes "name":"text" when p is text (sbc_is_text), else "name_b64":"..."
 * with the standard base64 alphabet and padding. */
void sbc_json_bytes_field(FILE *f, const char *name, const uint8_t *p, size_t n);

/* Writes p[0..n) as a JSON string (quotes included): '"' and '\' escaped,
 * control characters as \u00XX, bytes that are not valid UTF-8 as U+FFFD. */
void sbc_json_string(FILE *f, const uint8_t *p, size_t n);

/* Writes the base64 encoding of p[0..n) (no quotes). */
void sbc_base64(FILE *f, const uint8_t *p, size_t n);

/* Writes "headers":{...}: each header as a field (sbc_json_bytes_field). */
struct Streambus__V1__Header;
void sbc_json_headers(FILE *f, struct Streambus__V1__Header *const *h, size_t n);

#endif
