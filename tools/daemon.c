/*
 * daemon.c - `tresor daemon CONFIG`: check the config and the store, mount
 * the volumes and keep them mounted, run the job thread's loop (the jobs
 * themselves are daemon_jobs.c), stop cleanly.
 *
 * A slot of a schedule is handled once: done, or given up after
 * cfg.retries retries with doubling backoff.  The last slot handled per
 * job is kept in the state file, so a slot missed while the host was down
 * is run once at start (only the latest one: three missed days give one
 * snapshot, not three).  On the very first start there is no history and
 * nothing is caught up.  SIGTERM/SIGINT: the running job finishes, then
 * the volumes are unmounted.  SIGHUP: after the running job, the config
 * is read again and applied (daemon_reload.c), checked first by the
 * same daemon_config_check as a start.
 */
#include <dirent.h>
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

#include <curl/curl.h>

#include "../remote/repo.h"
#include "../chunker/util.h"
#include "../fs/vfs.h"
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


/* systemd's notify protocol: one datagram to $NOTIFY_SOCKET, with a
 * descriptor for the fd store (fd >= 0).  0, or -errno (none: -ENOENT). */
int daemon_sd_notify(const char *msg, int fd)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENOENT;
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	memcpy(un.sun_path, path, strlen(path));
	if (path[0] == '@')
		un.sun_path[0] = 0;
	socklen_t len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	int err = connect(s, (struct sockaddr *)&un, len) ? -errno
							  : keeper_send(s, fd, msg, strlen(msg));
	if (err)
		tlog(LOG_WARN, "daemon: sd_notify to %s: %s", path, strerror(-err));
	close(s);
	return err;
}

/* SIGTERM, SIGINT and SIGHUP are blocked in every thread and read from a
 * signalfd here, between jobs: a job that runs is never interrupted.
 * SIGHUP only notes a reload, which the loop makes after the jobs due. */
int daemon_stop_requested(struct daemon *d)
{
	struct signalfd_siginfo si;
	while (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			if (!d->reload_pending)
				tlog(LOG_INFO, "daemon: SIGHUP: reloading %s (between jobs)",
				     d->cfg_path);
			d->reload_pending = 1;
			continue;
		}
		if (si.ssi_signo == SIGUSR2) {
			tlog(LOG_INFO, "daemon: SIGUSR2: restarting %s after the running job; the volumes stay mounted",
			     d->self);
			if (d->restart_pending != 2)
				d->restart_pending = 1;
			continue;
		}
		tlog(LOG_INFO, "daemon: signal %u: stopping after the running job", si.ssi_signo);
		d->stopping = 1;
	}
	return d->stopping;
}

/* ---- state file ---------------------------------------------------- */

