/*
 * metrics.c - the daemon's figures in the Prometheus text exposition
 * format (version 0.0.4): served over HTTP on metrics-listen (GET
 * /metrics, one connection at a time, localhost by intent) and/or written
 * to metrics-textfile for node_exporter's textfile collector (temporary
 * file + rename, so it never reads half a file).
 *
 * Store-wide figures (bytes, ratios) cost a scan of the index: they are
 * cached for a minute.  FUSE latencies come from each mount daemon's
 * control socket ("opstats").  GET /health answers the status JSON.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../fs/control.h"
#include "../fs/opstats.h"
#include "../remote/repo.h"
#include "../chunker/util.h"
#include "cli.h"
#include "daemon.h"

enum { ST_LOGICAL, ST_FILES, ST_UNIQUE, ST_STORED, ST_CHUNKS, ST_PACKS, ST_DEDUP, ST_COMP };

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: escape backslash, quote and newline. */
static void lv(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void refresh_store_stats(struct daemon *d, struct index *ix, time_t now)
{
	if (d->stats_time && now - d->stats_time < 60 && now >= d->stats_time)
		return;
	struct ns_stats s;
	uint64_t mapped = 0, unique = 0;
	if (ns_stats(ix, -1, &s) || ns_live_dedup(ix, &mapped, &unique))
		return;
	d->stats[ST_LOGICAL] = s.logical;
	d->stats[ST_FILES] = s.files;
	d->stats[ST_UNIQUE] = s.chunk_raw;
	d->stats[ST_STORED] = s.pack_bytes;
	d->stats[ST_CHUNKS] = s.chunks;
	d->stats[ST_PACKS] = s.packs;
	d->stats[ST_DEDUP] = unique ? (double)mapped / unique : 1.0;
	d->stats[ST_COMP] = s.chunk_stored ? (double)s.chunk_raw / s.chunk_stored : 1.0;
	for (int i = 0; i < d->cfg.nvol; i++) {
		struct volume_info vi;
		struct ns_stats vs;
		d->vol_logical[i] = ns_volume_find(ix, d->cfg.vol[i].name, &vi) ||
				    ns_stats(ix, vi.id, &vs) ? 0 : (double)vs.logical;
	}
	d->stats_time = now;
}

static void fuse_histograms(struct daemon *d, struct index *ix, FILE *f)
{
	head(f, "tresor_fuse_op_duration_seconds", "histogram",
	     "Time the FUSE daemon spent on each operation.");
	static const double bounds_us[] = { OPSTAT_BOUNDS_US };
	/* The mounted volumes' names, read under the lock: a reload may
	 * change the config while the mount daemons answer. */
	char names[CONFIG_MAX_VOLUMES][sizeof(d->cfg.vol[0].name)];
	int n = 0;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < d->cfg.nvol; i++)
		if (d->mc[i].mounted)
			memcpy(names[n++], d->cfg.vol[i].name, sizeof(names[0]));
	pthread_mutex_unlock(&d->lock);
	for (int i = 0; i < n; i++) {
		struct volume_info vi;
		if (ns_volume_find(ix, names[i], &vi))
			continue;
		char reply[8192];
		struct opstats os;
		if (control_request(d->store_real, vi.id, "opstats", reply, sizeof(reply)) ||
		    strncmp(reply, "ok", 2) || opstats_parse(reply + 2, &os))
			continue;
		for (int op = 0; op < OPS_COUNT; op++) {
			uint64_t cum = 0;
			for (int b = 0; b < OPSTAT_BUCKETS; b++) {
				cum += os.bucket[op][b];
				fputs("tresor_fuse_op_duration_seconds_bucket{volume=\"", f);
				lv(f, vi.name);
				if (b < OPSTAT_BUCKETS - 1)
					fprintf(f, "\",op=\"%s\",le=\"%g\"} %llu\n", opstat_names[op],
						bounds_us[b] / 1e6, (unsigned long long)cum);
				else
					fprintf(f, "\",op=\"%s\",le=\"+Inf\"} %llu\n", opstat_names[op],
						(unsigned long long)cum);
			}
			fputs("tresor_fuse_op_duration_seconds_sum{volume=\"", f);
			lv(f, vi.name);
			fprintf(f, "\",op=\"%s\"} %.9f\n", opstat_names[op], os.sum_ns[op] / 1e9);
			fputs("tresor_fuse_op_duration_seconds_count{volume=\"", f);
			lv(f, vi.name);
			fprintf(f, "\",op=\"%s\"} %llu\n", opstat_names[op],
				(unsigned long long)os.count[op]);
		}
	}
}

