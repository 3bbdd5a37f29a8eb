/*
 * config.c - parse the daemon's INI configuration (see config.h).
 *
 * inih does the INI syntax; this file feeds it the text line by line
 * (counting lines, so every message has one, and seeing section headers
 * even when a section has no keys) and checks every value.
 */
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "../chunker/buf.h"
#include "../remote/push.h"

struct parser {
	const char *buf, *end, *pos;	/* the text, where the reader is */
	const char *file;
	int line;			/* of the line inih works on */
	struct config *c;
	int kind;			/* current section: one of SEC_* */
	int idx;			/* its volume or remote number */
	int seen[3];			/* line of [tresor], [schedule], [retention] */
	int vol_line[CONFIG_MAX_VOLUMES];
	int keep_set;			/* a keep-* key was given */
	/* the volumes = text of each set, resolved once every [volume] is known */
	char set_vols[CONFIG_MAX_SETS][1024];
	char *err;
	size_t errsize;
	int err_line;			/* 0: no error yet */
};

enum { SEC_NONE = -1, SEC_TRESOR, SEC_SCHEDULE, SEC_RETENTION, SEC_VOLUME, SEC_REMOTE,
       SEC_SET };

/* Record the first error only: it is the one reported. */
static int fail(struct parser *p, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct parser *p, int line, const char *fmt, ...)
{
	if (p->err_line)
		return 0;
	p->err_line = line ? line : -1;
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line)
		snprintf(p->err, p->errsize, "%s:%d: %s", p->file, line, msg);
	else
		snprintf(p->err, p->errsize, "%s: %s", p->file, msg);
	return 0;
}

static int valid_name(const char *s)
{
	if (!*s || strlen(s) > 63 || s[0] == '.')
		return 0;
	for (; *s; s++)
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && *s != '-' && *s != '_' && *s != '.')
			return 0;
	return 1;
}

/* [snapshot-set NAME]: a new set, with [retention]'s policy until its own
 * keep-* keys (copied at the end, when [retention] is read whole). */
static void begin_set(struct parser *p, const char *name)
{
	struct config *c = p->c;
	for (int i = 0; i < c->nset; i++)
		if (!strcmp(c->set[i].name, name)) {
			fail(p, p->line, "[snapshot-set %s] given twice (first on line %d)",
			     name, c->set[i].line);
			return;
		}
	if (c->nset == CONFIG_MAX_SETS) {
		fail(p, p->line, "more than %d snapshot sets", CONFIG_MAX_SETS);
		return;
	}
	p->idx = c->nset++;
	c->set[p->idx].line = p->line;
	snprintf(c->set[p->idx].name, sizeof(c->set[0].name), "%s", name);
	p->kind = SEC_SET;
}

