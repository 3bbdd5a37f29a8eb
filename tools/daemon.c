/*
 * daemon.c - `tresor daemon CONFIG`: mount the volumes, run the schedule
 * (see daemon.h for the threads and why jobs are child processes).
 *
 * A slot of a schedule is handled once: done, or given up after
 * cfg.retries retries with doubling backoff.  The last slot handled per
 * job is kept in the state file, so a slot missed while the host was down
 * is run once at start (only the latest one: three missed days give one
 * snapshot, not three).  On the very first start there is no history and
 * nothing is caught up.  SIGTERM/SIGINT: the running job finishes, then
 * the volumes are unmounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../remote/repo.h"
#include "../chunker/util.h"
#include "cli.h"
#include "daemon.h"

const char *const job_names[JOB_COUNT] = { "snapshot", "prune", "push", "check" };

time_t daemon_now(void)
{
	const char *f = getenv("TRESOR_TEST_CLOCK");
	if (!f || !*f)
		return time(NULL);
	FILE *fp = fopen(f, "r");
	long long t = 0;
	if (fp) {
		if (fscanf(fp, "%lld", &t) != 1)
			t = 0;
		fclose(fp);
	}
	return t > 0 ? (time_t)t : time(NULL);
}

struct index *daemon_index(struct daemon *d)
{
	char path[PATH_MAX];
	struct index *ix;
	snprintf(path, sizeof(path), "%s/%s", d->cfg.store, STORE_INDEX_FILE);
	return index_open(path, 0, &ix) ? NULL : ix;
}

struct remote_state *daemon_remote_state(struct daemon *d, const char *name)
{
	for (int i = 0; i < d->nrem; i++)
		if (!strcmp(d->rem[i].name, name))
			return &d->rem[i];
	if (d->nrem == DAEMON_MAX_REMOTES || strlen(name) >= sizeof(d->rem[0].name))
		return NULL;
	struct remote_state *r = &d->rem[d->nrem++];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	return r;
}

/* systemd's notify protocol: one datagram to $NOTIFY_SOCKET. */
static void sd_notify_msg(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return;
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	memcpy(un.sun_path, path, strlen(path));
	if (path[0] == '@')
		un.sun_path[0] = 0;
	socklen_t len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&un, len) < 0)
		tlog(LOG_WARN, "daemon: sd_notify: %s", strerror(errno));
	close(fd);
}

/* SIGTERM and SIGINT are blocked in every thread and read from a
 * signalfd here, between jobs: a job that runs is never interrupted. */
static int stop_requested(struct daemon *d)
{
	struct signalfd_siginfo si;
	while (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
		tlog(LOG_INFO, "daemon: signal %u: stopping after the running job", si.ssi_signo);
		d->stopping = 1;
	}
	return d->stopping;
}

/* In a child before exec: the signals the daemon blocked, unblocked. */
static void child_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* ---- state file ---------------------------------------------------- */

static void state_load_remote(struct daemon *d, const char *name, const char *key,
			      const char *val)
{
	struct remote_state *r = daemon_remote_state(d, name);
	long long v = atoll(val);
	if (!r)
		return;
	if (!strcmp(key, "last_run"))
		r->last_run = v;
	else if (!strcmp(key, "last_ok"))
		r->last_ok = v;
	else if (!strcmp(key, "failures"))
		r->failures = v;
	else if (!strcmp(key, "last_failed"))
		r->last_failed = (int)v;
	else if (!strcmp(key, "last_error"))
		snprintf(r->last_error, sizeof(r->last_error), "%s", val);
}

static void state_load(struct daemon *d, int *found)
{
	*found = 0;
	FILE *f = fopen(d->cfg.state_file, "r");
	if (!f)
		return;
	*found = 1;
	char line[600];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char name[64], key[32];
		int off = 0;
		/* remote.KEY.NAME=VALUE: a remote's health (names hold no '=') */
		if (sscanf(line, "remote.%31[a-z_].%63[^=]=%n", key, name, &off) == 2 && off) {
			state_load_remote(d, name, key, line + off);
			continue;
		}
		if (sscanf(line, "%31[a-z].%31[a-z_]=%n", name, key, &off) < 2 || !off)
			continue;
		const char *val = line + off;
		for (int j = 0; j < JOB_COUNT; j++) {
			if (strcmp(name, job_names[j]))
				continue;
			struct job_state *s = &d->job[j];
			long long v = atoll(val);
			if (!strcmp(key, "last_slot"))
				s->last_slot = v;
			else if (!strcmp(key, "last_run"))
				s->last_run = v;
			else if (!strcmp(key, "last_ok"))
				s->last_ok = v;
			else if (!strcmp(key, "runs"))
				s->runs = v;
			else if (!strcmp(key, "failures"))
				s->failures = v;
			else if (!strcmp(key, "last_failed"))
				s->last_failed = (int)v;
			else if (!strcmp(key, "last_error"))
				snprintf(s->last_error, sizeof(s->last_error), "%s", val);
		}
	}
	fclose(f);
}