/* Families of series with one label: each family's HELP and TYPE, then
 * a line per row that has a value for it (has NULL: every row has). */
struct family {
	const char *name, *type, *help;
};
#define FAMILY_MAX 8

static void families(FILE *f, const struct family *fam, int nfam, const char *label,
		     const char *const *keys, size_t nrow, double (*v)[FAMILY_MAX],
		     unsigned char (*has)[FAMILY_MAX])
{
	for (int k = 0; k < nfam; k++) {
		head(f, fam[k].name, fam[k].type, fam[k].help);
		for (size_t r = 0; r < nrow; r++) {
			if (has && !has[r][k])
				continue;
			fprintf(f, "%s{%s=\"", fam[k].name, label);
			lv(f, keys[r]);
			fprintf(f, "\"} %.17g\n", v[r][k]);
		}
	}
}

/* The store-wide figures (cached: they cost a scan). */
static void store_gauges(const double *stats, FILE *f)
{
	static const struct { int i; const char *name, *help; } g[] = {
		{ ST_LOGICAL, "tresor_logical_bytes", "Bytes of live files, all volumes." },
		{ ST_FILES, "tresor_files", "Live files, all volumes." },
		{ ST_UNIQUE, "tresor_unique_bytes", "Bytes of distinct chunks before compression." },
		{ ST_STORED, "tresor_stored_bytes", "Bytes of the packs that hold the chunks." },
		{ ST_CHUNKS, "tresor_chunks", "Distinct chunks referenced." },
		{ ST_PACKS, "tresor_packs", "Pack files." },
		{ ST_DEDUP, "tresor_dedup_ratio", "Bytes mapped by live files / their distinct chunk bytes." },
		{ ST_COMP, "tresor_compression_ratio", "Chunk bytes before / after compression." },
	};
	for (size_t k = 0; k < sizeof(g) / sizeof(g[0]); k++) {
		head(f, g[k].name, "gauge", g[k].help);
		fprintf(f, "%s %.17g\n", g[k].name, stats[g[k].i]);
	}
}

/* Per volume: its mount, and with the index its bytes and snapshots (what
 * status says of them; lock held). */
static void volume_gauges(struct daemon *d, struct index *ix, const double *vol_logical,
			  time_t now, FILE *f)
{
	static const struct family fam[] = {
		{ "tresor_volume_mounted", "gauge", "1 if the volume is mounted." },
		{ "tresor_volume_mount_restarts_total", "counter", "Times a volume's FUSE daemon was restarted." },
		{ "tresor_volume_logical_bytes", "gauge", "Bytes of the volume's live files." },
		{ "tresor_snapshots", "gauge", "Snapshots of the volume." },
		{ "tresor_snapshot_last_timestamp_seconds", "gauge", "Time of the volume's newest snapshot." },
		{ "tresor_snapshot_age_seconds", "gauge", "Seconds since the volume's newest snapshot." },
	};
	double v[CONFIG_MAX_VOLUMES][FAMILY_MAX];
	unsigned char has[CONFIG_MAX_VOLUMES][FAMILY_MAX];
	const char *keys[CONFIG_MAX_VOLUMES];
	for (int i = 0; i < d->cfg.nvol; i++) {
		struct volume_snaps vs;
		int listed = ix && !daemon_volume_snaps(ix, d->cfg.vol[i].name, &vs);
		time_t t = listed ? vs.newest.time / 1000000000 : 0;
		keys[i] = d->cfg.vol[i].name;
		memcpy(v[i], (double[FAMILY_MAX]){ d->mc[i].mounted, d->mc[i].restarts,
						   vol_logical[i], listed ? vs.count : 0, t,
						   now - t }, sizeof(v[i]));
		memcpy(has[i], (unsigned char[FAMILY_MAX]){ 1, 1, 1, listed, listed && vs.count,
							    listed && vs.count }, sizeof(has[i]));
	}
	families(f, fam, ix ? 6 : 2, "volume", keys, d->cfg.nvol, v, has);
}