/* A section header "[...]": start the section it names. */
static void begin_section(struct parser *p, const char *name, size_t len)
{
	char s[128];
	if (len >= sizeof(s)) {
		fail(p, p->line, "section name too long");
		p->kind = SEC_NONE;
		return;
	}
	memcpy(s, name, len);
	s[len] = 0;
	static const char *const fixed[] = { "tresor", "schedule", "retention" };
	for (int i = 0; i < 3; i++) {
		if (strcmp(s, fixed[i]))
			continue;
		if (p->seen[i])
			fail(p, p->line, "[%s] given twice (first on line %d)", s, p->seen[i]);
		p->seen[i] = p->line;
		p->kind = i;
		return;
	}
	p->kind = SEC_NONE;
	const char *arg = NULL;
	int kind = SEC_NONE;
	if (!strncmp(s, "volume ", 7)) {
		kind = SEC_VOLUME;
		arg = s + 7;
	} else if (!strncmp(s, "remote ", 7)) {
		kind = SEC_REMOTE;
		arg = s + 7;
	} else if (!strncmp(s, "snapshot-set ", 13)) {
		kind = SEC_SET;
		arg = s + 13;
	} else {
		fail(p, p->line, "unknown section [%s] (known: [tresor], [schedule], [retention], [volume NAME], [snapshot-set NAME], [remote NAME])",
		     s);
		return;
	}
	while (*arg == ' ')
		arg++;
	if (!valid_name(arg)) {
		fail(p, p->line, "bad %s name '%s': use letters, digits, '-', '_', '.' (up to 63)",
		     kind == SEC_VOLUME ? "volume" : kind == SEC_SET ? "snapshot-set" : "remote",
		     arg);
		return;
	}
	struct config *c = p->c;
	if (kind == SEC_SET) {
		begin_set(p, arg);
		return;
	}
	if (kind == SEC_VOLUME) {
		for (int i = 0; i < c->nvol; i++)
			if (!strcmp(c->vol[i].name, arg)) {
				fail(p, p->line, "[volume %s] given twice (first on line %d)",
				     arg, p->vol_line[i]);
				return;
			}
		if (c->nvol == CONFIG_MAX_VOLUMES) {
			fail(p, p->line, "more than %d volumes", CONFIG_MAX_VOLUMES);
			return;
		}
		p->idx = c->nvol++;
		p->vol_line[p->idx] = p->line;
		c->vol[p->idx].line = p->line;
		snprintf(c->vol[p->idx].name, sizeof(c->vol[0].name), "%s", arg);
	} else {
		for (int i = 0; i < c->nrem; i++)
			if (!strcmp(c->rem[i].name, arg)) {
				fail(p, p->line, "[remote %s] given twice", arg);
				return;
			}
		if (c->nrem == CONFIG_MAX_REMOTES) {
			fail(p, p->line, "more than %d remotes", CONFIG_MAX_REMOTES);
			return;
		}
		p->idx = c->nrem++;
		c->rem[p->idx].line = p->line;
		snprintf(c->rem[p->idx].name, sizeof(c->rem[0].name), "%s", arg);
	}
	p->kind = kind;
}

/* inih's reader: one line of the buffer at a time (counted). */
static char *reader(char *str, int num, void *stream)
{
	struct parser *p = stream;
	if (p->pos >= p->end)
		return NULL;
	const char *nl = memchr(p->pos, '\n', p->end - p->pos);
	size_t len = (nl ? nl + 1 : p->end) - p->pos;
	p->line++;
	if (memchr(p->pos, 0, len))
		fail(p, p->line, "NUL byte in the line");
	if (len > (size_t)num - 1) {
		fail(p, p->line, "line longer than %d characters", num - 2);
		len = num - 1;
		memcpy(str, p->pos, len);
		str[len] = 0;
		p->pos = nl ? nl + 1 : p->end;
		return str;
	}
	memcpy(str, p->pos, len);
	str[len] = 0;
	p->pos += len;
	/* A section header: note it even if no key follows. */
	const char *s = str;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (close)
			begin_section(p, s + 1, close - s - 1);
		else
			p->kind = SEC_NONE;	/* inih reports the syntax */
	}
	return str;
}

int config_parse_duration(const char *s, int64_t *out)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	if (end == s || v < 0 || v > 100LL * 365 * 86400)
		return -1;
	int64_t mul = 1;
	if (*end == 's')
		end++;
	else if (*end == 'm')
		mul = 60, end++;
	else if (*end == 'h')
		mul = 3600, end++;
	else if (*end == 'd')
		mul = 86400, end++;
	else if (*end == 'w')
		mul = 7 * 86400, end++;
	if (*end || v * mul > 100LL * 365 * 86400)
		return -1;
	*out = v * mul;
	return 0;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcmp(s, "1"))
		*out = 1;
	else if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcmp(s, "0"))
		*out = 0;
	else
		return -1;
	return 0;
}

/* Copy an absolute path into dst; 0 or -1 (message recorded). */
static int set_path(struct parser *p, const char *key, const char *v, char *dst,
		    size_t size)
{
	if (v[0] != '/') {
		fail(p, p->line, "%s must be an absolute path, not '%s'", key, v);
		return -1;
	}
	if (strlen(v) >= size) {
		fail(p, p->line, "%s is too long", key);
		return -1;
	}
	snprintf(dst, size, "%s", v);
	return 0;
}

