/*
 * xml.c - walk an XML reply with expat, handing each element's text and
 * its path of local names ("multistatus/response/href") to a callback.
 *
 * Namespaces are resolved by expat (XML_ParserCreateNS) and only the
 * local part of each name is kept, so "D:href" and "d:href" look the
 * same.  Replies come from servers we do not trust: documents deeper
 * than 32 levels, an element with more than 64 KiB of text, and any
 * DTD entity declaration are refused as -EBADMSG.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "../chunker/buf.h"
#include "xml.h"

#include <errno.h>
#include <expat.h>
#include <stdlib.h>
#include <string.h>

#define XML_MAX_DEPTH	32
#define XML_MAX_TEXT	(64u << 10)
#define XML_NS_SEP	' '
/* XML_Parse takes an int length: feed big documents in pieces. */
#define XML_CHUNK	(1u << 20)

/* A growing byte buffer. */
struct xbuf {
	char *p;
	size_t len, cap;
};

struct xml_walker {
	XML_Parser p;
	xml_text_cb cb;
	void *arg;
	int depth;
	int ret;			/* callback's value or -errno */
	struct xbuf path;		/* "a/b/c" of the open elements */
	struct xbuf text;		/* text of all open elements, stacked */
	size_t path_off[XML_MAX_DEPTH + 1];
	size_t text_off[XML_MAX_DEPTH + 1];
};

/* Append n bytes to b, keeping it NUL-terminated. */
static int xbuf_add(struct xbuf *b, const char *s, size_t n)
{
	char *np = buf_grow(b->p, &b->cap, b->len + n + 1, 1);
	if (!np)
		return -ENOMEM;
	b->p = np;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

/* Stop parsing with err unless something already stopped it. */
static void walker_stop(struct xml_walker *w, int err)
{
	if (!w->ret)
		w->ret = err;
	XML_StopParser(w->p, XML_FALSE);
}

/* Push the element's local name onto the path, open its text. */
static void XMLCALL on_start(void *arg, const XML_Char *name,
			     const XML_Char **atts)
{
	struct xml_walker *w = arg;
	const char *local = strrchr(name, XML_NS_SEP);

	(void)atts;
	if (w->ret)
		return;
	local = local ? local + 1 : name;
	if (w->depth >= XML_MAX_DEPTH) {
		walker_stop(w, -EBADMSG);
		return;
	}
	w->path_off[w->depth] = w->path.len;
	w->text_off[w->depth] = w->text.len;
	if ((w->depth && xbuf_add(&w->path, "/", 1)) ||
	    xbuf_add(&w->path, local, strlen(local)) ||
	    xbuf_add(&w->text, "", 0)) {
		walker_stop(w, -ENOMEM);
		return;
	}
	w->depth++;
}

/* Text goes to the innermost open element only. */
static void XMLCALL on_text(void *arg, const XML_Char *s, int len)
{
	struct xml_walker *w = arg;

	if (w->ret || !w->depth)
		return;
	if (w->text.len - w->text_off[w->depth - 1] + (size_t)len > XML_MAX_TEXT) {
		walker_stop(w, -EBADMSG);
		return;
	}
	if (xbuf_add(&w->text, s, (size_t)len))
		walker_stop(w, -ENOMEM);
}

/* Hand the element's trimmed text to the callback, pop it. */
static void XMLCALL on_end(void *arg, const XML_Char *name)
{
	struct xml_walker *w = arg;
	char *t, *e;
	int rc;

	(void)name;
	if (w->ret || !w->depth)
		return;
	w->depth--;
	t = w->text.p + w->text_off[w->depth];
	e = w->text.p + w->text.len;
	while (t < e && (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n'))
		t++;
	while (e > t && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
			 e[-1] == '\n'))
		e--;
	*e = 0;
	rc = w->cb(w->arg, w->path.p, t);
	w->path.len = w->path_off[w->depth];
	w->path.p[w->path.len] = 0;
	w->text.len = w->text_off[w->depth];
	w->text.p[w->text.len] = 0;
	if (rc)
		walker_stop(w, rc);
}

/* No entity definitions from a server (entity expansion attacks). */
static void XMLCALL on_entity_decl(void *arg, const XML_Char *name,
				   int is_param, const XML_Char *value,
				   int value_len, const XML_Char *base,
				   const XML_Char *system_id,
				   const XML_Char *public_id,
				   const XML_Char *notation)
{
	(void)name, (void)is_param, (void)value, (void)value_len, (void)base;
	(void)system_id, (void)public_id, (void)notation;
	walker_stop(arg, -EBADMSG);
}

int xml_walk(const char *buf, size_t len, xml_text_cb cb, void *arg)
{
	struct xml_walker w = { .cb = cb, .arg = arg };
	size_t done = 0;
	int rc = 0;

	w.p = XML_ParserCreateNS(NULL, XML_NS_SEP);
	if (!w.p)
		return -ENOMEM;
	XML_SetUserData(w.p, &w);
	XML_SetElementHandler(w.p, on_start, on_end);
	XML_SetCharacterDataHandler(w.p, on_text);
	XML_SetEntityDeclHandler(w.p, on_entity_decl);
	do {
		size_t n = len - done > XML_CHUNK ? XML_CHUNK : len - done;
		int final = done + n == len;

		if (XML_Parse(w.p, buf + done, (int)n, final) != XML_STATUS_OK) {
			rc = w.ret ? w.ret : -EBADMSG;
			break;
		}
		done += n;
	} while (done < len);
	if (!rc && w.ret)
		rc = w.ret;
	XML_ParserFree(w.p);
	free(w.path.p);
	free(w.text.p);
	return rc;
}
