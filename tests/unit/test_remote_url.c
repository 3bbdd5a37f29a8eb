/*
 * test_remote_url.c - remote_url_same (remote/remote.c): one repository
 * spelled two ways is one remote (issue 13: a daemon config naming the
 * origin of a lazy recovery again must not start a second copy of it).
 */
#include <errno.h>
#include <string.h>

#include "../../remote/remote.h"
#include "check.h"

int main(void)
{
	CHECK(remote_url_same("/mnt/usb/tresor", "/mnt/usb/tresor/"));
	CHECK(remote_url_same("/mnt/usb//tresor", "file:///mnt/usb/tresor"));
	CHECK(remote_url_same("file://localhost/mnt/x", "/mnt/x"));
	CHECK(remote_url_same("/", "file:///"));
	/* sftp's default port is 22, as every SFTP client's (issue 18); a
	 * Storage Box's port 23 is always written out */
	CHECK(remote_url_same("sftp://u@host:22/backup", "sftp://u@host/backup/"));
	CHECK(!remote_url_same("sftp://u@host:23/backup", "sftp://u@host/backup"));
	CHECK(remote_url_same("sftp://u@HOST.example/b", "sftp://u@host.example/b"));
	CHECK(remote_url_same("sftp://u@[::1]:22/b", "sftp://u@[::1]/b"));
	CHECK(remote_url_same("https://dav.example:443/t/", "https://dav.example/t"));
	CHECK(remote_url_same("s3://bucket/prefix/", "s3://bucket/prefix"));
	CHECK(remote_url_same("s3://bucket/", "s3://bucket"));
	CHECK(!remote_url_same("sftp://u@host:2222/b", "sftp://u@host/b"));
	CHECK(!remote_url_same("sftp://U@host/b", "sftp://u@host/b"));
	CHECK(!remote_url_same("sftp://u@[::1]:2222/b", "sftp://u@[::1]/b"));
	CHECK(!remote_url_same("https://dav.example:8443/t", "https://dav.example/t"));
	CHECK(!remote_url_same("s3://bucket/a", "s3://bucket/A"));
	CHECK(!remote_url_same("/mnt/a", "/mnt/a/b"));
	CHECK(!remote_url_same("s3://bucket/p", "https://bucket/p"));
	/* the port written out (what the store keeps, and how a row of an
	 * older tresor reads) */
	char out[200];
	CHECK(!remote_url_port_explicit("sftp://u@host/b", 22, out, sizeof(out)) &&
	      !strcmp(out, "sftp://u@host:22/b"));
	CHECK(!remote_url_port_explicit("sftp://u@host", 23, out, sizeof(out)) &&
	      !strcmp(out, "sftp://u@host:23"));
	CHECK(!remote_url_port_explicit("sftp://u@host:2222/b", 22, out, sizeof(out)) &&
	      !strcmp(out, "sftp://u@host:2222/b"));
	CHECK(!remote_url_port_explicit("sftp://u@[::1]/b", 23, out, sizeof(out)) &&
	      !strcmp(out, "sftp://u@[::1]:23/b"));
	CHECK(!remote_url_port_explicit("sftp://u@[::1]:2222/b", 23, out, sizeof(out)) &&
	      !strcmp(out, "sftp://u@[::1]:2222/b"));
	CHECK(!remote_url_port_explicit("https://dav.example/t", 22, out, sizeof(out)) &&
	      !strcmp(out, "https://dav.example/t"));
	CHECK(!remote_url_port_explicit("/mnt/usb", 22, out, sizeof(out)) &&
	      !strcmp(out, "/mnt/usb"));
	CHECK(remote_url_port_explicit("sftp://u@host/b", 22, out, 10) == -ENAMETOOLONG);
	return check_failures ? 1 : 0;
}