static int set_str(struct parser *p, const char *key, const char *v, char *dst,
		   size_t size)
{
	if (strlen(v) >= size) {
		fail(p, p->line, "%s is too long (over %zu characters)", key, size - 1);
		return -1;
	}
	snprintf(dst, size, "%s", v);
	return 0;
}

/* "HOST:PORT" with a numeric IPv4 host or localhost. */
static int valid_listen(const char *v)
{
	const char *colon = strrchr(v, ':');
	long port;
	if (!colon || colon == v || parse_int(colon + 1, 1, 65535, &port))
		return 0;
	size_t hl = colon - v;
	if (hl == 9 && !strncmp(v, "localhost", 9))
		return 1;
	int dots = 0;
	for (size_t i = 0; i < hl; i++) {
		if (v[i] == '.')
			dots++;
		else if (v[i] < '0' || v[i] > '9')
			return 0;
	}
	return dots == 3 && hl <= 15;
}

static int key_tresor(struct parser *p, const char *k, const char *v)
{
	struct config *c = p->c;
	if (!strcmp(k, "store")) {
		c->store_line = p->line;
		return set_path(p, k, v, c->store, sizeof(c->store));
	}
	if (!strcmp(k, "passphrase-file"))
		return set_path(p, k, v, c->passphrase_file, sizeof(c->passphrase_file));
	if (!strcmp(k, "state-file")) {
		c->state_file_line = p->line;
		return set_path(p, k, v, c->state_file, sizeof(c->state_file));
	}
	if (!strcmp(k, "metrics-textfile"))
		return set_path(p, k, v, c->metrics_textfile, sizeof(c->metrics_textfile));
	if (!strcmp(k, "metrics-listen")) {
		if (!valid_listen(v))
			return fail(p, p->line, "metrics-listen must be IPV4:PORT or localhost:PORT, not '%s'", v) - 1;
		c->metrics_listen_line = p->line;
		return set_str(p, k, v, c->metrics_listen, sizeof(c->metrics_listen));
	}
	if (!strcmp(k, "stale-push") || !strcmp(k, "retry-delay")) {
		int64_t d;
		if (config_parse_duration(v, &d) || (d == 0 && k[0] == 's'))
			return fail(p, p->line, "%s: not a duration like 90s, 5m, 26h or 2d: '%s'", k, v) - 1;
		*(k[0] == 's' ? &c->stale_push_s : &c->retry_delay_s) = d;
		return 0;
	}
	if (!strcmp(k, "retries")) {
		long n;
		if (parse_int(v, 0, 100, &n))
			return fail(p, p->line, "retries: not a number from 0 to 100: '%s'", v) - 1;
		c->retries = (int)n;
		return 0;
	}
	return fail(p, p->line, "unknown key '%s' in [tresor] (known: store, passphrase-file, state-file, metrics-listen, metrics-textfile, stale-push, retries, retry-delay)",
		    k) - 1;
}