/* Write the state (lock held): a temporary file, fsync'ed, renamed. */
static void state_save(struct daemon *d)
{
	char tmp[CONFIG_PATH + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->cfg.state_file);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		tlog(LOG_ERR, "daemon: cannot write state file %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	fprintf(f, "# tresor daemon state: the last scheduled slot handled per job\n");
	for (int j = 0; j < JOB_COUNT; j++) {
		const struct job_state *s = &d->job[j];
		fprintf(f, "%s.last_slot=%lld\n%s.last_run=%lld\n%s.last_ok=%lld\n"
			"%s.runs=%llu\n%s.failures=%llu\n%s.last_failed=%d\n%s.last_error=%s\n",
			job_names[j], (long long)s->last_slot, job_names[j],
			(long long)s->last_run, job_names[j], (long long)s->last_ok,
			job_names[j], (unsigned long long)s->runs, job_names[j],
			(unsigned long long)s->failures, job_names[j], s->last_failed,
			job_names[j], s->last_error);
	}
	for (int i = 0; i < d->nrem; i++) {
		const struct remote_state *r = &d->rem[i];
		fprintf(f, "remote.last_run.%s=%lld\nremote.last_ok.%s=%lld\n"
			"remote.failures.%s=%llu\nremote.last_failed.%s=%d\nremote.last_error.%s=%s\n",
			r->name, (long long)r->last_run, r->name, (long long)r->last_ok, r->name,
			(unsigned long long)r->failures, r->name, r->last_failed, r->name,
			r->last_error);
	}
	int err = fflush(f) || fsync(fileno(f));
	err |= fclose(f);
	if (err || rename(tmp, d->cfg.state_file))
		tlog(LOG_ERR, "daemon: cannot write state file %s: %s", d->cfg.state_file,
		     strerror(errno));
}

/* ---- child processes --------------------------------------------- */

/* Copy src into dst, cut to fit. */
static void copy_str(char *dst, size_t size, const char *src)
{
	if (!size)
		return;
	size_t n = strnlen(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = 0;
}

/* Run `tresor ARGS...` (this binary), wait for it, collect its stdout in
 * out and its last stderr line in err (its stderr also goes to ours,
 * prefixed with what).  Returns the exit code, or 128 + signal. */
static int run_child(struct daemon *d, const char *what, char *const argv[],
		     char *out, size_t outsize, char *err, size_t errsize)
{
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC))
		return -errno;
	if (pipe2(pe, O_CLOEXEC)) {
		close(po[0]);
		close(po[1]);
		return -errno;
	}
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(po[0]); close(po[1]); close(pe[0]); close(pe[1]);
		return -e;
	}
	if (pid == 0) {
		dup2(po[1], STDOUT_FILENO);
		dup2(pe[1], STDERR_FILENO);
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, STDIN_FILENO);
		/* Own process group: a Ctrl-C on the daemon's terminal stops
		 * the daemon, which lets the job finish. */
		setpgid(0, 0);
		child_signals();
		setenv("TRESOR_DAEMON_CHILD", "1", 1);
		setenv("TRESOR_PROGRESS", "0", 1);
		setenv("TRESOR_LOG_TIME", "0", 1);	/* our relay stamps its lines */
		execv(d->self, argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	size_t olen = 0;
	char ebuf[4096];
	size_t elen = 0;
	if (outsize)
		out[0] = 0;
	if (errsize)
		err[0] = 0;
	struct pollfd p[2] = { { .fd = po[0], .events = POLLIN }, { .fd = pe[0], .events = POLLIN } };
	int open_fds = 2;
	while (open_fds) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[4096];
			ssize_t r = read(p[i].fd, buf, sizeof(buf));
			if (r <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				open_fds--;
				continue;
			}
			if (i == 0) {
				size_t n = (size_t)r;
				if (outsize && olen + n > outsize - 1)
					n = outsize - 1 - olen;
				memcpy(out + olen, buf, n);
				olen += n;
				if (outsize)
					out[olen] = 0;
				continue;
			}
			/* stderr: whole lines to our log, the last one kept */
			for (ssize_t k = 0; k < r; k++) {
				if (elen < sizeof(ebuf) - 1)
					ebuf[elen++] = buf[k];
				if (buf[k] != '\n')
					continue;
				ebuf[elen - 1] = 0;
				const char *l = ebuf;
				if (!strncmp(l, "tresor: ", 8))
					l += 8;	/* the child's own prefix */
				if (*l) {
					char stamp[40];
					log_stamp(stamp, sizeof(stamp));
					fprintf(stderr, "%stresor: %s: %s\n", stamp, what, l);
					if (errsize)
						copy_str(err, errsize, l);
				}
				elen = 0;
			}
		}
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (elen && errsize) {
		ebuf[elen] = 0;
		copy_str(err, errsize, ebuf);
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* argv builder: fixed slots, then the passphrase file if any. */
struct args {
	char *v[40];
	int n;
};

static void arg(struct args *a, const char *s)
{
	if (a->n < 38)
		a->v[a->n++] = (char *)s;
	a->v[a->n] = NULL;
}

static void args_init(struct daemon *d, struct args *a)
{
	a->n = 0;
	arg(a, "tresor");
	(void)d;
}

static void args_pass(struct daemon *d, struct args *a)
{
	if (d->cfg.passphrase_file[0]) {
		arg(a, "--passphrase-file");
		arg(a, d->cfg.passphrase_file);
	}
}

/* ---- mounts ------------------------------------------------------- */

/* Is path a tresor FUSE mount right now? (/proc/self/mountinfo) */
static int is_mounted(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return 0;
	char line[8192];
	int found = 0;
	while (!found && fgets(line, sizeof(line), f)) {
		/* id parent maj:min root MOUNTPOINT opts ... - fstype source */
		char mp[4096], fstype[64];
		const char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 ||
		    sscanf(dash + 3, "%63s", fstype) != 1)
			continue;
		/* mountinfo escapes space, tab, newline and backslash as \ooo */
		char un[4096];
		size_t j = 0;
		for (size_t i = 0; mp[i] && j < sizeof(un) - 1; i++) {
			if (mp[i] == '\\' && mp[i + 1] >= '0' && mp[i + 1] <= '7' &&
			    mp[i + 2] && mp[i + 3]) {
				un[j++] = (char)((mp[i + 1] - '0') * 64 + (mp[i + 2] - '0') * 8 +
						 (mp[i + 3] - '0'));
				i += 3;
			} else {
				un[j++] = mp[i];
			}
		}
		un[j] = 0;
		found = !strcmp(un, path) && !strcmp(fstype, "fuse.tresor");
	}
	fclose(f);
	return found;
}

