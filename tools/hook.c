/*
 * hook.c - running a snapshot hook (see hook.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hook.h"
#include "daemon.h"
#include "../chunker/buf.h"
#include "../chunker/util.h"

extern char **environ;

#define HOOK_MAX_ARGS 32
#define HOOK_KILL_GRACE_MS 2000

/* The output being relayed: the current line and what was logged. */
struct relay {
	const char *label;
	char line[1024];
	size_t len;
	uint64_t logged;
	struct hook_result *r;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One line (or a piece of one that filled the buffer) to the log. */
static void emit(struct relay *rl)
{
	rl->line[rl->len] = 0;
	if (rl->len)
		snprintf(rl->r->last_line, sizeof(rl->r->last_line), "%.*s",
			 (int)sizeof(rl->r->last_line) - 1, rl->line);
	if (rl->logged + rl->len <= HOOK_LOG_MAX) {
		tlog(LOG_INFO, "%s: %s", rl->label, rl->line);
		rl->logged += rl->len + 1;
	} else {
		rl->r->dropped += rl->len + 1;
	}
	rl->len = 0;
}

static void take(struct relay *rl, const char *buf, size_t n)
{
	rl->r->bytes += n;
	if (rl->logged >= HOOK_LOG_MAX) {
		/* Nothing more is logged: count it, no need to look. */
		rl->r->dropped += n;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			emit(rl);
			continue;
		}
		rl->line[rl->len++] = buf[i] >= 0x20 || buf[i] == '\t' ? buf[i] : '?';
		if (rl->len == sizeof(rl->line) - 1)
			emit(rl);
	}
}

/* Split cmd at spaces into argv (words point into copy). */
static int split(char *copy, char **argv)
{
	int n = 0;
	char *save = NULL;
	for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (n == HOOK_MAX_ARGS)
			return -E2BIG;
		argv[n++] = w;
	}
	argv[n] = NULL;
	return n ? 0 : -EINVAL;
}

/* Our environment plus env, NULL-terminated (malloc'd array). */
static char **make_env(char *const env[])
{
	size_t n = 0, k = 0;
	while (environ[n])
		n++;
	while (env[k])
		k++;
	char **e = calloc(n + k + 1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e, environ, n * sizeof(*e));
	memcpy(e + n, env, k * sizeof(*e));
	return e;
}

/* Start argv with envp in a session of its own, output to *out.  The
 * child's exec errno, if it could not run, in *run_errno. */
static pid_t start(char **argv, char **envp, int *out, int *run_errno)
{
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC))
		return -errno;
	if (pipe2(pe, O_CLOEXEC)) {
		int e = errno;
		close(po[0]);
		close(po[1]);
		return -e;
	}
	pid_t pid = fork();
	if (pid == 0) {
		dup2(po[1], STDOUT_FILENO);
		dup2(po[1], STDERR_FILENO);
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, STDIN_FILENO);
		setsid();
		jobs_child_signals();
		execve(argv[0], argv, envp);
		int e = errno;
		if (write(pe[1], &e, sizeof(e)) < 0)
			_exit(126);
		_exit(127);
	}
	int e = errno;
	close(po[1]);
	close(pe[1]);
	if (pid < 0) {
		close(po[0]);
		close(pe[0]);
		return -e;
	}
	*run_errno = 0;
	if (read(pe[0], run_errno, sizeof(*run_errno)) != sizeof(*run_errno))
		*run_errno = 0;
	close(pe[0]);
	*out = po[0];
	return pid;
}

/* Relay fd until it ends and pid exited; end the group at the deadline
 * (SIGTERM, then SIGKILL) or when pid exited.  pid's wait status. */
static int relay_until(pid_t pid, int fd, int64_t deadline, const struct hook_spec *h,
		       struct relay *rl)
{
	int st = 0, exited = 0, killed = 0;
	int64_t hard = 0;
	char buf[65536];
	for (;;) {
		if (!exited && waitpid(pid, &st, WNOHANG) == pid) {
			exited = 1;
			kill(-pid, SIGKILL);	/* what it left running */
			hard = now_ms() + 1000;	/* one more second of output */
		}
		int64_t t = now_ms();
		if (!exited && !killed && h->stop && h->stop(h->stop_arg))
			rl->r->stopped = 1;
		if (!exited && !killed && (t >= deadline || rl->r->stopped)) {
			rl->r->timed_out = !rl->r->stopped;
			kill(-pid, SIGTERM);
			killed = 1;
			hard = t + HOOK_KILL_GRACE_MS;
		}
		if (hard && t >= hard) {
			if (exited)
				break;
			kill(-pid, SIGKILL);
			hard = 0;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 100);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (exited)
				break;
			/* Output closed, process not gone: wait for it (the
			 * deadline still holds). */
			struct timespec ts = { 0, 20 * 1000000 };
			nanosleep(&ts, NULL);
			continue;
		}
		take(rl, buf, n);
	}
	if (rl->len)
		emit(rl);
	if (!exited) {
		kill(-pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	return st;
}

int hook_run(const struct hook_spec *h, struct hook_result *r, char *why,
	     size_t whysize)
{
	const char *cmd = h->cmd;
	int timeout_s = h->timeout_s;
	memset(r, 0, sizeof(*r));
	r->status = -1;
	char *copy = strdup(cmd);
	char *argv[HOOK_MAX_ARGS + 1] = { NULL };
	char **envp = make_env(h->env);
	int err = !copy || !envp ? -ENOMEM : split(copy, argv);
	int fd = -1;
	pid_t pid = err ? err : start(argv, envp, &fd, &r->run_errno);
	if (pid < 0)
		r->run_errno = -pid;
	if (pid > 0 && r->run_errno) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		close(fd);
		pid = -r->run_errno;
	}
	if (pid > 0) {
		struct relay rl = { .label = h->label, .r = r };
		int st = relay_until(pid, fd, now_ms() + (int64_t)timeout_s * 1000, h, &rl);
		close(fd);
		r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	}
	if (r->dropped)
		tlog(LOG_WARN, "%s: %llu more bytes of output not logged", h->label,
		     (unsigned long long)r->dropped);
	if (r->status < 0)
		snprintf(why, whysize, "cannot run %s: %s", argv[0] ? argv[0] : cmd,
			 strerror(r->run_errno));
	else if (r->stopped)
		snprintf(why, whysize, "was killed: the daemon is stopping");
	else if (r->timed_out)
		snprintf(why, whysize, "timed out after %d s and was killed", timeout_s);
	else if (r->status)
		snprintf(why, whysize, "exit %d%s%.200s", r->status,
			 r->last_line[0] ? ": " : "", r->last_line);
	else
		snprintf(why, whysize, "ok");
	free(copy);
	free(envp);
	return r->status == 0 && !r->timed_out && !r->stopped ? 0 : -1;
}