static void state_load_remote(struct daemon *d, const char *name, const char *key,
			      const char *val)
{
	struct remote_state *r = jobs_remote_state(d, name);
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

static void state_load_set(struct daemon *d, const char *name, const char *key,
			   const char *val)
{
	for (int i = 0; i < d->cfg.nset; i++) {
		if (strcmp(d->cfg.set[i].name, name))
			continue;
		struct set_job *s = &d->set_job[i];
		long long v = atoll(val);
		if (!strcmp(key, "last_slot")) {
			s->last_slot = v;
			s->slot_known = 1;
		} else if (!strcmp(key, "last_run")) {
			s->last_run = v;
		} else if (!strcmp(key, "last_ok")) {
			s->last_ok = v;
		} else if (!strcmp(key, "runs")) {
			s->runs = v;
		} else if (!strcmp(key, "failures")) {
			s->failures = v;
		} else if (!strcmp(key, "last_failed")) {
			s->last_failed = (int)v;
		} else if (!strcmp(key, "last_error")) {
			snprintf(s->last_error, sizeof(s->last_error), "%s", val);
		}
	}
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
		/* set.KEY.NAME=VALUE: a snapshot set with its own schedule */
		if (sscanf(line, "set.%31[a-z_].%63[^=]=%n", key, name, &off) == 2 && off) {
			state_load_set(d, name, key, line + off);
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
void daemon_state_save(struct daemon *d)
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
	/* Who runs, and how its last reload went: `tresor daemon reload`
	 * signals this pid and waits for the generation to move. */
	fprintf(f, "daemon.pid=%d\ndaemon.ready=%lld\nreload.generation=%llu\nreload.ok=%d\nreload.message=%s\n",
		(int)getpid(), d->ready_ns, (unsigned long long)d->reload_generation,
		d->reload_ok, d->reload_message);
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
	for (int i = 0; i < d->cfg.nset; i++) {
		const struct set_job *s = &d->set_job[i];
		const char *n = d->cfg.set[i].name;
		if (!d->cfg.set[i].own_schedule)
			continue;
		fprintf(f, "set.last_slot.%s=%lld\nset.last_run.%s=%lld\nset.last_ok.%s=%lld\n"
			"set.runs.%s=%llu\nset.failures.%s=%llu\nset.last_failed.%s=%d\n"
			"set.last_error.%s=%s\n", n, (long long)s->last_slot, n,
			(long long)s->last_run, n, (long long)s->last_ok, n,
			(unsigned long long)s->runs, n, (unsigned long long)s->failures, n,
			s->last_failed, n, s->last_error);
	}
	int err = fflush(f) || fsync(fileno(f));
	err |= fclose(f);
	if (err || rename(tmp, d->cfg.state_file))
		tlog(LOG_ERR, "daemon: cannot write state file %s: %s", d->cfg.state_file,
		     strerror(errno));
}

/* ---- mounts ------------------------------------------------------- */

/* Is path (absolute, as in the config) a tresor FUSE mount right now?
 * Never a stat(): a kept mount answers nobody until its child runs. */
static int is_mounted(const char *path)
{
	return vfs_mounted_at_path(path, NULL, 0);
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
		jobs_child_signals();
		execlp("fusermount3", "fusermount3", "-u", "-z", path, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* Seconds of the monotonic clock: restart backoff is real time, also
 * under a test clock. */
static time_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

void daemon_mount_start(struct daemon *d, int i)
{
	struct config_volume *cv = &d->cfg.vol[i];
	struct mount_child *m = &d->mc[i];
	/* A kept connection is handed to the child; else the child sends
	 * its connection back on a socket once mounted (keeper.h).  (A kept
	 * mount is not stat()ed: nobody answers it until the child runs.) */
	int sv[2] = { -1, -1 };
	char hex[2 * KEEPER_INIT_MAX + 1] = "";
	if (m->held) {
		m->conn.gen = m->conn.gen % 65535 + 1;
		hex_encode(m->conn.init, m->conn.init_len, hex);
		daemon_fdstore_save(d);	/* the next daemon goes on from gen */
	} else {
		clear_stale_mount(cv->mountpoint);
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
			sv[0] = sv[1] = -1;
	}
	struct jobs_args a;
	jobs_args_init(d, &a);
	jobs_arg(&a, "mount");
	jobs_arg(&a, d->cfg.store);
	jobs_arg(&a, cv->name);
	jobs_arg(&a, cv->mountpoint);
	jobs_arg(&a, "-f");
	if (cv->options[0]) {
		jobs_arg(&a, "-o");
		jobs_arg(&a, cv->options);
	}
	jobs_args_pass(d, &a);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, STDIN_FILENO);
		setpgid(0, 0);
		/* If the daemon dies, the volume is unmounted cleanly rather
		 * than left served by nobody's child; with systemd's fd store
		 * holding the connection, the child leaves the mount to the
		 * next daemon instead (SIGUSR2). */
		prctl(PR_SET_PDEATHSIG, d->fdstore ? SIGUSR2 : SIGTERM);
		if (getppid() != parent)
			_exit(1);
		jobs_child_signals();
		setenv("TRESOR_DAEMON_CHILD", "1", 1);
		char num[32];
		if (m->held) {
			fcntl(m->conn.fd, F_SETFD, 0);
			snprintf(num, sizeof(num), "%d", m->conn.fd);
			setenv("TRESOR_FUSE_FD", num, 1);
			setenv("TRESOR_FUSE_INIT", hex, 1);
			snprintf(num, sizeof(num), "%u", m->conn.gen);
			setenv("TRESOR_FUSE_GEN", num, 1);
			if (m->conn.crashed)
				setenv("TRESOR_FUSE_CRASHED", "1", 1);
		} else if (sv[1] >= 0) {
			fcntl(sv[1], F_SETFD, 0);
			snprintf(num, sizeof(num), "%d", sv[1]);
			setenv("TRESOR_KEEPER_FD", num, 1);
		}
		execv(d->self, a.v);
		_exit(127);
	}
	if (sv[1] >= 0)
		close(sv[1]);
	if (sv[0] >= 0 && pid > 0) {
		m->keeper = sv[0];
		m->keeper_open = 1;
	} else if (sv[0] >= 0) {
		close(sv[0]);
	}
	if (pid < 0) {
		snprintf(m->last_error, sizeof(m->last_error), "cannot start: %s",
			 strerror(errno));
		return;
	}
	tlog(LOG_INFO, "daemon: volume %s: %s on %s (pid %d)", cv->name,
	     m->held ? "serving its mount again" : "mounting", cv->mountpoint, (int)pid);
	m->pid = pid;
	m->mounted = 0;
	m->started_at = mono_now();
}


/* Reap mount children that ended; restart them with backoff; note which
 * are mounted.  (lock held) */
void daemon_mounts_supervise(struct daemon *d)
{
	time_t now = mono_now();
	for (int i = 0; i < d->cfg.nvol; i++) {
		struct mount_child *m = &d->mc[i];
		daemon_keep_recv(d, i);
		if (m->pid) {
			int st;
			pid_t r = waitpid(m->pid, &st, WNOHANG);
			if (r == m->pid) {
				daemon_keep_recv(d, i);	/* sent just before it ended */
				/* Kept and still mounted: the next process serves
				 * the same mount, at once (readers wait meanwhile).
				 * Three quick ends in a row: the connection itself
				 * may be what fails, so it goes, and the volume is
				 * mounted anew with the backoff. */
				if (now - m->started_at > 60)
					m->streak = 0;
				int keep = m->held && m->streak < 3 &&
					   is_mounted(d->cfg.vol[i].mountpoint);
				/* Not a SIGUSR2 exit: writes may be lost (its
				 * successor's flush and fsync say so). */
				m->conn.crashed = 1;
				m->streak++;
				if (m->held && !keep)
					daemon_keep_drop(d, i);
				snprintf(m->last_error, sizeof(m->last_error),
					 "mount process ended (%s %d); restarting%s",
					 WIFEXITED(st) ? "exit" : "signal",
					 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
					 keep ? ", the mount kept" : "");
				tlog(LOG_ERR, "daemon: volume %s: %s", d->cfg.vol[i].name,
				     m->last_error);
				m->pid = 0;
				m->mounted = 0;
				int backoff = 1 << (m->restarts < 6 ? m->restarts : 6);
				m->next_start = keep ? now : now + backoff;
				m->restarts++;
			}
		}
		if (m->pid)
			m->mounted = is_mounted(d->cfg.vol[i].mountpoint);
		else if (!d->stopping && now >= m->next_start)
			daemon_mount_start(d, i);
	}
}

/* Wait (up to 60 s) until every volume is mounted or its child ended. */
static int mounts_wait(struct daemon *d)
{
	for (int t = 0; t < 600 && !daemon_stop_requested(d); t++) {
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

/* Wait for the mount child of volume i, sent SIGTERM, to end (up to 60 s,
 * then SIGKILL and a lazy unmount); its pid is cleared under the lock. */
static void mount_reap(struct daemon *d, int i, int keep);

void daemon_mount_reap(struct daemon *d, int i)
{
	mount_reap(d, i, 0);
}

/* daemon_mount_reap; keep: the child was sent SIGUSR2 and leaves its
 * mount, whose connection the daemon keeps for its next image. */
static void mount_reap(struct daemon *d, int i, int keep)
{
	struct mount_child *m = &d->mc[i];
	if (!m->pid) {
		if (!keep)
			daemon_keep_drop(d, i);
		return;
	}
	/* The FUSE daemon flushes, commits and unmounts on SIGTERM. */
	int st, ended = 0;
	for (int t = 0; t < 1200 && !ended; t++) {
		ended = waitpid(m->pid, &st, WNOHANG) == m->pid;
		if (!ended)
			usleep(50000);
	}
	if (!ended) {
		tlog(LOG_ERR, "daemon: volume %s: mount process %d did not stop in 60 s; killing it",
		     d->cfg.vol[i].name, (int)m->pid);
		kill(m->pid, SIGKILL);
		waitpid(m->pid, &st, 0);
		keep = 0;
		daemon_keep_drop(d, i);
		clear_stale_mount(d->cfg.vol[i].mountpoint);
	}
	pthread_mutex_lock(&d->lock);
	daemon_keep_recv(d, i);
	if (!keep)
		daemon_keep_drop(d, i);
	m->pid = 0;
	m->mounted = 0;
	pthread_mutex_unlock(&d->lock);
	tlog(LOG_INFO, "daemon: volume %s %s", d->cfg.vol[i].name,
	     keep ? "left mounted for the next daemon" : "unmounted");
}

/* keep: SIGUSR2, the mounts left for the next image (restart). */
static void mounts_stop(struct daemon *d, int keep)
{
	for (int i = 0; i < d->cfg.nvol; i++)
		if (d->mc[i].pid)
			kill(d->mc[i].pid, keep && d->mc[i].held ? SIGUSR2 : SIGTERM);
	for (int i = 0; i < d->cfg.nvol; i++)
		mount_reap(d, i, keep && d->mc[i].held);
}


/* ---- start-up -------------------------------------------------------- */

/* 1 if dir holds an entry besides . and .. */
static int dir_has_files(const char *dir)
{
	DIR *dd = opendir(dir);
	if (!dd)
		return 0;
	struct dirent *e;
	int any = 0;
	while (!any && (e = readdir(dd)))
		any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(dd);
	return any;
}

/* 1 if the comma-separated opts hold the flag word. */
static int opt_has(const char *opts, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = opts; p && *p; p += strcspn(p, ","), p += *p == ',')
		if (strcspn(p, ",") == n && !strncmp(p, word, n))
			return 1;
	return 0;
}

/* One line of why a check failed into err; returns code (an exit code). */
static int __attribute__((format(printf, 4, 5)))
refuse(char *err, size_t errsize, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsize, fmt, ap);
	va_end(ap);
	return code;
}

/* The passphrase the daemon and its children will use: the config's
 * passphrase-file (or --passphrase-file), else $TRESOR_PASSPHRASE_FILE,
 * else $TRESOR_PASSPHRASE_COMMAND or $TRESOR_PASSPHRASE (inherited by
 * the children).  A file passes the one owner-only check (cli.c's and
 * the remotes' too: secret_file_check), here before anything starts. */
static int check_passphrase(struct daemon *d, struct config *c, const char *tail, char *err,
			    size_t errsize)
{
	const char *envfile = getenv("TRESOR_PASSPHRASE_FILE");
	if (!c->passphrase_file[0] && envfile && *envfile)
		snprintf(c->passphrase_file, sizeof(c->passphrase_file), "%s", envfile);
	char why[CONFIG_PATH * 2 + 100];
	if (c->passphrase_file[0] &&
	    secret_file_check(c->passphrase_file, "passphrase file", why, sizeof(why)))
		return refuse(err, errsize, 1, "%s: %s%s", d->cfg_path, why, tail);
	const char *cmd = getenv("TRESOR_PASSPHRASE_COMMAND");
	if (!c->passphrase_file[0] && !(cmd && *cmd) && !getenv("TRESOR_PASSPHRASE"))
		return refuse(err, errsize, 1, "%s: no passphrase-file in [tresor] and no TRESOR_PASSPHRASE_FILE, TRESOR_PASSPHRASE_COMMAND or TRESOR_PASSPHRASE%s",
			      d->cfg_path, tail);
	return 0;
}

/* A remote the store already has, named in the config: the files of its
 * options (the store's: those are what push uses) must pass the checks
 * remote_open makes (remote_check_files), the real start's as the dry
 * run's.  No connection: a server down now must not stop the mounts. */
static int check_known_remote(struct daemon *d, const struct config *c,
			      const struct config_remote *r, struct remote_cfg *rc,
			      const char *tail, char *err, size_t errsize)
{
	char why[CONFIG_PATH * 2 + 100];
	if (remote_check_files(&rc->opt, why, sizeof(why)))
		return refuse(err, errsize, 1, "%s:%d: [remote %s]: remote '%s' of store %s: %s%s",
			      d->cfg_path, r->line, r->name, rc->name, c->store, why, tail);
	return 0;
}

/* A remote to be added (dry run): what `tresor remote add` checks (the
 * URL, the files, the connection: remote_probe), said the same way.  The
 * real start then runs `remote add`, which makes the same checks. */
static int check_new_remote(struct daemon *d, const struct config_remote *r, const char *tail,
			    char *err, size_t errsize)
{
	struct remote_options ro = { 0 };
	const char *files[] = { r->ca_file, r->credentials_file, r->ssh_key, r->known_hosts,
				r->netrc };
	const char *flags[] = { "--ca-file", "--credentials-file", "--ssh-key", "--known-hosts",
				"--netrc" };
	for (int k = 0; k < 5; k++)
		if (files[k][0] && access(files[k], F_OK))
			return refuse(err, errsize, 1, "%s:%d: [remote %s]: %s %s: %s; give an existing file%s",
				      d->cfg_path, r->line, r->name, flags[k], files[k],
				      strerror(errno), tail);
	ro.endpoint = r->endpoint[0] ? r->endpoint : NULL;
	ro.region = r->region[0] ? r->region : NULL;
	ro.path_style = r->path_style;
	ro.ca_file = r->ca_file[0] ? r->ca_file : NULL;
	ro.credentials_file = r->credentials_file[0] ? r->credentials_file : NULL;
	ro.ssh_key = r->ssh_key[0] ? r->ssh_key : NULL;
	ro.known_hosts = r->known_hosts[0] ? r->known_hosts : NULL;
	ro.netrc_file = r->netrc[0] ? r->netrc : NULL;
	char why[700];
	if (remote_probe(r->url, &ro, 20, why, sizeof(why)))
		return refuse(err, errsize, 1, "%s:%d: [remote %s]: %s%s", d->cfg_path, r->line,
			      r->name, why, tail);
	return 0;
}

/* 1 if mountpoint is where this daemon mounts a volume now (reload). */
static int mount_is_ours(const struct daemon *d, const char *mountpoint)
{
	for (int i = 0; i < d->cfg.nvol; i++)
		if (d->mc[i].pid && !strcmp(d->cfg.vol[i].mountpoint, mountpoint))
			return 1;
	return 0;
}

/* The checks of each volume of c: in the store, a free directory. */
static int check_volumes(struct daemon *d, const struct config *c, enum check_mode mode,
			 struct index *ix, const char *tail, char *err, size_t errsize)
{
	int dry = mode == CHECK_DRY;
	for (int i = 0; i < c->nvol; i++) {
		const struct config_volume *v = &c->vol[i];
		struct volume_info vi;
		if (ns_volume_find(ix, v->name, &vi))
			return refuse(err, errsize, 1, "%s:%d: store %s has no volume '%s' (create it with 'tresor volume create %s %s')%s",
				      d->cfg_path, v->line, c->store, v->name, c->store, v->name,
				      mode == CHECK_RELOAD ? tail : "");
		/* Handed over by the previous image: mounted by this daemon,
		 * and unanswered until its child runs (no stat) */
		if (mode == CHECK_START && d->mc[i].held)
			continue;
		struct stat sb;
		int r = stat(v->mountpoint, &sb);
		if (r && errno != ENOTCONN)
			return refuse(err, errsize, 1, "%s:%d: volume %s: mountpoint %s: %s%s",
				      d->cfg_path, v->line, v->name, v->mountpoint, strerror(errno),
				      mode == CHECK_RELOAD ? tail : "");
		if (!r && !S_ISDIR(sb.st_mode))
			return refuse(err, errsize, 1, "%s:%d: volume %s: mountpoint %s is not a directory%s",
				      d->cfg_path, v->line, v->name, v->mountpoint,
				      mode == CHECK_RELOAD ? tail : "");
		/* A dead tresor mount (its process was killed) is cleared at
		 * mount time; a live one belongs to someone else (or, for a
		 * dry run, to the daemon that runs now; for a reload, to
		 * this daemon, which unmounts it first). */
		int here = !r && is_mounted(v->mountpoint);
		int ours = mode == CHECK_RELOAD && mount_is_ours(d, v->mountpoint);
		if (here && !(dry && d->dry_running) && !ours)
			return refuse(err, errsize, 1, "%s:%d: volume %s: %s is already mounted; unmount it first%s",
				      d->cfg_path, v->line, v->name, v->mountpoint,
				      mode == CHECK_RELOAD ? tail : "");
		/* as `tresor mount` refuses it, before anything starts */
		if (!r && !here && dir_has_files(v->mountpoint) && !opt_has(v->options, "nonempty"))
			return refuse(err, errsize, 1, "%s:%d: volume %s: mountpoint %s is not empty, and the mount would hide its files; empty it, or add nonempty to its options%s",
				      d->cfg_path, v->line, v->name, v->mountpoint,
				      mode == CHECK_RELOAD ? tail : "");
	}
	return 0;
}

/* Remotes named with a URL and not yet in the store: add them, with
 * `tresor remote add` as a user would (it checks the URL, the files and
 * the connection and writes the row); read are its exit code and last
 * stderr line.  What the store holds is read with remote_cfg_*. */
static int check_remotes(struct daemon *d, struct config *c, enum check_mode mode,
			 const char *tail, char *err, size_t errsize)
{
	for (int i = 0; i < c->nrem; i++) {
		struct config_remote *r = &c->rem[i];
		struct index *ix = mode == CHECK_RELOAD ? daemon_index(d) : open_index(c->store);
		if (!ix)
			return refuse(err, errsize, 1, "%s: cannot open the index of store %s%s",
				      d->cfg_path, c->store, tail);
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
					known = !remote_cfg_find(ix, rs[k].name, &rc);
				}
		free(rs);
		index_close(ix);
		int e = 0;
		if (known && (e = check_known_remote(d, c, r, &rc, tail, err, errsize)))
			return e;
		if (known)
			continue;
		if (!r->url[0])
			return refuse(err, errsize, 1, "%s:%d: [remote %s] has no url and the store %s has no such remote%s",
				      d->cfg_path, r->line, r->name, c->store,
				      mode == CHECK_RELOAD ? tail : "");
		if (mode == CHECK_DRY) {
			if ((e = check_new_remote(d, r, tail, err, errsize)))
				return e;
			printf("would add remote %s (%s) to %s\n", r->name, r->url, c->store);
			continue;
		}
		struct jobs_args a;
		jobs_args_init(d, &a);
		jobs_arg(&a, "remote");
		jobs_arg(&a, "add");
		jobs_arg(&a, c->store);
		jobs_arg(&a, r->name);
		jobs_arg(&a, r->url);
		const char *fl[] = { "--endpoint", "--region", "--ca-file", "--credentials-file",
				     "--ssh-key", "--known-hosts", "--netrc" };
		const char *vals[] = { r->endpoint, r->region, r->ca_file, r->credentials_file,
				       r->ssh_key, r->known_hosts, r->netrc };
		for (int k = 0; k < 7; k++)
			if (vals[k][0]) {
				jobs_arg(&a, fl[k]);
				jobs_arg(&a, vals[k]);
			}
		if (r->path_style)
			jobs_arg(&a, r->path_style > 0 ? "--path-style" : "--virtual-hosted");
		char out[512], e2[400];
		if (jobs_run_child(d, "remote add", a.v, out, sizeof(out), e2, sizeof(e2)))
			return refuse(err, errsize, 1, "%s:%d: [remote %s]: %s%s", d->cfg_path,
				      r->line, r->name, e2, mode == CHECK_RELOAD ? tail : "");
		tlog(LOG_INFO, "daemon: added remote %s (%s) to %s", r->name, r->url, c->store);
	}
	return 0;
}

/* Everything that can be checked before the config c is used (see
 * daemon.h).  The dry run makes every check the real start makes, in the
 * same order, with the same messages; with a daemon running for the
 * store (dry only: a real start is refused later, by the state lock) its
 * mounts are not an error.  A reload makes them too; its own volumes'
 * mounts are not an error either, and its store is the one it serves. */
int daemon_config_check(struct daemon *d, struct config *c, enum check_mode mode, char *err,
			size_t errsize)
{
	const char *tail = mode == CHECK_RELOAD ? "; the old config stays" : "; nothing started";
	if (mode != CHECK_RELOAD) {
		if (!realpath(c->store, d->store_real))
			return refuse(err, errsize, EXIT_NO_STORE, "%s: store %s: %s", d->cfg_path,
				      c->store, strerror(errno));
		int running = daemon_running(d->store_real);
		if (running && mode == CHECK_START)
			return refuse(err, errsize, 1, "%s: a tresor daemon already serves store %s (tresor status %s)%s",
				      d->cfg_path, c->store, d->cfg_path, tail);
		d->dry_running = running;
	}
	struct index *ix = mode == CHECK_RELOAD ? daemon_index(d) : open_index(c->store);
	if (!ix)
		return refuse(err, errsize, 1, "%s: cannot open the index of store %s%s", d->cfg_path,
			      c->store, tail);
	int e = check_volumes(d, c, mode, ix, tail, err, errsize);
	index_close(ix);
	if (e || (e = check_passphrase(d, c, tail, err, errsize)))
		return e;
	/* From here on the daemon acts, and every line of its log is timed,
	 * its children's too (before any thread starts); a config or store
	 * refused above reads as any command's error. */
	if (mode == CHECK_START)
		setenv("TRESOR_LOG_TIME", "1", 1);
	if (mode == CHECK_DRY)
		curl_global_init(CURL_GLOBAL_DEFAULT);	/* remote_probe */
	e = check_remotes(d, c, mode, tail, err, errsize);
	if (mode == CHECK_DRY)
		curl_global_cleanup();
	return e;
}

/* --dry-run: the config and the store are fine; say what would run. */
static void dry_run_report(struct daemon *d)
{
	time_t now = daemon_now();
	const struct schedule *sc[] = { &d->cfg.snapshot, &d->cfg.push, &d->cfg.check };
	const char *names[] = { "snapshot", "push", "check" };
	printf("%s: ok: store %s, %d volume(s), %d remote(s) named\n", d->cfg_path,
	       d->cfg.store, d->cfg.nvol, d->cfg.nrem);
	if (d->dry_running)
		printf("a tresor daemon runs for store %s now: this config is fine for its next start (a start while it runs is refused)\n",
		       d->cfg.store);
	for (int i = 0; i < d->cfg.nvol; i++)
		printf("volume %s on %s%s%s\n", d->cfg.vol[i].name, d->cfg.vol[i].mountpoint,
		       d->cfg.vol[i].options[0] ? " -o " : "", d->cfg.vol[i].options);
	for (int i = 0; i < d->cfg.nset; i++) {
		const struct config_set *cs = &d->cfg.set[i];
		printf("snapshot-set %s:", cs->name);
		for (int j = 0; j < cs->nvol; j++)
			printf(" %s", d->cfg.vol[cs->vol[j]].name);
		char when[64] = "never", what[64];
		time_t next = schedule_next(&cs->snapshot, now);
		if (next)
			cli_iso_time(next, when, sizeof(when));
		schedule_format(&cs->snapshot, what, sizeof(what));
		printf("; snapshot: %s%s, next %s\n", what,
		       cs->own_schedule ? "" : " (the snapshot job's)", when);
	}
	for (int i = 0; i < 3; i++) {
		char when[64] = "never", what[64];
		time_t next = schedule_next(sc[i], now);
		if (next)
			cli_iso_time(next, when, sizeof(when));
		schedule_format(sc[i], what, sizeof(what));
		printf("%s: %s, next %s\n", names[i], what, when);
	}
}

/* One daemon per state file: lock it (the fd returned holds the lock),
 * then load it, or start one with no history to catch up on. */
static int state_claim(struct daemon *d)
{
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
		d->job[JOB_SNAPSHOT].last_slot = schedule_latest(&d->cfg.snapshot, d->started);
		d->job[JOB_PRUNE].last_slot = d->job[JOB_SNAPSHOT].last_slot;
		d->job[JOB_PUSH].last_slot = schedule_latest(&d->cfg.push, d->started);
		d->job[JOB_CHECK].last_slot = schedule_latest(&d->cfg.check, d->started);
	}
	/* A set new to the state file starts from now, as a first start. */
	for (int i = 0; i < d->cfg.nset; i++)
		if (!d->set_job[i].slot_known)
			d->set_job[i].last_slot = schedule_latest(&d->cfg.set[i].snapshot,
								  d->started);
	daemon_state_save(d);
	return lfd;
}