static int key_schedule(struct parser *p, const char *k, const char *v)
{
	struct config *c = p->c;
	struct schedule *s = !strcmp(k, "snapshot") ? &c->snapshot :
			     !strcmp(k, "push") ? &c->push :
			     !strcmp(k, "check") ? &c->check : NULL;
	if (s) {
		char why[200];
		if (schedule_parse(v, s, why, sizeof(why)))
			return fail(p, p->line, "%s: %s", k, why) - 1;
		return 0;
	}
	if (!strcmp(k, "check-read-data")) {
		int b;
		long pct;
		size_t n = strlen(v);
		if (!parse_bool(v, &b))
			c->check_read_data = b ? 100 : 0;
		else if (n > 1 && v[n - 1] == '%' && n < 5) {
			char num[4];
			memcpy(num, v, n - 1);
			num[n - 1] = 0;
			if (parse_int(num, 1, 100, &pct))
				return fail(p, p->line, "check-read-data: a percentage must be 1%% to 100%%, not '%s'", v) - 1;
			c->check_read_data = (int)pct;
		} else {
			return fail(p, p->line, "check-read-data: use yes, no or a percentage like 10%%, not '%s'", v) - 1;
		}
		return 0;
	}
	if (!strcmp(k, "check-max-age")) {
		int b;
		if (!parse_bool(v, &b) && !b)
			c->check_max_age_s = -1;
		else if (config_parse_duration(v, &c->check_max_age_s))
			return fail(p, p->line, "check-max-age: not a duration like 30d, 2w or 12h (or no): '%s'", v) - 1;
		return 0;
	}
	if (!strcmp(k, "push-jobs")) {
		long n;
		if (parse_int(v, 1, PUSH_MAX_JOBS, &n))
			return fail(p, p->line, "push-jobs: a number from 1 to %d, not '%s'",
				    PUSH_MAX_JOBS, v) - 1;
		c->push_jobs = (int)n;
		return 0;
	}
	if (!strcmp(k, "push-limit-upload")) {
		uint64_t rate;
		if (config_parse_rate(v, &rate) || strlen(v) >= sizeof(c->push_limit_upload))
			return fail(p, p->line, "push-limit-upload: not a rate like 10M (bytes per second): '%s'", v) - 1;
		return set_str(p, k, v, c->push_limit_upload, sizeof(c->push_limit_upload));
	}
	if (!strcmp(k, "push-image-every")) {
		long n;
		if (parse_int(v, 0, 1000000, &n))
			return fail(p, p->line, "push-image-every: a number of pushes from 1 to 1000000, or 0 for never, not '%s'", v) - 1;
		c->push_image_every = (int)n;
		return 0;
	}
	return fail(p, p->line, "unknown key '%s' in [schedule] (known: snapshot, push, check, check-read-data, check-max-age, push-jobs, push-limit-upload, push-image-every)",
		    k) - 1;
}

int config_parse_rate(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !(v > 0))
		return -EINVAL;
	const char *units = "kKmMgG";
	const char *u = *end ? strchr(units, *end) : NULL;
	if (u) {
		for (int i = 0; i <= (u - units) / 2; i++)
			v *= 1024;
		end++;
	}
	if (!strcmp(end, "/s") || !strcmp(end, "B/s") || !strcmp(end, "B"))
		end += strlen(end);
	if (*end || v < 1 || v > 1e15)
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

#define HOOK_TIMEOUT_DEFAULT 600

/* A hook key into h: 0, -1 on a bad value, 1 if k is not one. */
static int hook_key(struct parser *p, struct config_hooks *h, const char *k,
		    const char *v)
{
	int is_cmd = !strcmp(k, "before-snapshot") || !strcmp(k, "after-snapshot");
	if (is_cmd || !strcmp(k, "hook-timeout") || !strcmp(k, "snapshot-on-hook-failure")) {
		if (!h->line)
			h->line = p->line;
	}
	if (is_cmd) {
		if (v[0] != '/')
			return fail(p, p->line, "%s: the command must be an absolute path (arguments after spaces), not '%s'",
				    k, v) - 1;
		return set_str(p, k, v, k[0] == 'b' ? h->before : h->after, CONFIG_PATH);
	}
	if (!strcmp(k, "hook-timeout")) {
		int64_t t;
		if (config_parse_duration(v, &t) || t < 1 || t > 86400)
			return fail(p, p->line, "hook-timeout: a duration from 1s to 1d like 90s or 10m, not '%s'", v) - 1;
		h->timeout_s = (int)t;
		return 0;
	}
	if (!strcmp(k, "snapshot-on-hook-failure")) {
		if (parse_bool(v, &h->take_anyway))
			return fail(p, p->line, "snapshot-on-hook-failure: yes or no, not '%s'", v) - 1;
		return 0;
	}
	return 1;
}

/* A keep-* key into r; *given says whether one was (the first replaces
 * the default policy).  1 if k is not a keep-* key, -1 on a bad value. */