/* Per remote: what status says of its health (lock held). */
static void remote_gauges(struct daemon *d, struct index *ix, time_t now, FILE *f)
{
	static const struct family fam[] = {
		{ "tresor_remote_last_push_timestamp_seconds", "gauge", "When the last successful push to the remote ended (0: never)." },
		{ "tresor_push_lag_seconds", "gauge", "Seconds since the last successful push to the remote (since the daemon started if never)." },
		{ "tresor_remote_packs_pending", "gauge", "Finished packs the remote does not hold yet." },
		{ "tresor_remote_bytes_pending", "gauge", "Bytes of the packs the remote does not hold yet." },
		{ "tresor_remote_behind_seconds", "gauge", "Age of the newest state the remote holds, when newer exists (0: up to date)." },
		{ "tresor_remote_push_failures_total", "counter", "Failed pushes to the remote." },
		{ "tresor_remote_last_push_failed", "gauge", "1 if the last push to the remote failed." },
		{ "tresor_remote_healthy", "gauge", "1 if the remote's last push worked and it is not stale." },
	};
	struct remote_cfg *rs = NULL;
	size_t nr = 0;
	remote_cfg_list(ix, &rs, &nr);
	double (*v)[FAMILY_MAX] = calloc(nr ? nr : 1, sizeof(*v));
	const char **keys = calloc(nr ? nr : 1, sizeof(*keys));
	for (size_t i = 0; v && keys && i < nr; i++) {
		struct remote_health h;
		daemon_remote_health(d, ix, &rs[i], now, &h);
		keys[i] = rs[i].name;
		memcpy(v[i], (double[FAMILY_MAX]){ h.last_push,
						   now - (h.last_push ? h.last_push : d->started),
						   h.packs_pending, h.bytes_pending, h.behind,
						   h.st ? h.st->failures : 0,
						   h.st && h.st->last_failed, h.healthy }, sizeof(v[i]));
	}
	if (v && keys)
		families(f, fam, 8, "remote", keys, nr, v, NULL);
	free(v);
	free(keys);
	free(rs);
}

/* Per job: its runs and how the last one went (lock held). */
static void job_gauges(struct daemon *d, FILE *f)
{
	static const struct family fam[] = {
		{ "tresor_job_runs_total", "counter", "Runs of the scheduled job (each attempt)." },
		{ "tresor_job_failures_total", "counter", "Failed attempts of the scheduled job." },
		{ "tresor_job_last_success_timestamp_seconds", "gauge", "When the job last succeeded (0: never)." },
		{ "tresor_job_last_run_failed", "gauge", "1 if the job's last attempt failed." },
		{ "tresor_job_running", "gauge", "1 while the job runs." },
		{ "tresor_job_last_duration_seconds", "gauge", "How long the job's last attempt took." },
	};
	double v[JOB_COUNT][FAMILY_MAX];
	for (int j = 0; j < JOB_COUNT; j++) {
		const struct job_state *s = &d->job[j];
		memcpy(v[j], (double[FAMILY_MAX]){ s->runs, s->failures, s->last_ok, s->last_failed,
						   s->running, s->last_duration }, sizeof(v[j]));
	}
	families(f, fam, 6, "job", job_names, JOB_COUNT, v, NULL);
}

