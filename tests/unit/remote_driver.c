/*
 * remote_driver.c - a small command line over remote.h for the
 * integration tests (tests/integration/test_remote_*.py):
 *
 *   remote_driver URL [options] put KEY FILE
 *   remote_driver URL [options] get KEY FILE [--offset N] [--length N]
 *   remote_driver URL [options] head KEY        prints the size
 *   remote_driver URL [options] delete KEY
 *   remote_driver URL [options] list PREFIX     prints "KEY SIZE" lines
 *   remote_driver URL [options] putmany PREFIX N FILE
 *                         puts FILE as PREFIX000000 .. PREFIX(N-1), over
 *                         one connection (fast set-up of big listings)
 *
 * options: --endpoint E --region R --path-style --virtual --ca-file F
 *          --ssh-key K --known-hosts F --netrc F --credentials-file F
 *          --profile P --timeout S --bwlimit BYTES
 *          --lock-until UNIX-SECONDS (S3 Object Lock, GOVERNANCE, on puts)
 *
 * FILE "-" is stdin / stdout.  Errors: one line on stderr, exit 1
 * (2 for usage errors).  Options may come anywhere after the URL.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "remote.h"

static void usage(const char *msg)
{
	fprintf(stderr, "remote_driver: %s\n"
		"usage: remote_driver URL [options] put KEY FILE | get KEY FILE "
		"[--offset N --length N] | head KEY | delete KEY | list PREFIX "
		"| putmany PREFIX N FILE\n",
		msg);
	exit(2);
}

/* Read a whole file (or stdin for "-") into memory. */
static int slurp(const char *path, uint8_t **buf, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	size_t cap = 1 << 16, n = 0;
	uint8_t *b;

	if (!f)
		return -errno;
	b = malloc(cap);
	while (b) {
		size_t k = fread(b + n, 1, cap - n, f);

		n += k;
		if (k == 0)
			break;
		if (n == cap) {
			uint8_t *nb = realloc(b, cap * 2);

			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
	}
	if (f != stdin)
		fclose(f);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*len = n;
	return 0;
}

static int spit(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "wb") : stdout;
	int rc = 0;

	if (!f)
		return -errno;
	if (len && fwrite(buf, 1, len, f) != len)
		rc = -EIO;
	if (f != stdout) {
		if (fclose(f) && !rc)
			rc = -EIO;
	} else if (fflush(f) && !rc) {
		rc = -EIO;
	}
	return rc;
}

static int print_entry(void *arg, const char *key, uint64_t size)
{
	(void)arg;
	printf("%s %" PRIu64 "\n", key, size);
	return 0;
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		usage(what);
	return v;
}

int main(int argc, char **argv)
{
	struct remote_options opt = { 0 };
	const char *url = NULL, *pos[4] = { 0 };
	uint64_t off = 0, length = 0;
	int64_t lock_until = 0;
	struct remote *r = NULL;
	int npos = 0, rc = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
#define VAL() (i + 1 < argc ? argv[++i] : (usage("missing option value"), ""))
		if (!strcmp(a, "--endpoint"))
			opt.endpoint = VAL();
		else if (!strcmp(a, "--region"))
			opt.region = VAL();
		else if (!strcmp(a, "--path-style"))
			opt.path_style = 1;
		else if (!strcmp(a, "--virtual"))
			opt.path_style = -1;
		else if (!strcmp(a, "--ca-file"))
			opt.ca_file = VAL();
		else if (!strcmp(a, "--ssh-key"))
			opt.ssh_key = VAL();
		else if (!strcmp(a, "--known-hosts"))
			opt.known_hosts = VAL();
		else if (!strcmp(a, "--netrc"))
			opt.netrc_file = VAL();
		else if (!strcmp(a, "--credentials-file"))
			opt.credentials_file = VAL();
		else if (!strcmp(a, "--profile"))
			opt.profile = VAL();
		else if (!strcmp(a, "--timeout"))
			opt.timeout_s = (int)parse_u64(VAL(), "bad --timeout");
		else if (!strcmp(a, "--bwlimit"))
			opt.bandwidth_limit = parse_u64(VAL(), "bad --bwlimit");
		else if (!strcmp(a, "--lock-until"))
			lock_until = (int64_t)parse_u64(VAL(), "bad --lock-until");
		else if (!strcmp(a, "--offset"))
			off = parse_u64(VAL(), "bad --offset");
		else if (!strcmp(a, "--length"))
			length = parse_u64(VAL(), "bad --length");
		else if (!strncmp(a, "--", 2))
			usage("unknown option");
		else if (!url)
			url = a;
		else if (npos < 4)
			pos[npos++] = a;
		else
			usage("too many arguments");
#undef VAL
	}
	if (!url || !npos)
		usage("missing URL or command");

#define NEED(n) do { if (npos != (n) + 1) usage("wrong number of arguments"); } while (0)
	if (!strcmp(pos[0], "put")) NEED(2);
	else if (!strcmp(pos[0], "putmany")) NEED(3);
	else if (!strcmp(pos[0], "get")) NEED(2);
	else if (!strcmp(pos[0], "head") || !strcmp(pos[0], "delete") ||
		 !strcmp(pos[0], "list")) NEED(1);
	else usage("unknown command");
#undef NEED

	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = remote_open(url, &opt, &r);
	if (!rc && lock_until)
		rc = remote_set_lock(r, REMOTE_LOCK_GOVERNANCE, lock_until);
	if (rc)
		goto fail;

	if (!strcmp(pos[0], "put") || !strcmp(pos[0], "putmany")) {
		int many = !strcmp(pos[0], "putmany");
		uint8_t *buf = NULL;
		size_t len = 0;

		rc = slurp(pos[many ? 3 : 2], &buf, &len);
		if (rc) {
			fprintf(stderr, "remote_driver: %s: %s\n", pos[many ? 3 : 2],
				strerror(-rc));
			remote_close(r);
			curl_global_cleanup();
			return 1;
		}
		if (!many) {
			rc = remote_put(r, pos[1], buf, len);
		} else {
			uint64_t n = parse_u64(pos[2], "bad count");
			char key[1100];

			for (uint64_t i = 0; !rc && i < n; i++) {
				snprintf(key, sizeof(key), "%s%06" PRIu64, pos[1], i);
				rc = remote_put(r, key, buf, len);
			}
		}
		free(buf);
	} else if (!strcmp(pos[0], "get")) {
		uint8_t *buf = NULL;
		size_t got = 0;

		rc = remote_get(r, pos[1], off, (size_t)length, &buf, &got);
		if (!rc) {
			rc = spit(pos[2], buf, got);
			if (rc) {
				fprintf(stderr, "remote_driver: %s: %s\n", pos[2],
					strerror(-rc));
				free(buf);
				remote_close(r);
				curl_global_cleanup();
				return 1;
			}
		}
		free(buf);
	} else if (!strcmp(pos[0], "head")) {
		uint64_t size = 0;

		rc = remote_head(r, pos[1], &size);
		if (!rc)
			printf("%" PRIu64 "\n", size);
	} else if (!strcmp(pos[0], "delete")) {
		rc = remote_delete(r, pos[1]);
	} else {
		rc = remote_list(r, pos[1], print_entry, NULL);
	}
	if (rc)
		goto fail;
	remote_close(r);
	curl_global_cleanup();
	return 0;
fail:
	fprintf(stderr, "remote_driver: %s [%s]\n",
		r ? remote_error(r) : "remote_open failed", strerror(-rc));
	remote_close(r);
	curl_global_cleanup();
	return 1;
}