static int keep_key(struct parser *p, struct retention_policy *r, int *given,
		    const char *k, const char *v)
{
	if (strncmp(k, "keep-", 5))
		return 1;
	if (!*given) {
		/* Given at all: the file's policy replaces the default. */
		memset(r, 0, sizeof(*r));
		*given = 1;
	}
	if (!strcmp(k, "keep-within")) {
		if (retention_parse_duration(v, &r->within_ns))
			return fail(p, p->line, "keep-within: not a duration like 30d or 1y6m: '%s'", v) - 1;
		return 0;
	}
	static const char *const names[] = { "keep-last", "keep-hourly", "keep-daily",
					      "keep-weekly", "keep-monthly", "keep-yearly" };
	int *dst[] = { &r->last, &r->hourly, &r->daily, &r->weekly, &r->monthly, &r->yearly };
	for (int i = 0; i < 6; i++) {
		if (strcmp(k, names[i]))
			continue;
		long n;
		if (parse_int(v, -1, 1000000, &n))
			return fail(p, p->line, "%s: not a count (a whole number, or -1 for all): '%s'", k, v) - 1;
		*dst[i] = (int)n;
		return 0;
	}
	return 1;
}

static int key_retention(struct parser *p, const char *k, const char *v)
{
	int r = keep_key(p, &p->c->keep, &p->keep_set, k, v);
	if (r <= 0)
		return r;
	return fail(p, p->line, "unknown key '%s' in [retention] (known: keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly, keep-within)",
		    k) - 1;
}

static int key_set(struct parser *p, const char *k, const char *v)
{
	struct config_set *s = &p->c->set[p->idx];
	if (!strcmp(k, "volumes")) {
		s->vol_line = p->line;
		return set_str(p, k, v, p->set_vols[p->idx], sizeof(p->set_vols[0]));
	}
	if (!strcmp(k, "snapshot")) {
		char why[200];
		if (schedule_parse(v, &s->snapshot, why, sizeof(why)))
			return fail(p, p->line, "%s: %s", k, why) - 1;
		s->own_schedule = 1;
		return 0;
	}
	if (!strcmp(k, "restore-drill")) {
		if (v[0] != '/')
			return fail(p, p->line, "%s: the command must be an absolute path (arguments after spaces), not '%s'",
				    k, v) - 1;
		return set_str(p, k, v, s->drill, CONFIG_PATH);
	}
	int r = keep_key(p, &s->keep, &s->keep_set, k, v);
	if (r > 0)
		r = hook_key(p, &s->hooks, k, v);
	if (r <= 0)
		return r;
	return fail(p, p->line, "unknown key '%s' in [snapshot-set %s] (known: volumes, snapshot, keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly, keep-within, before-snapshot, after-snapshot, hook-timeout, snapshot-on-hook-failure, restore-drill)",
		    k, s->name) - 1;
}

/* Resolve each set's volumes: every one a [volume], none in two sets. */
static void check_sets(struct parser *p)
{
	struct config *c = p->c;
	for (int i = 0; i < c->nset && !p->err_line; i++) {
		struct config_set *s = &c->set[i];
		if (!s->keep_set)
			s->keep = c->keep;
		if (!s->own_schedule)
			s->snapshot = c->snapshot;
		char *save = NULL;
		for (char *w = strtok_r(p->set_vols[i], " ,\t", &save); w && !p->err_line;
		     w = strtok_r(NULL, " ,\t", &save)) {
			int v = 0;
			while (v < c->nvol && strcmp(c->vol[v].name, w))
				v++;
			if (v == c->nvol) {
				fail(p, s->vol_line, "[snapshot-set %s]: unknown volume '%s' (each must have its [volume %s] section)",
				     s->name, w, w);
				break;
			}
			if (c->vol[v].hooks.line) {
				fail(p, c->vol[v].hooks.line, "[volume %s] is in [snapshot-set %s]: give its hooks in the set's section",
				     w, s->name);
				break;
			}
			int other = config_set_of(c, v);
			if (other >= 0) {
				fail(p, s->vol_line, "[snapshot-set %s]: volume '%s' is already in [snapshot-set %s] (line %d): a volume may be in one set only",
				     s->name, w, c->set[other].name, c->set[other].line);
				break;
			}
			s->vol[s->nvol++] = v;
		}
		const struct retention_policy *k = &s->keep;
		if (!p->err_line && !s->nvol)
			fail(p, s->vol_line ? s->vol_line : s->line,
			     "[snapshot-set %s] names no volumes; give e.g. volumes = db-dumps filestore",
			     s->name);
		else if (!p->err_line && !k->last && !k->hourly && !k->daily && !k->weekly &&
			 !k->monthly && !k->yearly && !k->within_ns)
			fail(p, s->line, "[snapshot-set %s] keeps nothing; give e.g. keep-daily = 30",
			     s->name);
	}
}