/* Per snapshot set: its snapshots (lock held). */
static void set_gauges(struct daemon *d, struct index *ix, time_t now, FILE *f)
{
	static const struct family fam[] = {
		{ "tresor_set_snapshots", "gauge", "Snapshots of the snapshot set." },
		{ "tresor_set_snapshot_last_timestamp_seconds", "gauge", "Time of the set's newest snapshot." },
		{ "tresor_set_snapshot_age_seconds", "gauge", "Seconds since the set's newest snapshot." },
		{ "tresor_set_last_run_failed", "gauge", "1 if the set's last run failed." },
		{ "tresor_set_last_run_skipped", "gauge", "1 if the set's last run skipped its snapshot: its before-snapshot hook failed." },
		{ "tresor_set_last_run_marked", "gauge", "1 if the set's last run took its snapshot although its before-snapshot hook failed (marked)." },
		{ "tresor_set_drill_last_failed", "gauge", "1 if the set's last restore drill failed (sets with restore-drill)." },
		{ "tresor_set_drill_last_success_timestamp_seconds", "gauge", "When the set's restore drill last passed (0: never)." },
	};
	double v[CONFIG_MAX_SETS][FAMILY_MAX];
	unsigned char has[CONFIG_MAX_SETS][FAMILY_MAX];
	const char *keys[CONFIG_MAX_SETS];
	for (int i = 0; i < d->cfg.nset; i++) {
		struct set_snaps ss;
		int listed = !daemon_set_snaps(ix, d->cfg.set[i].name, &ss);
		time_t t = listed ? ss.newest_time / 1000000000 : 0;
		keys[i] = d->cfg.set[i].name;
		memcpy(v[i], (double[FAMILY_MAX]){ listed ? ss.count : 0, t, now - t,
						   d->set_job[i].last_failed, d->set_job[i].last_skipped,
						   d->set_job[i].last_marked,
						   d->set_job[i].drill_last_failed,
						   d->set_job[i].drill_last_ok }, sizeof(v[i]));
		int dr = !!d->cfg.set[i].drill[0];
		memcpy(has[i], (unsigned char[FAMILY_MAX]){ listed, listed && ss.count,
							    listed && ss.count, 1, 1, 1, dr, dr },
		       sizeof(has[i]));
	}
	if (d->cfg.nset)
		families(f, fam, 8, "set", keys, d->cfg.nset, v, has);
}

/* Per set or volume with snapshot hooks that ran (lock held). */
static void hook_gauges(struct daemon *d, FILE *f)
{
	static const struct family fam[] = {
		{ "tresor_hook_runs_total", "counter", "Snapshots of the set or volume that ran its hooks." },
		{ "tresor_hook_failures_total", "counter", "Of those, how many had a hook fail or time out." },
		{ "tresor_hook_last_failed", "gauge", "1 if a hook of its last snapshot failed." },
	};
	double v[DAEMON_MAX_HOOKED][FAMILY_MAX];
	const char *keys[DAEMON_MAX_HOOKED];
	size_t n = 0;
	for (int i = 0; i < DAEMON_MAX_HOOKED; i++) {
		const struct hook_state *h = &d->hook[i];
		if (!h->target[0])
			continue;
		keys[n] = h->target;
		memcpy(v[n++], (double[FAMILY_MAX]){ h->runs, h->failures, h->last_failed },
		       sizeof(v[0]));
	}
	if (n)
		families(f, fam, 3, "target", keys, n, v, NULL);
}