/* A tresor mount whose daemon died answers ENOTCONN: lazily unmount it. */
static void clear_stale_mount(const char *path)
{
	struct stat sb;
	if (stat(path, &sb) == 0 || errno != ENOTCONN)
		return;
	tlog(LOG_WARN, "daemon: %s is a dead mount; unmounting it", path);
	pid_t pid = fork();
	if (pid == 0) {
		child_signals();
		execlp("fusermount3", "fusermount3", "-u", "-z", path, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

static void mount_start(struct daemon *d, int i)
{
	struct config_volume *cv = &d->cfg.vol[i];
	struct mount_child *m = &d->mc[i];
	clear_stale_mount(cv->mountpoint);
	struct args a;
	args_init(d, &a);
	arg(&a, "mount");
	arg(&a, d->cfg.store);
	arg(&a, cv->name);
	arg(&a, cv->mountpoint);
	arg(&a, "-f");
	if (cv->options[0]) {
		arg(&a, "-o");
		arg(&a, cv->options);
	}
	args_pass(d, &a);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, STDIN_FILENO);
		setpgid(0, 0);
		/* If the daemon dies, the volume is unmounted cleanly rather
		 * than left served by nobody's child. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		child_signals();
		setenv("TRESOR_DAEMON_CHILD", "1", 1);
		execv(d->self, a.v);
		_exit(127);
	}
	if (pid < 0) {
		snprintf(m->last_error, sizeof(m->last_error), "cannot start: %s",
			 strerror(errno));
		return;
	}
	tlog(LOG_INFO, "daemon: volume %s: mounting on %s (pid %d)", cv->name,
	     cv->mountpoint, (int)pid);
	m->pid = pid;
	m->mounted = 0;
}

/* Seconds of the monotonic clock: restart backoff is real time, also
 * under a test clock. */
static time_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Reap mount children that ended; restart them with backoff; note which
 * are mounted.  (lock held; now from mono_now) */
static void mounts_supervise(struct daemon *d, time_t now)
{
	for (int i = 0; i < d->cfg.nvol; i++) {
		struct mount_child *m = &d->mc[i];
		if (m->pid) {
			int st;
			pid_t r = waitpid(m->pid, &st, WNOHANG);
			if (r == m->pid) {
				snprintf(m->last_error, sizeof(m->last_error),
					 "mount process ended (%s %d); restarting",
					 WIFEXITED(st) ? "exit" : "signal",
					 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
				tlog(LOG_ERR, "daemon: volume %s: %s", d->cfg.vol[i].name,
				     m->last_error);
				m->pid = 0;
				m->mounted = 0;
				int backoff = 1 << (m->restarts < 6 ? m->restarts : 6);
				m->next_start = now + backoff;
				m->restarts++;
			}
		}
		if (m->pid)
			m->mounted = is_mounted(d->cfg.vol[i].mountpoint);
		else if (!d->stopping && now >= m->next_start)
			mount_start(d, i);
	}
}

/* Wait (up to 60 s) until every volume is mounted or its child ended. */
static int mounts_wait(struct daemon *d)
{
	for (int t = 0; t < 600 && !stop_requested(d); t++) {
		int all = 1;
		pthread_mutex_lock(&d->lock);
		for (int i = 0; i < d->cfg.nvol; i++) {
			struct mount_child *m = &d->mc[i];
			if (m->pid && !m->mounted)
				m->mounted = is_mounted(d->cfg.vol[i].mountpoint);
			if (m->pid && !m->mounted) {
				int st;
				if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
					pthread_mutex_unlock(&d->lock);
					tlog(LOG_ERR, "daemon: volume %s could not be mounted on %s (see above)",
					     d->cfg.vol[i].name, d->cfg.vol[i].mountpoint);
					m->pid = 0;
					return -1;
				}
				all = 0;
			}
		}
		pthread_mutex_unlock(&d->lock);
		if (all)
			return 0;
		usleep(100000);
	}
	return d->stopping ? -1 : -ETIMEDOUT;
}

static void mounts_stop(struct daemon *d)
{
	for (int i = 0; i < d->cfg.nvol; i++)
		if (d->mc[i].pid)
			kill(d->mc[i].pid, SIGTERM);
	for (int i = 0; i < d->cfg.nvol; i++) {
		struct mount_child *m = &d->mc[i];
		if (!m->pid)
			continue;
		/* The FUSE daemon flushes, commits and unmounts on SIGTERM. */
		int st;
		for (int t = 0; t < 1200; t++) {
			if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
				m->pid = 0;
				break;
			}
			usleep(50000);
		}
		if (m->pid) {
			tlog(LOG_ERR, "daemon: volume %s: mount process %d did not stop in 60 s; killing it",
			     d->cfg.vol[i].name, (int)m->pid);
			kill(m->pid, SIGKILL);
			waitpid(m->pid, &st, 0);
			m->pid = 0;
			clear_stale_mount(d->cfg.vol[i].mountpoint);
		}
		m->mounted = 0;
		tlog(LOG_INFO, "daemon: volume %s unmounted", d->cfg.vol[i].name);
	}
}

/* ---- jobs ---------------------------------------------------------- */

static void iso_time(time_t t, char *buf, size_t size)
{
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%S%z", &tm);
}

/* Each job: 0 or a one-line error in err. */
static int job_snapshot(struct daemon *d, time_t now, char *err, size_t errsize)
{
	char when[64];
	iso_time(now, when, sizeof(when));
	int failed = 0;
	for (int i = 0; i < d->cfg.nvol; i++) {
		struct args a;
		args_init(d, &a);
		arg(&a, "snapshot");
		arg(&a, "create");
		arg(&a, d->cfg.store);
		arg(&a, d->cfg.vol[i].name);
		arg(&a, "--time");
		arg(&a, when);
		char out[256], e[400];
		int rc = run_child(d, "snapshot", a.v, out, sizeof(out), e, sizeof(e));
		if (rc) {
			if (!failed)
				snprintf(err, errsize, "snapshot of volume %s: %s",
					 d->cfg.vol[i].name, *e ? e : "failed");
			failed = 1;
		} else {
			out[strcspn(out, "\n")] = 0;
			tlog(LOG_INFO, "daemon: volume %s: snapshot %s", d->cfg.vol[i].name, out);
		}
	}
	return failed ? -1 : 0;
}

/* Room for prune's JSON: a few hundred snapshots' verdicts. */
#define PRUNE_OUT (256 * 1024)

/* Log the snapshots prune's JSON says were removed, by name: the log is
 * where one looks for where a snapshot went. */
static void prune_log(const char *vol, const char *js)
{
	char names[900] = "";
	size_t len = 0;
	int n = 0;
	for (const char *p = js; (p = strstr(p, "{\"name\":\"")); ) {
		p += 9;
		const char *q = p;
		while (*q && *q != '"')
			q += q[0] == '\\' && q[1] ? 2 : 1;
		if (strncmp(q, "\",\"keep\":false", 14)) {
			p = q;
			continue;
		}
		if (len < sizeof(names) - 1)
			len += snprintf(names + len, sizeof(names) - len, "%s%.*s", n ? ", " : "",
					(int)(q - p), p);
		n++;
		p = q;
	}
	if (len >= sizeof(names) - 1)
		snprintf(names + sizeof(names) - 5, 5, "...");
	if (n)
		tlog(LOG_INFO, "daemon: volume %s: prune removed %d snapshot(s): %s", vol, n, names);
	else
		tlog(LOG_INFO, "daemon: volume %s: prune removed no snapshot", vol);
}

static int job_prune(struct daemon *d, time_t now, char *err, size_t errsize)
{
	(void)now;
	const struct retention_policy *k = &d->cfg.keep;
	char nums[6][16], within[32];
	const char *flags[6] = { "--keep-last", "--keep-hourly", "--keep-daily",
				 "--keep-weekly", "--keep-monthly", "--keep-yearly" };
	const int vals[6] = { k->last, k->hourly, k->daily, k->weekly, k->monthly, k->yearly };
	int failed = 0;
	char *out = malloc(PRUNE_OUT);
	if (!out) {
		snprintf(err, errsize, "prune of %s: out of memory", d->cfg.store);
		return -1;
	}
	for (int i = 0; i < d->cfg.nvol; i++) {
		struct args a;
		args_init(d, &a);
		arg(&a, "prune");
		arg(&a, d->cfg.store);
		arg(&a, d->cfg.vol[i].name);
		for (int j = 0; j < 6; j++) {
			if (!vals[j])
				continue;
			snprintf(nums[j], sizeof(nums[j]), "%d", vals[j]);
			arg(&a, flags[j]);
			arg(&a, nums[j]);
		}
		if (k->within_ns) {
			/* whole hours: what retention_parse_duration reads back */
			snprintf(within, sizeof(within), "%lldh",
				 (long long)(k->within_ns / 3600000000000LL));
			arg(&a, "--keep-within");
			arg(&a, within);
		}
		arg(&a, "--json");
		args_pass(d, &a);
		char e[400];
		int rc = run_child(d, "prune", a.v, out, PRUNE_OUT, e, sizeof(e));
		if (rc) {
			if (!failed)
				snprintf(err, errsize, "prune of volume %s: %s",
					 d->cfg.vol[i].name, *e ? e : "failed");
			failed = 1;
		} else {
			prune_log(d->cfg.vol[i].name, out);
		}
	}
	free(out);
	return failed ? -1 : 0;
}

/* Note the push of req in its remote's state, and schedule its retry
 * (doubling backoff) as the log line says. */
static void push_noted(struct daemon *d, const struct push_req *req, int rc, const char *e)
{
	time_t now = daemon_now();
	/* A name the store has no remote for (a mistyped `tresor push`)
	 * has no health to keep and nothing to retry. */
	struct index *ix = daemon_index(d);
	struct remote_cfg known;
	int unknown = ix && remote_cfg_find(ix, req->name, &known) == -ENOENT;
	if (ix)
		index_close(ix);
	if (unknown)
		return;
	pthread_mutex_lock(&d->lock);
	struct remote_state *r = daemon_remote_state(d, req->name);
	if (!r) {
		pthread_mutex_unlock(&d->lock);
		tlog(LOG_WARN, "daemon: push to %s: more than %d remotes; its health is not kept",
		     req->name, DAEMON_MAX_REMOTES);
		return;
	}
	r->last_run = now;
	if (!rc) {
		r->last_ok = now;
		r->last_failed = 0;
		r->attempts = 0;
		r->last_error[0] = 0;
		pthread_mutex_unlock(&d->lock);
		return;
	}
	r->failures++;
	r->last_failed = 1;
	snprintf(r->last_error, sizeof(r->last_error), "%s", e);
	r->attempts++;
	if (r->attempts > d->cfg.retries) {
		tlog(LOG_ERR, "daemon: push to %s failed %d time(s), giving up until the next push: %s",
		     r->name, r->attempts, e);
		r->attempts = 0;
	} else {
		int64_t delay = d->cfg.retry_delay_s << (r->attempts - 1 < 20 ? r->attempts - 1 : 20);
		r->next_retry = now + delay;
		r->retry = *req;
		tlog(LOG_WARN, "daemon: push to %s failed (attempt %d of %d), retrying in %llds: %s",
		     r->name, r->attempts, d->cfg.retries + 1, (long long)delay, e);
	}
	pthread_mutex_unlock(&d->lock);
}

/* The remotes to push to: those a `tresor push` asked for, else those of
 * the config, else every one configured in the store.  Each push runs in
 * a child process of its own: a crash or hang of one is isolated. */
static int job_push(struct daemon *d, time_t now, char *err, size_t errsize)
{
	(void)now;
	struct push_req reqs[CONFIG_MAX_REMOTES * 2];
	memset(reqs, 0, sizeof(reqs));
	int n = 0;
	for (int i = 0; i < d->npush_only; i++)
		reqs[n++] = d->push_only[i];
	for (int i = 0; i < d->cfg.nrem && !d->npush_only; i++)
		snprintf(reqs[n++].name, sizeof(reqs[0].name), "%s", d->cfg.rem[i].name);
	if (!n) {
		struct index *ix = daemon_index(d);
		struct remote_cfg *cs = NULL;
		size_t nc = 0;
		int lerr = ix ? remote_cfg_list(ix, &cs, &nc) : -EIO;
		index_close(ix);
		if (lerr) {
			snprintf(err, errsize, "cannot list the remotes of %s: %s", d->cfg.store,
				 strerror(-lerr));
			return -1;
		}
		for (size_t i = 0; i < nc && n < CONFIG_MAX_REMOTES * 2; i++)
			snprintf(reqs[n++].name, sizeof(reqs[0].name), "%s", cs[i].name);
		free(cs);
	}
	int failed = 0;
	char json[1024] = "";
	for (int i = 0; i < n; i++) {
		struct args a;
		args_init(d, &a);
		arg(&a, "push");
		arg(&a, d->cfg.store);
		arg(&a, reqs[i].name);
		arg(&a, "--json");
		/* What the request asked for, else the config's. */
		char jobs[16];
		snprintf(jobs, sizeof(jobs), "%d", d->cfg.push_jobs);
		const char *j = reqs[i].jobs[0] ? reqs[i].jobs : d->cfg.push_jobs ? jobs : NULL;
		const char *lim = reqs[i].limit_upload[0] ? reqs[i].limit_upload :
				  d->cfg.push_limit_upload[0] ? d->cfg.push_limit_upload : NULL;
		if (j) {
			arg(&a, "--jobs");
			arg(&a, j);
		}
		if (lim) {
			arg(&a, "--limit-upload");
			arg(&a, lim);
		}
		if (reqs[i].grace[0]) {
			arg(&a, "--grace");
			arg(&a, reqs[i].grace);
		}
		args_pass(d, &a);
		tlog(LOG_INFO, "daemon: push to %s%s%s%s%s", reqs[i].name,
		     j ? " --jobs " : "", j ? j : "", lim ? " --limit-upload " : "",
		     lim ? lim : "");
		char out[1024], e[400];
		int rc = run_child(d, "push", a.v, out, sizeof(out), e, sizeof(e));
		if (rc) {
			if (!failed)
				snprintf(err, errsize, "push to %s: %s", reqs[i].name,
					 *e ? e : "failed");
			failed = 1;
		} else {
			out[strcspn(out, "\n")] = 0;
			snprintf(json, sizeof(json), "%s", out);
		}
		push_noted(d, &reqs[i], rc, *e ? e : "failed");
	}
	pthread_mutex_lock(&d->lock);
	snprintf(d->push_json, sizeof(d->push_json), "%s", json);
	pthread_mutex_unlock(&d->lock);
	return failed ? -1 : 0;
}

static int job_check(struct daemon *d, time_t now, char *err, size_t errsize)
{
	(void)now;
	struct args a;
	args_init(d, &a);
	arg(&a, "check");
	arg(&a, d->cfg.store);
	char rd[32];
	if (d->cfg.check_read_data == 100) {
		arg(&a, "--read-data");
	} else if (d->cfg.check_read_data) {
		snprintf(rd, sizeof(rd), "--read-data=%d%%", d->cfg.check_read_data);
		arg(&a, rd);
	}
	arg(&a, "--json");
	args_pass(d, &a);
	char out[1024], e[400];
	int rc = run_child(d, "check", a.v, out, sizeof(out), e, sizeof(e));
	if (!rc)
		return 0;
	if (rc == 1 && strstr(out, "\"problems\":"))
		snprintf(err, errsize, "check of %s found problems: %s", d->cfg.store,
			 *e ? e : out);
	else
		snprintf(err, errsize, "check of %s: %s", d->cfg.store, *e ? e : "failed");
	return -1;
}

typedef int (*job_fn)(struct daemon *, time_t, char *, size_t);
static const job_fn job_fns[JOB_COUNT] = { job_snapshot, job_prune, job_push, job_check };

/* The push job's attempts and next retry, for status: the longest
 * retry series of its remotes and the soonest retry (lock held). */
static void push_retry_summary(struct daemon *d)
{
	struct job_state *s = &d->job[JOB_PUSH];
	s->attempts = 0;
	for (int i = 0; i < d->nrem; i++) {
		const struct remote_state *r = &d->rem[i];
		if (!r->attempts)
			continue;
		if (!s->attempts || r->next_retry < s->next_retry)
			s->next_retry = r->next_retry;
		if (r->attempts > s->attempts)
			s->attempts = r->attempts;
	}
}

/* Run job j for slot; note the result (and its retry) in the state. */
static int run_job(struct daemon *d, enum job_kind j, time_t slot)
{
	struct job_state *s = &d->job[j];
	time_t start = daemon_now();
	pthread_mutex_lock(&d->lock);
	s->running = 1;
	pthread_mutex_unlock(&d->lock);
	tlog(LOG_INFO, "daemon: %s: starting", job_names[j]);
	char err[400] = "";
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = job_fns[j](d, start, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	time_t end = daemon_now();
	pthread_mutex_lock(&d->lock);
	s->running = 0;
	s->last_duration = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	s->runs++;
	s->last_run = end;
	struct history *h = &d->hist[d->nhist % HISTORY_MAX];
	*h = (struct history){ .job = j, .slot = slot, .start = start, .end = end, .ok = !rc };
	d->nhist++;
	if (!rc) {
		s->last_ok = end;
		s->last_failed = 0;
		s->attempts = 0;
		s->last_slot = slot;
		tlog(LOG_INFO, "daemon: %s: done", job_names[j]);
	} else if (j == JOB_PUSH) {
		/* The slot is handled: each failed remote is retried by
		 * itself (push_noted said when). */
		s->failures++;
		s->last_failed = 1;
		snprintf(s->last_error, sizeof(s->last_error), "%s", err);
		s->last_slot = slot;
		tlog(LOG_WARN, "daemon: push: failed: %s", err);
	} else {
		s->failures++;
		s->last_failed = 1;
		snprintf(s->last_error, sizeof(s->last_error), "%s", err);
		s->attempts++;
		if (s->attempts > d->cfg.retries) {
			tlog(LOG_ERR, "daemon: %s failed %d time(s), giving up until its next run: %s",
			     job_names[j], s->attempts, err);
			s->attempts = 0;
			s->last_slot = slot;
		} else {
			int64_t delay = d->cfg.retry_delay_s << (s->attempts - 1 < 20 ? s->attempts - 1 : 20);
			s->next_retry = end + delay;
			tlog(LOG_WARN, "daemon: %s failed (attempt %d of %d), retrying in %llds: %s",
			     job_names[j], s->attempts, d->cfg.retries + 1, (long long)delay, err);
		}
	}
	if (j == JOB_PUSH)
		push_retry_summary(d);
	state_save(d);
	pthread_mutex_unlock(&d->lock);
	if (d->cfg.metrics_textfile[0])
		metrics_write_textfile(d);
	return rc;
}

/* The slot of j due now, or 0. */
static time_t due(struct daemon *d, enum job_kind j, const struct schedule *sc, time_t now)
{
	time_t slot = schedule_latest(sc, now);
	struct job_state *s = &d->job[j];
	if (!slot || slot <= s->last_slot)
		return 0;
	/* (push retries go remote by remote: push_retries) */
	if (j != JOB_PUSH && s->attempts && now < s->next_retry)
		return 0;
	return slot;
}

/* Pushes that failed and are due for their retry, each remote with the
 * request that failed (a scheduled push or one `tresor push` asked for). */
static void push_retries(struct daemon *d)
{
	time_t now = daemon_now();
	int n = 0;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < d->nrem; i++)
		if (d->rem[i].attempts && now >= d->rem[i].next_retry)
			d->push_only[n++] = d->rem[i].retry;
	pthread_mutex_unlock(&d->lock);
	if (!n)
		return;
	d->npush_only = n;
	run_job(d, JOB_PUSH, d->job[JOB_PUSH].last_slot);
	d->npush_only = 0;
}

/* One pass: every due job, in order snapshot, prune, push, check. */
static void run_due(struct daemon *d)
{
	time_t now = daemon_now();
	time_t slot = due(d, JOB_SNAPSHOT, &d->cfg.snapshot, now);
	if (slot && !stop_requested(d)) {
		int rc = run_job(d, JOB_SNAPSHOT, slot);
		/* Prune follows each snapshot run that worked. */
		if (!rc && !stop_requested(d))
			run_job(d, JOB_PRUNE, slot);
	} else if (!slot && d->job[JOB_PRUNE].attempts && !stop_requested(d) &&
		   now >= d->job[JOB_PRUNE].next_retry) {
		run_job(d, JOB_PRUNE, d->job[JOB_PRUNE].last_slot);
	}
	slot = due(d, JOB_PUSH, &d->cfg.push, daemon_now());
	if (slot && !stop_requested(d))
		run_job(d, JOB_PUSH, slot);
	/* Pushes asked for by `tresor push`: counted as runs of the job,
	 * but not as a schedule slot. */
	pthread_mutex_lock(&d->lock);
	d->npush_only = d->npush_want;
	memcpy(d->push_only, d->push_want, sizeof(d->push_want));
	d->npush_want = 0;
	pthread_mutex_unlock(&d->lock);
	if (d->npush_only && !stop_requested(d)) {
		int rc = run_job(d, JOB_PUSH, d->job[JOB_PUSH].last_slot);
		d->npush_only = 0;
		pthread_mutex_lock(&d->lock);
		d->push_result = rc;
		d->push_generation++;
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
	}
	if (!stop_requested(d))
		push_retries(d);
	slot = due(d, JOB_CHECK, &d->cfg.check, daemon_now());
	if (slot && !stop_requested(d))
		run_job(d, JOB_CHECK, slot);
}

/* ---- start-up -------------------------------------------------------- */

/* Everything that can be checked before anything starts (dry: change
 * nothing, only say what would be done). */
static void preflight(struct daemon *d, int dry)
{
	struct config *c = &d->cfg;
	if (!realpath(c->store, d->store_real))
		die(1, "%s: store %s: %s", d->cfg_path, c->store, strerror(errno));
	struct index *ix = open_index(c->store);
	for (int i = 0; i < c->nvol; i++) {
		struct volume_info vi;
		if (ns_volume_find(ix, c->vol[i].name, &vi))
			die(1, "%s:%d: store %s has no volume '%s' (create it with 'tresor volume create %s %s')",
			    d->cfg_path, c->vol[i].line, c->store, c->vol[i].name, c->store,
			    c->vol[i].name);
		struct stat sb;
		int r = stat(c->vol[i].mountpoint, &sb);
		if (r && errno != ENOTCONN)
			die(1, "%s:%d: volume %s: mountpoint %s: %s", d->cfg_path,
			    c->vol[i].line, c->vol[i].name, c->vol[i].mountpoint, strerror(errno));
		if (!r && !S_ISDIR(sb.st_mode))
			die(1, "%s:%d: volume %s: mountpoint %s is not a directory", d->cfg_path,
			    c->vol[i].line, c->vol[i].name, c->vol[i].mountpoint);
		/* A dead tresor mount (its process was killed) is cleared at
		 * mount time; a live one belongs to someone else. */
		if (!r && is_mounted(c->vol[i].mountpoint))
			die(1, "%s:%d: volume %s: %s is already mounted; unmount it first",
			    d->cfg_path, c->vol[i].line, c->vol[i].name, c->vol[i].mountpoint);
	}
	index_close(ix);
	struct stat ps;
	if (c->passphrase_file[0] && (access(c->passphrase_file, R_OK) ||
				      stat(c->passphrase_file, &ps)))
		die(1, "%s: cannot read passphrase file %s: %s", d->cfg_path,
		    c->passphrase_file, strerror(errno));
	if (c->passphrase_file[0] && (ps.st_mode & 077))
		die(1, "%s: passphrase file %s may be read by others (mode %04o); chmod 600 %s",
		    d->cfg_path, c->passphrase_file, (unsigned)(ps.st_mode & 07777),
		    c->passphrase_file);
	if (!c->passphrase_file[0] && !getenv("TRESOR_PASSPHRASE"))
		die(1, "%s: no passphrase-file in [tresor] and no TRESOR_PASSPHRASE", d->cfg_path);
	/* From here on the daemon acts, and every line of its log is timed,
	 * its children's too (before any thread starts); a config or store
	 * refused above reads as any command's error. */
	if (!dry)
		setenv("TRESOR_LOG_TIME", "1", 1);
	/* Remotes named with a URL and not yet in the store: add them. */
	for (int i = 0; i < c->nrem; i++) {
		struct config_remote *r = &c->rem[i];
		ix = open_index(c->store);
		struct remote_cfg rc;
		int known = !remote_cfg_find(ix, r->name, &rc);
		/* The same repository under another name (a config written
		 * before a recovery named it 'origin') is that remote: a
		 * second one would fetch and number everything again. */
		struct remote_cfg *rs = NULL;
		size_t nr = 0;
		if (!known && r->url[0] && !remote_cfg_list(ix, &rs, &nr))
			for (size_t k = 0; k < nr && !known; k++)
				if (remote_url_same(rs[k].url, r->url)) {
					tlog(LOG_INFO, "daemon: [remote %s] is the store's remote '%s' (same URL %s): it is used under that name",
					     r->name, rs[k].name, rs[k].url);
					snprintf(r->name, sizeof(r->name), "%s", rs[k].name);
					known = 1;
				}
		free(rs);
		index_close(ix);
		if (known)
			continue;
		if (!r->url[0])
			die(1, "%s:%d: [remote %s] has no url and the store %s has no such remote",
			    d->cfg_path, r->line, r->name, c->store);
		if (dry) {
			printf("would add remote %s (%s) to %s\n", r->name, r->url, c->store);
			continue;
		}
		struct args a;
		args_init(d, &a);
		arg(&a, "remote");
		arg(&a, "add");
		arg(&a, c->store);
		arg(&a, r->name);
		arg(&a, r->url);
		const char *fl[] = { "--endpoint", "--region", "--ca-file", "--credentials-file",
				     "--ssh-key", "--known-hosts", "--netrc" };
		const char *vals[] = { r->endpoint, r->region, r->ca_file, r->credentials_file,
				       r->ssh_key, r->known_hosts, r->netrc };
		for (int k = 0; k < 7; k++)
			if (vals[k][0]) {
				arg(&a, fl[k]);
				arg(&a, vals[k]);
			}
		if (r->path_style)
			arg(&a, r->path_style > 0 ? "--path-style" : "--virtual-hosted");
		char out[512], e[400];
		if (run_child(d, "remote add", a.v, out, sizeof(out), e, sizeof(e)))
			die(1, "%s:%d: [remote %s]: %s", d->cfg_path, r->line, r->name, e);
		tlog(LOG_INFO, "daemon: added remote %s (%s) to %s", r->name, r->url, c->store);
	}
}

int cmd_daemon(struct opts *o)
{
	if (o->npos != 1)
		die(EXIT_USAGE, "usage: tresor daemon CONFIG");
	static struct daemon dd;
	struct daemon *d = &dd;
	memset(d, 0, sizeof(*d));
	d->ctl.fd = d->http.fd = -1;
	d->cfg_path = o->pos[0];
	char err[600];
	if (config_load(d->cfg_path, &d->cfg, err, sizeof(err)))
		die(EXIT_USAGE, "%s; nothing started", err);
	if (o->passfile)
		snprintf(d->cfg.passphrase_file, sizeof(d->cfg.passphrase_file), "%s", o->passfile);
	ssize_t n = readlink("/proc/self/exe", d->self, sizeof(d->self) - 1);
	if (n <= 0)
		die(1, "cannot find the tresor binary (/proc/self/exe)");
	d->self[n] = 0;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->stats_lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	if (pipe2(d->wake, O_CLOEXEC | O_NONBLOCK))
		die(1, "pipe: %s", strerror(errno));
	sigset_t stopsigs;
	sigemptyset(&stopsigs);
	sigaddset(&stopsigs, SIGTERM);
	sigaddset(&stopsigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stopsigs, NULL);
	d->sigfd = signalfd(-1, &stopsigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d->sigfd < 0)
		die(1, "signalfd: %s", strerror(errno));
	preflight(d, o->dry_run);
	if (o->dry_run) {
		/* --dry-run: the config and the store are fine; say what would run. */
		time_t now = daemon_now();
		const struct schedule *sc[] = { &d->cfg.snapshot, &d->cfg.push, &d->cfg.check };
		const char *names[] = { "snapshot", "push", "check" };
		printf("%s: ok: store %s, %d volume(s), %d remote(s) named\n", d->cfg_path,
		       d->cfg.store, d->cfg.nvol, d->cfg.nrem);
		for (int i = 0; i < d->cfg.nvol; i++)
			printf("volume %s on %s%s%s\n", d->cfg.vol[i].name, d->cfg.vol[i].mountpoint,
			       d->cfg.vol[i].options[0] ? " -o " : "", d->cfg.vol[i].options);
		for (int i = 0; i < 3; i++) {
			char when[64] = "never", what[64];
			time_t next = schedule_next(sc[i], now);
			if (next)
				iso_time(next, when, sizeof(when));
			schedule_format(sc[i], what, sizeof(what));
			printf("%s: %s, next %s\n", names[i], what, when);
		}
		return 0;
	}

	/* One daemon per state file. */
	char lockpath[CONFIG_PATH + 8];
	if (snprintf(lockpath, sizeof(lockpath), "%s.lock", d->cfg.state_file) >=
	    (int)sizeof(lockpath))
		die(1, "%s: state-file path too long", d->cfg_path);
	int lfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0)
		die(1, "%s: cannot open %s: %s", d->cfg_path, lockpath, strerror(errno));
	if (flock(lfd, LOCK_EX | LOCK_NB))
		die(1, "%s: another tresor daemon runs with state file %s",
		    d->cfg_path, d->cfg.state_file);
	int found;
	state_load(d, &found);
	d->started = daemon_now();
	if (!found) {
		/* First start: no history to catch up on. */
		d->job[JOB_SNAPSHOT].last_slot = schedule_latest(&d->cfg.snapshot, d->started);
		d->job[JOB_PRUNE].last_slot = d->job[JOB_SNAPSHOT].last_slot;
		d->job[JOB_PUSH].last_slot = schedule_latest(&d->cfg.push, d->started);
		d->job[JOB_CHECK].last_slot = schedule_latest(&d->cfg.check, d->started);
		state_save(d);
	}
	int cerr = ctl_start(d);
	if (cerr == -EADDRINUSE)
		die(1, "%s: another tresor daemon serves store %s", d->cfg_path, d->cfg.store);
	if (cerr)
		die(1, "%s: cannot start the control socket: %s", d->cfg_path, strerror(-cerr));

	signal(SIGPIPE, SIG_IGN);
	/* The metrics address before any mount: a taken port starts nothing. */
	if (d->cfg.metrics_listen[0]) {
		int e = metrics_start(d);
		if (e) {
			ctl_stop(d);
			die(1, "%s: cannot listen on metrics-listen %s: %s; nothing started",
			    d->cfg_path, d->cfg.metrics_listen, strerror(-e));
		}
	}
	pthread_mutex_lock(&d->lock);
	mounts_supervise(d, mono_now());
	pthread_mutex_unlock(&d->lock);
	int merr = mounts_wait(d);
	if (merr) {
		int asked = d->stopping;	/* a signal, not a failure */
		d->stopping = 1;
		mounts_stop(d);
		if (d->cfg.metrics_listen[0])
			metrics_stop(d);
		ctl_stop(d);
		if (asked)
			return 0;
		die(1, "%s: not every volume could be mounted%s; nothing started", d->cfg_path,
		    merr == -ETIMEDOUT ? " within 60 s" : "");
	}
	sd_notify_msg("READY=1\nSTATUS=volumes mounted, schedule running");
	tlog(LOG_INFO, "daemon: ready: %d volume(s) mounted, store %s", d->cfg.nvol, d->cfg.store);
	int tick_ms = getenv("TRESOR_TEST_CLOCK") ? 200 : 1000;
	time_t last_textfile = 0;
	while (!d->stopping) {
		run_due(d);
		pthread_mutex_lock(&d->lock);
		mounts_supervise(d, mono_now());
		pthread_mutex_unlock(&d->lock);
		if (d->cfg.metrics_textfile[0] && time(NULL) - last_textfile >= 60) {
			metrics_write_textfile(d);
			last_textfile = time(NULL);
		}
		struct pollfd p[2] = { { .fd = d->wake[0], .events = POLLIN },
				       { .fd = d->sigfd, .events = POLLIN } };
		if (poll(p, 2, tick_ms) > 0) {
			char b[64];
			while (read(d->wake[0], b, sizeof(b)) > 0)
				;
		}
		stop_requested(d);
	}
	sd_notify_msg("STOPPING=1");
	tlog(LOG_INFO, "daemon: stopping: unmounting %d volume(s)", d->cfg.nvol);
	pthread_mutex_lock(&d->lock);
	d->push_generation++;	/* waiting `tresor push` clients: no push */
	d->push_result = -1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (d->cfg.metrics_listen[0])
		metrics_stop(d);
	mounts_stop(d);
	ctl_stop(d);
	pthread_mutex_lock(&d->lock);
	state_save(d);
	pthread_mutex_unlock(&d->lock);
	tlog(LOG_INFO, "daemon: stopped");
	close(lfd);
	return 0;
}