int config_set_of(const struct config *c, int vi)
{
	for (int i = 0; i < c->nset; i++)
		for (int j = 0; j < c->set[i].nvol; j++)
			if (c->set[i].vol[j] == vi)
				return i;
	return -1;
}

static int key_volume(struct parser *p, const char *k, const char *v)
{
	struct config_volume *vol = &p->c->vol[p->idx];
	if (!strcmp(k, "mountpoint"))
		return set_path(p, k, v, vol->mountpoint, sizeof(vol->mountpoint));
	if (!strcmp(k, "options")) {
		for (const char *s = v; *s; s++)
			if (*s == ' ' || *s == '\t')
				return fail(p, p->line, "options: comma-separated, no spaces: '%s'", v) - 1;
		return set_str(p, k, v, vol->options, sizeof(vol->options));
	}
	int r = hook_key(p, &vol->hooks, k, v);
	if (r <= 0)
		return r;
	return fail(p, p->line, "unknown key '%s' in [volume %s] (known: mountpoint, options, before-snapshot, after-snapshot, hook-timeout, snapshot-on-hook-failure)",
		    k, vol->name) - 1;
}

static int key_remote(struct parser *p, const char *k, const char *v)
{
	struct config_remote *r = &p->c->rem[p->idx];
	if (!strcmp(k, "url")) {
		if (!strstr(v, "://") && v[0] != '/')
			return fail(p, p->line, "url: not a URL (s3://, sftp://, https://, file:// or /path): '%s'", v) - 1;
		return set_str(p, k, v, r->url, sizeof(r->url));
	}
	if (!strcmp(k, "endpoint"))
		return set_str(p, k, v, r->endpoint, sizeof(r->endpoint));
	if (!strcmp(k, "region"))
		return set_str(p, k, v, r->region, sizeof(r->region));
	if (!strcmp(k, "path-style")) {
		int b;
		if (parse_bool(v, &b))
			return fail(p, p->line, "path-style: use yes or no, not '%s'", v) - 1;
		r->path_style = b ? 1 : -1;
		return 0;
	}
	static const char *const names[] = { "ca-file", "credentials-file", "ssh-key",
					      "known-hosts", "netrc" };
	char *dst[] = { r->ca_file, r->credentials_file, r->ssh_key, r->known_hosts, r->netrc };
	for (int i = 0; i < 5; i++)
		if (!strcmp(k, names[i]))
			return set_path(p, k, v, dst[i], CONFIG_PATH);
	return fail(p, p->line, "unknown key '%s' in [remote %s] (known: url, endpoint, region, path-style, ca-file, credentials-file, ssh-key, known-hosts, netrc)",
		    k, r->name) - 1;
}

static int handler(void *user, const char *section, const char *name,
		   const char *value)
{
	struct parser *p = user;
	(void)section;	/* p->kind says which, from the reader */
	if (p->err_line)
		return 1;	/* the first error is the one reported */
	if (!*value)
		return fail(p, p->line, "%s has no value", name);
	int r;
	switch (p->kind) {
	case SEC_TRESOR: r = key_tresor(p, name, value); break;
	case SEC_SCHEDULE: r = key_schedule(p, name, value); break;
	case SEC_RETENTION: r = key_retention(p, name, value); break;
	case SEC_VOLUME: r = key_volume(p, name, value); break;
	case SEC_REMOTE: r = key_remote(p, name, value); break;
	case SEC_SET: r = key_set(p, name, value); break;
	default:
		return fail(p, p->line, "'%s' is outside any section (start with [tresor])", name);
	}
	return r ? 0 : 1;
}

