/*
 * fuzz_xml.c - libFuzzer target for xml_walk (remote/xml.c), the parser
 * of S3 and WebDAV replies.  The callback reads every byte of path and
 * text (so ASan sees any unterminated or freed buffer), checks the
 * documented invariants (no namespace separator left in a path, text
 * trimmed, at most 64 KiB, paths at most 32 levels), and stops the walk
 * when an element's text is "STOP" to exercise that path too.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"

#define MAX_TEXT (64u << 10)
#define MAX_DEPTH 32
#define STOP_VALUE 4242

static volatile uint32_t sink;

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int on_text(void *arg, const char *path, const char *text)
{
	size_t *calls = arg;
	uint32_t h = 2166136261u;
	size_t plen = 0, tlen = 0;
	int levels = 1;

	if (!path || !text)
		abort();
	for (const char *p = path; *p; p++, plen++) {
		h = (h ^ (uint8_t)*p) * 16777619u;
		if (*p == '/')
			levels++;
		if (*p == ' ')	/* expat's namespace separator */
			abort();
	}
	for (const char *t = text; *t; t++, tlen++)
		h = (h ^ (uint8_t)*t) * 16777619u;
	sink += h;
	if (plen == 0 || levels > MAX_DEPTH || tlen > MAX_TEXT)
		abort();
	if (tlen && (is_space(text[0]) || is_space(text[tlen - 1])))
		abort();
	(*calls)++;
	if (!strcmp(text, "STOP"))
		return STOP_VALUE;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t calls = 0;
	int ret = xml_walk((const char *)data, size, on_text, &calls);

	if (ret != 0 && ret != STOP_VALUE && ret != -EBADMSG &&
	    ret != -ENOMEM) {
		fprintf(stderr, "xml_walk: unexpected %d\n", ret);
		abort();
	}
	return 0;
}