int cmd_daemon(struct opts *o)
{
	if (o->npos >= 1 && !strcmp(o->pos[0], "reload"))
		return cmd_daemon_reload(o);
	if (o->npos >= 1 && !strcmp(o->pos[0], "restart"))
		return cmd_daemon_restart(o);
	if (o->npos != 1)
		die(EXIT_USAGE, "usage: tresor daemon CONFIG [--dry-run] | tresor daemon reload|restart [CONFIG]");
	static struct daemon dd;
	struct daemon *d = &dd;
	memset(d, 0, sizeof(*d));
	d->ctl.fd = d->http.fd = -1;
	d->cfg_path = o->pos[0];
	char err[CONFIG_PATH * 3];
	if (config_load(d->cfg_path, &d->cfg, err, sizeof(err)))
		die(EXIT_USAGE, "%s; nothing started", err);
	d->passfile = o->passfile;
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
	sigaddset(&stopsigs, SIGHUP);
	sigaddset(&stopsigs, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &stopsigs, NULL);
	d->sigfd = signalfd(-1, &stopsigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d->sigfd < 0)
		die(1, "signalfd: %s", strerror(errno));
	d->fdstore = getenv("NOTIFY_SOCKET") && getenv("TRESOR_FDSTORE") &&
		     !strcmp(getenv("TRESOR_FDSTORE"), "1");
	if (!o->dry_run) {
		keeper_handover_each(daemon_handover_take, d);
		daemon_fdstore_take(d);
	}
	int code = daemon_config_check(d, &d->cfg, o->dry_run ? CHECK_DRY : CHECK_START, err,
				       sizeof(err));
	if (code)
		die(code, "%s", err);
	if (o->dry_run) {
		dry_run_report(d);
		return 0;
	}
	int lfd = state_claim(d);
	daemon_fdstore_save(d);	/* ours now: what this daemon kept */
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
	daemon_mounts_supervise(d);
	pthread_mutex_unlock(&d->lock);
	int merr = mounts_wait(d);
	if (merr) {
		int asked = d->stopping;	/* a signal, not a failure */
		d->stopping = 1;
		mounts_stop(d, 0);
		if (d->cfg.metrics_listen[0])
			metrics_stop(d);
		ctl_stop(d);
		if (asked)
			return 0;
		die(1, "%s: not every volume could be mounted%s; nothing started", d->cfg_path,
		    merr == -ETIMEDOUT ? " within 60 s" : "");
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&d->lock);
	d->ready_ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	daemon_state_save(d);	/* `daemon restart` waits for this */
	pthread_mutex_unlock(&d->lock);
	daemon_sd_notify("READY=1\nSTATUS=volumes mounted, schedule running", -1);
	tlog(LOG_INFO, "daemon: ready: %d volume(s) mounted, store %s", d->cfg.nvol, d->cfg.store);
	int tick_ms = getenv("TRESOR_TEST_CLOCK") ? 200 : 1000;
	time_t last_textfile = 0;
	while (!d->stopping) {
		jobs_run_due(d);
		pthread_mutex_lock(&d->lock);
		daemon_mounts_supervise(d);
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
		if (!daemon_stop_requested(d) && d->restart_pending == 1) {
			/* 2: checked; the loop ends, then the re-exec */
			d->restart_pending = daemon_restart_check(d) ? 0 : 2;
			d->stopping = d->restart_pending == 2;
		}
		if (!daemon_stop_requested(d) && d->reload_pending) {
			daemon_sd_notify("RELOADING=1", -1);
			daemon_reload(d);
			daemon_sd_notify("READY=1", -1);
		}
	}
	daemon_sd_notify("STOPPING=1", -1);
	tlog(LOG_INFO, "daemon: stopping: unmounting %d volume(s)", d->cfg.nvol);
	pthread_mutex_lock(&d->lock);
	d->push_generation++;	/* waiting `tresor push` clients: no push */
	d->push_result = -1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (d->cfg.metrics_listen[0])
		metrics_stop(d);
	mounts_stop(d, d->restart_pending == 2);
	ctl_stop(d);
	pthread_mutex_lock(&d->lock);
	daemon_state_save(d);
	pthread_mutex_unlock(&d->lock);
	close(lfd);
	if (d->restart_pending == 2)
		daemon_reexec(d);	/* returns if it failed: stopped then */
	tlog(LOG_INFO, "daemon: stopped");
	return 0;
}
