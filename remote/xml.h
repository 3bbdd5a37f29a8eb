/*
 * xml.h - the XML replies of S3 (ListObjectsV2, multipart, errors) and
 * WebDAV (PROPFIND multistatus), parsed with expat: the caller gets each
 * element's text with the path of element names leading to it, namespace
 * prefixes removed ("ListBucketResult/Contents/Key").
 */
#ifndef TRESOR_REMOTE_XML_H
#define TRESOR_REMOTE_XML_H

#include <stddef.h>

/* Called at each element end with its path and its text (trimmed);
 * return non-zero to stop (returned by xml_walk). */
typedef int (*xml_text_cb)(void *arg, const char *path, const char *text);

/* Parse len bytes of XML.  Returns 0, the callback's non-zero value, or
 * -EBADMSG for malformed XML or a document deeper than 32 levels or with
 * text longer than 64 KiB in one element. */
int xml_walk(const char *buf, size_t len, xml_text_cb cb, void *arg);

#endif
