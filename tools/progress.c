/*
 * progress.c - the progress line of long commands (progress.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Bytes as "12.3 MiB". */
static void human(uint64_t v, char *out, size_t size)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double d = (double)v;
	int u = 0;
	while (d >= 1024 && u < 4) {
		d /= 1024;
		u++;
	}
	snprintf(out, size, u ? "%.1f %s" : "%.0f %s", d, unit[u]);
}

void progress_start(struct progress *p, const char *what, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->what = what;
	p->total = total;
	p->start = now_s();
	const char *env = getenv("TRESOR_PROGRESS");
	if (env && *env)
		p->on = !!atoi(env);
	else
		p->on = isatty(STDERR_FILENO);
}

static void draw(struct progress *p, double t)
{
	char done[32], total[32], rate[32], eta[32] = "";
	double el = t - p->start;
	double r = el > 0 ? p->done / el : 0;
	if (p->unit) {
		/* Counted things: no rate, they differ too much in size. */
		fprintf(stderr, "\r%s: %llu of %llu %s\033[K", p->what,
			(unsigned long long)p->done, (unsigned long long)p->total, p->unit);
		fflush(stderr);
		p->drawn = 1;
		p->last = t;
		return;
	}
	human(p->done, done, sizeof(done));
	human((uint64_t)r, rate, sizeof(rate));
	if (p->total) {
		human(p->total, total, sizeof(total));
		if (r > 0 && p->total > p->done) {
			long s = (long)((p->total - p->done) / r);
			snprintf(eta, sizeof(eta), ", ETA %ld:%02ld", s / 60, s % 60);
		}
		fprintf(stderr, "\r%s: %s of %s (%.0f%%), %s/s%s\033[K", p->what,
			done, total, 100.0 * p->done / p->total, rate, eta);
	} else {
		fprintf(stderr, "\r%s: %s, %s/s\033[K", p->what, done, rate);
	}
	fflush(stderr);
	p->drawn = 1;
	p->last = t;
}

void progress_set(struct progress *p, uint64_t done, uint64_t total)
{
	p->done = done;
	if (total)
		p->total = total;
	if (!p->on)
		return;
	double t = now_s();
	if (t - p->last >= 0.25)
		draw(p, t);
}

void progress_cb(void *arg, uint64_t done, uint64_t total)
{
	progress_set(arg, done, total);
}

void progress_end(struct progress *p)
{
	if (p->on && p->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	p->drawn = 0;
}