char *metrics_render(struct daemon *d)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	time_t now = daemon_now();
	struct index *ix = daemon_index(d);
	/* The store scan may take a while: not under d->lock, so status
	 * and the jobs' bookkeeping never wait for it. */
	double stats[8], vol_logical[CONFIG_MAX_VOLUMES];
	pthread_mutex_lock(&d->stats_lock);
	if (ix)
		refresh_store_stats(d, ix, now);
	memcpy(stats, d->stats, sizeof(stats));
	memcpy(vol_logical, d->vol_logical, sizeof(vol_logical));
	pthread_mutex_unlock(&d->stats_lock);
	pthread_mutex_lock(&d->lock);
	head(f, "tresor_up", "gauge", "1 while the tresor daemon runs.");
	fprintf(f, "tresor_up 1\n");
	head(f, "tresor_build_info", "gauge", "The tresor version that runs, as a label; always 1.");
	fputs("tresor_build_info{version=\"", f);
	lv(f, TRESOR_VERSION);
	fputs("\"} 1\n", f);
	head(f, "tresor_daemon_start_time_seconds", "gauge", "When the daemon started.");
	fprintf(f, "tresor_daemon_start_time_seconds %lld\n", (long long)d->started);
	if (ix)
		store_gauges(stats, f);
	volume_gauges(d, ix, vol_logical, now, f);
	if (ix) {
		remote_gauges(d, ix, now, f);
		set_gauges(d, ix, now, f);
	}
	job_gauges(d, f);
	hook_gauges(d, f);
	pthread_mutex_unlock(&d->lock);
	/* Outside the lock: each mount daemon answers in its own time. */
	if (ix) {
		fuse_histograms(d, ix, f);
		index_close(ix);
	}
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

int metrics_write_textfile(struct daemon *d)
{
	char *m = metrics_render(d);
	if (!m)
		return -ENOMEM;
	char tmp[CONFIG_PATH + 16];
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->cfg.metrics_textfile);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int err = fd < 0 ? -errno : 0;
	size_t len = strlen(m);
	if (!err && write(fd, m, len) != (ssize_t)len)
		err = -EIO;
	if (fd >= 0 && close(fd) && !err)
		err = -errno;
	if (!err && rename(tmp, d->cfg.metrics_textfile))
		err = -errno;
	if (err)
		tlog(LOG_WARN, "daemon: cannot write metrics-textfile %s: %s",
		     d->cfg.metrics_textfile, strerror(-err));
	free(m);
	return err;
}

/* Serve one HTTP request: GET /metrics; GET /health (the status JSON,
 * 200 when healthy, 503 when not: for orchestrators' HTTP health checks);
 * anything else 404. */
static void http_serve(struct daemon *d, int fd)
{
	char req[2048] = "";
	size_t got = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (got < sizeof(req) - 1 && !strstr(req, "\r\n\r\n") && !strstr(req, "\n\n")) {
		if (poll(&p, 1, 5000) <= 0)
			return;
		ssize_t r = read(fd, req + got, sizeof(req) - 1 - got);
		if (r <= 0)
			break;
		got += r;
		req[got] = 0;
	}
	req[got] = 0;
	const char *status = "404 Not Found", *type = "text/plain", *body = "not found: try /metrics\n";
	char *m = NULL;
	if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET /metrics?", 13)) {
		m = metrics_render(d);
		status = m ? "200 OK" : "500 Internal Server Error";
		type = "text/plain; version=0.0.4; charset=utf-8";
		body = m ? m : "out of memory\n";
	} else if (!strncmp(req, "GET /health ", 12)) {
		int healthy = 0;
		m = status_json(d, &healthy);
		status = !m ? "500 Internal Server Error" : healthy ? "200 OK" : "503 Service Unavailable";
		type = "application/json";
		body = m ? m : "out of memory\n";
	} else if (strncmp(req, "GET ", 4)) {
		status = "405 Method Not Allowed";
		body = "only GET\n";
	}
	dprintf(fd, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		"Connection: close\r\n\r\n%s", status, type, strlen(body), body);
	free(m);
}

static void http_accept(void *arg, int fd)
{
	http_serve(arg, fd);
	close(fd);
}

int metrics_start(struct daemon *d)
{
	char host[64];
	const char *colon = strrchr(d->cfg.metrics_listen, ':');
	snprintf(host, sizeof(host), "%.*s", (int)(colon - d->cfg.metrics_listen),
		 d->cfg.metrics_listen);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(colon + 1)) };
	if (!strcmp(host, "localhost"))
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	return listener_open(&d->http, (struct sockaddr *)&sa, sizeof(sa), http_accept, d);
}

void metrics_stop(struct daemon *d)
{
	listener_stop(&d->http);
}