static void defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->stale_push_s = 26 * 3600;
	c->retries = 3;
	c->retry_delay_s = 60;
	c->snapshot = (struct schedule){ .kind = SCHED_DAILY, .hour = 2 };
	c->push = (struct schedule){ .kind = SCHED_DAILY, .hour = 5 };
	c->check = (struct schedule){ .kind = SCHED_WEEKLY, .wday = 0, .hour = 3 };
	c->check_read_data = 0;
	c->check_max_age_s = -1;
	c->push_image_every = -1;
	c->keep.daily = 30;
	c->keep.monthly = 12;
}

int config_parse_buffer(const char *buf, size_t len, const char *file,
			struct config *c, char *err, size_t errsize)
{
	defaults(c);
	struct parser p = {
		.buf = buf, .end = buf + len, .pos = buf, .file = file, .c = c,
		.kind = SEC_NONE, .err = err, .errsize = errsize,
	};
	int r = ini_parse_stream(reader, &p, handler, &p);
	if (r > 0 && (!p.err_line || r < p.err_line)) {
		/* inih's own syntax error came first. */
		p.err_line = 0;
		fail(&p, r, "not NAME = VALUE, a [section] or a comment");
	}
	if (r < 0 && !p.err_line)
		fail(&p, 0, "out of memory while parsing");
	if (p.err_line)
		return -EINVAL;
	if (!c->store[0])
		fail(&p, p.seen[SEC_TRESOR], "no 'store = /path' in [tresor]");
	if (!c->state_file[0] && c->store[0] &&
	    (size_t)snprintf(c->state_file, sizeof(c->state_file), "%s/daemon.state",
			     c->store) >= sizeof(c->state_file))
		fail(&p, p.seen[SEC_TRESOR], "store path too long");
	for (int i = 0; i < c->nvol; i++) {
		if (!c->vol[i].mountpoint[0])
			fail(&p, p.vol_line[i], "[volume %s] has no mountpoint", c->vol[i].name);
		for (int j = 0; j < i; j++)
			if (!strcmp(c->vol[i].mountpoint, c->vol[j].mountpoint))
				fail(&p, p.vol_line[i], "volumes %s and %s share the mountpoint %s",
				     c->vol[j].name, c->vol[i].name, c->vol[i].mountpoint);
	}
	check_sets(&p);
	for (int i = 0; i < c->nvol; i++)
		if (!c->vol[i].hooks.timeout_s)
			c->vol[i].hooks.timeout_s = HOOK_TIMEOUT_DEFAULT;
	for (int i = 0; i < c->nset; i++)
		if (!c->set[i].hooks.timeout_s)
			c->set[i].hooks.timeout_s = HOOK_TIMEOUT_DEFAULT;
	struct retention_policy *k = &c->keep;
	if (!k->last && !k->hourly && !k->daily && !k->weekly && !k->monthly &&
	    !k->yearly && !k->within_ns)
		fail(&p, p.seen[SEC_RETENTION], "[retention] keeps nothing; give e.g. keep-daily = 30");
	return p.err_line ? -EINVAL : 0;
}

int config_load(const char *path, struct config *c, char *err, size_t errsize)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		snprintf(err, errsize, "%s: cannot read: %s", path, strerror(e));
		return -e;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			if (len >= (1u << 24)) {
				free(buf);
				fclose(f);
				snprintf(err, errsize, "%s: larger than 16 MiB", path);
				return -EFBIG;
			}
			char *nb = buf_grow(buf, &cap, len + 4096, 1);
			if (!nb) {
				free(buf);
				fclose(f);
				snprintf(err, errsize, "%s: out of memory", path);
				return -ENOMEM;
			}
			buf = nb;
		}
		size_t r = fread(buf + len, 1, cap - len, f);
		if (!r)
			break;
		len += r;
	}
	int rerr = ferror(f);
	fclose(f);
	if (rerr) {
		free(buf);
		snprintf(err, errsize, "%s: read error", path);
		return -EIO;
	}
	int ret = config_parse_buffer(buf, len, path, c, err, errsize);
	free(buf);
	return ret;
}
